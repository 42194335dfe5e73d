//! Cleaning one group of segments into one new segment: every batch goes through the filter of
//! `storage::compaction` (which records and batches stay, and how a batch that loses records is
//! rewritten); the group's last batch is kept even when emptied, so the segment still ends
//! where the next one starts.

use super::super::partition::SegmentSnapshot;
use super::super::segment::{Batches, Segment};
use super::swap;
use crate::record::batch::BatchHeader;
use crate::storage::CleanStats;
use crate::storage::compaction::{CleanConfig, Filter, MarkerPlan, MarkerPlanner, Output, TxnView};
use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// Plan the pass's markers (`storage::compaction::MarkerPlanner`) over the headers of every
/// batch of `groups`; a group's last batch and the producers' remembered batches stay.
pub(super) fn plan_markers(
    groups: &[(Vec<SegmentSnapshot>, i64)],
    producer_batches: &HashSet<(i64, i64)>,
    config: &CleanConfig,
    now_ms: i64,
) -> io::Result<MarkerPlan> {
    let mut planner = MarkerPlanner::new(now_ms, config.delete_retention_ms);
    let view = |h: &BatchHeader, last: bool| {
        let keep = last || (h.producer_id >= 0 && producer_batches.contains(&(h.producer_id, h.base_offset)));
        TxnView::of(h, keep)
    };
    for (group, _) in groups {
        let files = group.iter().map(|s| s.file.get()).collect::<io::Result<Vec<_>>>()?;
        let mut previous: Option<BatchHeader> = None;
        for batch in group.iter().zip(&files).flat_map(|(s, f)| Batches::new(f, 0, s.size)) {
            let (_, bytes) = batch?;
            let header = BatchHeader::parse(&bytes).map_err(|e| io::Error::other(e.to_string()))?;
            if let Some(h) = previous.replace(header) {
                planner.see(view(&h, false));
            }
        }
        if let Some(h) = previous {
            planner.see(view(&h, true));
        }
    }
    Ok(planner.finish())
}

/// What cleaning a group produced.
pub(super) struct GroupOutcome {
    /// The cleaned segment (named for its final place) and the file it is in now; None when the
    /// group is one segment that cleaning would not change (nothing to swap).
    pub cleaned: Option<(Segment, PathBuf)>,
    pub stats: CleanStats,
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
    let files = group.iter().map(|s| s.file.get()).collect::<io::Result<Vec<_>>>()?;
    let batches = group.iter().zip(&files).flat_map(|(s, f)| Batches::new(f, 0, s.size));
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
