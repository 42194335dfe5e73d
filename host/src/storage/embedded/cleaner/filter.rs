//! Cleaning one group of segments into one new segment: which records and batches stay, and
//! how a batch that loses records is rewritten (Kafka's `Cleaner.cleanInto` and
//! `MemoryRecords.filterTo`).
//!
//! A record stays when it has a key, no later record of that key was mapped, and it is not a
//! tombstone (a null value) past its batch's delete horizon. A batch whose records all stay is
//! copied byte for byte, unless it holds a tombstone and has no delete horizon yet: then it is
//! rewritten with one (now + delete.retention.ms), so the tombstone goes at the first clean
//! after that (KIP-534). A batch that loses records is rewritten with the same codec, producer
//! id, epoch and base sequence, its records keeping their offsets and the batch its offset span
//! (lastOffsetDelta), so that offsets are never renumbered and the producer's sequence span is
//! kept. A batch that loses every record goes, except an idempotent producer's remembered
//! batches and the group's last batch, which stay as empty batches (headers only): the former
//! so that producer state rebuilt at open still knows the producer and its last sequences, the
//! latter so the segment still ends where the next one starts.

use super::super::partition::SegmentSnapshot;
use super::super::segment::{Batches, Segment};
use super::CleanConfig;
use super::offset_map::OffsetMap;
use super::swap;
use crate::record::batch::BatchHeader;
use crate::record::records::{self, EncodeSpec, Record};
use crate::storage::CleanStats;
use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// What cleaning a group produced.
pub(super) struct GroupOutcome {
    /// The cleaned segment (named for its final place) and the file it is in now; None when the
    /// group is one segment that cleaning would not change (nothing to swap).
    pub cleaned: Option<(Segment, PathBuf)>,
    pub stats: CleanStats,
}

/// What the filter does with one batch.
enum Output {
    /// Copied as it is.
    Unchanged,
    Rewritten(Vec<u8>),
    Dropped,
}

/// What every batch of a pass is filtered with.
pub(super) struct Filter<'a> {
    pub map: &'a OffsetMap,
    /// (producer id, base offset) of the batches producer state depends on.
    pub producer_batches: &'a HashSet<(i64, i64)>,
    pub config: &'a CleanConfig,
    pub now_ms: i64,
}

/// Clean `group` (consecutive segments) into `<dir>/<first base>.log.cleaned`, fsynced, and
/// return it as a segment named `<first base>.log`, ready to be swapped in. On error the file
/// is removed.
pub(super) fn clean_group(
    dir: &Path,
    group: &[SegmentSnapshot],
    filter: &Filter<'_>,
) -> io::Result<GroupOutcome> {
    let base = group[0].base_offset;
    let path = swap::cleaned_path(dir, base);
    let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path)?;
    match write_group(&file, group, filter, base, dir) {
        Ok((segment, stats, changed)) => {
            if !changed && group.len() == 1 {
                std::fs::remove_file(&path)?;
                return Ok(GroupOutcome { cleaned: None, stats });
            }
            Ok(GroupOutcome { cleaned: Some((segment, path)), stats })
        }
        Err(e) => {
            if let Err(cleanup) = std::fs::remove_file(&path) {
                tracing::warn!(file = %path.display(), error = %cleanup, "cannot remove a failed clean's output");
            }
            Err(e)
        }
    }
}

/// Filter every batch of `group` into `file`; returns the segment (in memory), the stats and
/// whether anything differs from the input.
fn write_group(
    file: &File,
    group: &[SegmentSnapshot],
    filter: &Filter<'_>,
    base: i64,
    dir: &Path,
) -> io::Result<(Segment, CleanStats, bool)> {
    let mut segment = Segment::empty(base, dir.join(Segment::file_name(base)), file.try_clone()?);
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let mut stats = CleanStats::default();
    let mut changed = false;
    let mut write = |bytes: &[u8], stats: &mut CleanStats, segment: &mut Segment| -> io::Result<()> {
        let header = BatchHeader::parse(bytes).map_err(|e| io::Error::other(e.to_string()))?;
        out.write_all(bytes)?;
        segment.note_batch(&header, filter.config.index_interval_bytes);
        stats.bytes_written += bytes.len() as u64;
        Ok(())
    };
    // One batch of lookahead: the group's last batch is kept even when emptied.
    let mut pending: Option<Vec<u8>> = None;
    let batches = group.iter().flat_map(|s| Batches::new(&s.file, 0, s.size));
    for batch in batches {
        let (_, bytes) = batch?;
        if let Some(previous) = pending.replace(bytes) {
            let output = filter.batch(&previous, false, &mut stats);
            changed |= !matches!(output, Output::Unchanged);
            match output {
                Output::Unchanged => write(&previous, &mut stats, &mut segment)?,
                Output::Rewritten(b) => write(&b, &mut stats, &mut segment)?,
                Output::Dropped => {}
            }
        }
    }
    if let Some(last) = pending {
        let output = filter.batch(&last, true, &mut stats);
        changed |= !matches!(output, Output::Unchanged);
        match output {
            Output::Unchanged => write(&last, &mut stats, &mut segment)?,
            Output::Rewritten(b) => write(&b, &mut stats, &mut segment)?,
            Output::Dropped => {}
        }
    }
    out.flush()?;
    drop(out);
    file.sync_all()?;
    Ok((segment, stats, changed))
}

impl Filter<'_> {
    /// Filter one stored batch; `keep_empty`: keep it as an empty batch if all its records go.
    fn batch(&self, bytes: &[u8], keep_empty: bool, stats: &mut CleanStats) -> Output {
        stats.bytes_read += bytes.len() as u64;
        let Ok(header) = BatchHeader::parse(bytes) else { return Output::Unchanged };
        if header.is_control() || header.is_transactional() {
            // Never stored here (appends refuse them); kept as they are if ever found.
            return Output::Unchanged;
        }
        let decoded = match records::decode(bytes, self.config.max_decompressed_bytes) {
            Ok(d) => d,
            Err(e) => {
                stats.records_read += u64::try_from(header.records_count).unwrap_or(0);
                tracing::warn!(offset = header.base_offset, error = %e, "the cleaner cannot read this batch's records; it is kept as it is");
                return Output::Unchanged;
            }
        };
        let read = decoded.records.len();
        stats.records_read += read as u64;
        let horizon = header.delete_horizon();
        let tombstones_expired = horizon.is_some_and(|h| self.now_ms >= h);
        let kept: Vec<Record> = decoded
            .records
            .into_iter()
            .filter(|r| {
                let Some(key) = &r.key else { return false };
                let offset = header.base_offset + i64::from(r.offset_delta);
                let latest = self.map.latest(key).is_none_or(|o| offset >= o);
                latest && (r.value.is_some() || !tombstones_expired)
            })
            .collect();
        stats.records_removed += (read - kept.len()) as u64;
        let producer_batch = header.producer_id >= 0
            && self.producer_batches.contains(&(header.producer_id, header.base_offset));
        // Also a batch an earlier clean emptied, once nothing needs it any more.
        if kept.is_empty() && !(keep_empty || producer_batch) {
            return Output::Dropped;
        }
        let needs_horizon = horizon.is_none() && kept.iter().any(|r| r.value.is_none());
        if kept.len() == read && !needs_horizon {
            return Output::Unchanged;
        }
        let spec = EncodeSpec::like(&header, header.compression());
        let horizon = if needs_horizon {
            Some(self.now_ms.saturating_add(self.config.delete_retention_ms))
        } else {
            horizon
        };
        let horizon = if kept.is_empty() { None } else { horizon };
        match records::encode_with_delete_horizon(&kept, &spec, horizon) {
            Ok(mut rewritten) => {
                // Outside the CRC: the stored base offset and the producer's leader epoch.
                rewritten[0..8].copy_from_slice(&header.base_offset.to_be_bytes());
                rewritten[12..16].copy_from_slice(&header.partition_leader_epoch.to_be_bytes());
                Output::Rewritten(rewritten)
            }
            Err(e) => {
                stats.records_removed -= (read - kept.len()) as u64;
                tracing::warn!(offset = header.base_offset, error = %e, "the cleaner cannot rewrite this batch; it is kept as it is");
                Output::Unchanged
            }
        }
    }
}
