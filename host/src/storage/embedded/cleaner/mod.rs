//! The log cleaner: compaction of topics with `cleanup.policy=compact` (Kafka's `LogCleaner`).
//!
//! A pass over a partition ([`clean_partition`]) cleans its *cleanable* part: every segment but
//! the active one, up to the first segment holding a record younger than
//! min.compaction.lag.ms or reaching the last stable offset (an open transaction's records
//! may still be aborted: Kafka never cleans past the first unstable offset either). It runs when the *dirty* part (from the cleaner checkpoint, see
//! [`checkpoint`], to the end of the cleanable part) is more than min.cleanable.dirty.ratio of
//! the log's inactive bytes, or when a dirty segment's first batch is older than
//! max.compaction.lag.ms. It maps the latest offset of every key in the dirty part
//! ([`offset_map`]), then rewrites every segment from the log start up to the end of what it
//! mapped, in groups of consecutive segments of at most segment.bytes together, each into one
//! new segment ([`filter`]), which it swaps in under the partition's writer lock ([`swap`]).
//! Appends go on meanwhile: only the swap itself holds the lock. Offsets are never renumbered:
//! a kept record keeps its offset, and reads of a removed offset get the next batch.
//!
//! Differences from Kafka: the map holds whole keys (no hash collisions) and a pass maps whole
//! segments until its budget is spent; an idempotent producer's last five batches are kept (as
//! empty batches if need be), not only its last, because producer state is rebuilt from batch
//! headers at open instead of snapshots; the last batch of each group (not only of the pass) is
//! kept, so a cleaned segment still ends where the next one starts. Transactions: see
//! `storage::compaction` (aborted records map nothing; a transaction's batches stay, emptied,
//! as long as its marker, so the partition replays to the same open and aborted transactions);
//! a partition that has held transactions is read once more per pass, headers only, to plan
//! which markers go ([`filter::plan_markers`]).

pub(super) mod checkpoint;
mod filter;
mod offset_map;
pub(super) mod swap;
#[cfg(test)]
mod tests;

use super::partition::{CleanSnapshot, Partition, SegmentSnapshot};
use crate::storage::CleanStats;
use crate::storage::compaction::MarkerPlan;
pub(super) use crate::storage::compaction::{CleanConfig, check_keys};
use std::io;
use std::time::Instant;

/// What a pass over a partition will clean, and why.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Plan {
    /// The checkpoint (or the log start, when it has none or it is out of range).
    pub first_dirty: i64,
    /// The end of the cleanable part: the active segment's base offset, the first segment
    /// with a record younger than min.compaction.lag.ms, or the first segment reaching the
    /// last stable offset.
    pub first_uncleanable: i64,
    pub clean_bytes: u64,
    /// The bytes of the dirty part that may be cleaned now.
    pub cleanable_bytes: u64,
    /// A dirty segment is older than max.compaction.lag.ms: cleaned whatever the ratio.
    pub overdue: bool,
}

impl Plan {
    pub fn ratio(&self) -> f64 {
        let total = self.clean_bytes + self.cleanable_bytes;
        if total == 0 { 0.0 } else { self.cleanable_bytes as f64 / total as f64 }
    }
}

/// The base offset of the segment after `segments[i]` (the active one after the last).
fn next_base(snapshot: &CleanSnapshot, i: usize) -> i64 {
    snapshot.segments.get(i + 1).map_or(snapshot.active_base, |s| s.base_offset)
}

/// Whether and what to clean, as Kafka's `LogCleanerManager` decides it (`cleanableOffsets`,
/// `LogToClean`, `maxCompactionDelay`): None when there is nothing cleanable or the dirty
/// ratio is not above min.cleanable.dirty.ratio and nothing is overdue.
pub(super) fn plan(snapshot: &CleanSnapshot, config: &CleanConfig, now_ms: i64) -> Option<Plan> {
    let first_dirty = match snapshot.checkpoint {
        Some(c) if c >= snapshot.log_start && c <= snapshot.high_watermark => c,
        _ => snapshot.log_start,
    };
    // Segments holding offsets from the first dirty one on.
    let dirty: Vec<usize> =
        (0..snapshot.segments.len()).filter(|&i| next_base(snapshot, i) > first_dirty).collect();
    let mut first_uncleanable = snapshot.active_base.min(snapshot.high_watermark);
    // Nothing at or past the last stable offset: the segments that end before it, no more.
    if let Some(i) = (0..snapshot.segments.len()).find(|&i| next_base(snapshot, i) > snapshot.last_stable) {
        first_uncleanable = first_uncleanable.min(snapshot.segments[i].base_offset);
    }
    if config.min_compaction_lag_ms > 0 {
        let young = now_ms.saturating_sub(config.min_compaction_lag_ms);
        if let Some(&i) = dirty.iter().find(|&&i| snapshot.segments[i].max_timestamp > young) {
            first_uncleanable = first_uncleanable.min(snapshot.segments[i].base_offset);
        }
    }
    let first_uncleanable = first_uncleanable.max(first_dirty);
    let clean_bytes = snapshot.segments.iter().filter(|s| s.base_offset < first_dirty).map(|s| s.size).sum();
    let cleanable_bytes = dirty
        .iter()
        .map(|&i| &snapshot.segments[i])
        .filter(|s| s.base_offset < first_uncleanable)
        .map(|s| s.size)
        .sum();
    let overdue_before = now_ms.saturating_sub(config.max_compaction_lag_ms.max(0));
    let overdue = dirty
        .iter()
        .filter_map(|&i| snapshot.segments[i].first_batch_timestamp)
        .filter(|&t| t > 0)
        .min()
        .is_some_and(|earliest| earliest < overdue_before);
    let plan = Plan { first_dirty, first_uncleanable, clean_bytes, cleanable_bytes, overdue };
    if plan.cleanable_bytes == 0 {
        return None;
    }
    (plan.overdue || plan.ratio() > config.min_cleanable_dirty_ratio).then_some(plan)
}

/// Consecutive segments of at most `max_bytes` together (a segment larger than that alone),
/// each group with the base offset of the segment after it.
fn groups(segments: &[(SegmentSnapshot, i64)], max_bytes: u64) -> Vec<(Vec<SegmentSnapshot>, i64)> {
    let mut out: Vec<(Vec<SegmentSnapshot>, i64, u64)> = Vec::new();
    for (s, next) in segments {
        match out.last_mut() {
            Some((group, end, bytes)) if bytes.saturating_add(s.size) <= max_bytes => {
                group.push(s.clone());
                *end = *next;
                *bytes += s.size;
            }
            _ => out.push((vec![s.clone()], *next, s.size)),
        }
    }
    out.into_iter().map(|(group, end, _)| (group, end)).collect()
}

/// One cleaner pass over partition `p` (named `label` in logs) with `config` at `now_ms`.
/// None when the partition did not need cleaning (or a pass is already running on it).
pub(super) fn clean_partition(
    p: &Partition,
    label: &str,
    config: &CleanConfig,
    now_ms: i64,
) -> io::Result<Option<CleanStats>> {
    clean_partition_with(p, label, config, now_ms, offset_map::MAP_BUDGET)
}

fn clean_partition_with(
    p: &Partition,
    label: &str,
    config: &CleanConfig,
    now_ms: i64,
    map_budget: usize,
) -> io::Result<Option<CleanStats>> {
    let Some(_running) = p.start_clean() else { return Ok(None) };
    let snapshot = p.clean_snapshot();
    let Some(plan) = plan(&snapshot, config, now_ms) else { return Ok(None) };
    let started = Instant::now();
    let with_next: Vec<(SegmentSnapshot, i64)> =
        snapshot.segments.iter().enumerate().map(|(i, s)| (s.clone(), next_base(&snapshot, i))).collect();
    let dirty: Vec<(SegmentSnapshot, i64)> = with_next
        .iter()
        .filter(|(s, next)| *next > plan.first_dirty && s.base_offset < plan.first_uncleanable)
        .cloned()
        .collect();
    let aborted = crate::storage::compaction::AbortedRanges::new(&snapshot.aborted);
    let (map, end, mapped_bytes) =
        offset_map::build(&dirty, map_budget, config.max_decompressed_bytes, &aborted)?;
    let to_clean: Vec<(SegmentSnapshot, i64)> =
        with_next.into_iter().filter(|(s, _)| s.base_offset < end).collect();
    let groups = groups(&to_clean, config.segment_bytes);
    let markers = if snapshot.transactional {
        filter::plan_markers(&groups, &snapshot.producer_batches, config, now_ms)?
    } else {
        MarkerPlan::default()
    };
    if !markers.is_empty() {
        p.forget_aborted(|offset| markers.drops(offset));
    }
    let filter = crate::storage::compaction::Filter {
        map: &map,
        producer_batches: &snapshot.producer_batches,
        aborted: &aborted,
        config,
        now_ms,
        markers: &markers,
    };
    let mut stats = CleanStats { partitions: 1, ..CleanStats::default() };
    let mut swapped = 0usize;
    for (group, group_end) in groups {
        let outcome = filter::clean_group(p.dir(), &group, &filter)?;
        stats.add(CleanStats { partitions: 0, ..outcome.stats });
        let Some((segment, path)) = outcome.cleaned else { continue };
        if p.replace_segments(&group, segment, &path, group_end)? {
            swapped += 1;
        } else {
            tracing::debug!(
                partition = label,
                base = group[0].base_offset,
                "segments changed during the clean (retention or deletion); not swapped"
            );
        }
    }
    p.set_clean_checkpoint(end)?;
    let elapsed = started.elapsed();
    tracing::info!(
        partition = label,
        dirty_from = plan.first_dirty,
        cleaned_to = end,
        dirty_ratio = plan.ratio(),
        overdue = plan.overdue,
        keys = map.len(),
        mapped_bytes,
        bytes_read = stats.bytes_read,
        bytes_written = stats.bytes_written,
        records_read = stats.records_read,
        records_removed = stats.records_removed,
        segments_swapped = swapped,
        elapsed_ms = elapsed.as_millis() as u64,
        "cleaned a compacted partition"
    );
    Ok(Some(stats))
}
