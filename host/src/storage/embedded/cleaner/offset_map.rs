//! The cleaner's map of key -> offset of its latest record, over the dirty part of a partition
//! (Kafka's `OffsetMap`). Kafka keeps a fixed buffer of 16-byte MD5 hashes, so two keys whose
//! hashes collide lose a record; this map holds the keys themselves, so it is exact, and bounds
//! its memory instead by mapping fewer segments per pass.

use super::super::partition::SegmentSnapshot;
use super::super::segment::Batches;
use crate::record::batch::BatchHeader;
use crate::record::records;
pub(super) use crate::storage::compaction::OffsetMap;
use crate::storage::compaction::{AbortedRanges, supersedes};
use std::io;

/// Kafka's default log.cleaner.dedupe.buffer.size: a pass maps segments until its keys take
/// about this much memory, then cleans up to there (the rest waits for the next pass).
pub(super) const MAP_BUDGET: usize = 128 << 20;

/// Map the keys of `dirty` (consecutive segments, each with the base offset of the one after
/// it), in order, until the map passes `budget` bytes at a segment's end (at least the first
/// segment is mapped). Returns the map, the first offset not mapped (a segment's base offset:
/// the pass cleans up to there) and the bytes read. Keyless records are not mapped (the cleaner
/// removes them), nor are control batches' and aborted transactions' (`aborted`; see
/// [`supersedes`]); a batch that cannot be decoded is skipped, so its records supersede
/// nothing and are kept as they are.
pub(super) fn build(
    dirty: &[(SegmentSnapshot, i64)],
    budget: usize,
    max_decompressed: usize,
    aborted: &AbortedRanges,
) -> io::Result<(OffsetMap, i64, u64)> {
    let mut map = OffsetMap::default();
    let mut read = 0u64;
    let Some((_, mut end)) = dirty.first().cloned() else {
        return Ok((map, i64::MIN, 0));
    };
    for (i, (segment, next_base)) in dirty.iter().enumerate() {
        if i > 0 && map.bytes() > budget {
            tracing::debug!(
                mapped = i,
                keys = map.len(),
                "the cleaner's offset map is full; cleaning the rest later"
            );
            break;
        }
        let file = segment.file.get()?;
        for batch in Batches::new(&file, 0, segment.size) {
            let (position, bytes) = batch?;
            read += bytes.len() as u64;
            let header = BatchHeader::parse(&bytes).map_err(|e| io::Error::other(e.to_string()))?;
            if !supersedes(&header, aborted) {
                continue;
            }
            match records::decode(&bytes, max_decompressed) {
                Ok(decoded) => {
                    for r in &decoded.records {
                        if let Some(key) = &r.key {
                            map.put(key, header.base_offset + i64::from(r.offset_delta));
                        }
                    }
                }
                Err(e) => tracing::warn!(
                    segment = segment.base_offset,
                    position,
                    offset = header.base_offset,
                    error = %e,
                    "the cleaner cannot read this batch's records; they are kept as they are"
                ),
            }
        }
        end = *next_base;
    }
    Ok((map, end, read))
}
