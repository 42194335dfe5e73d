//! One partition: its segments, the single writer, and reads that run alongside the writer.
//!
//! Concurrency: appends hold `writer` for the whole append (one writer per partition). The
//! segment list, committed lengths, indexes and high watermark live in `view`, behind a RwLock
//! that is held only to look things up or to publish a completed write. Reads take a snapshot
//! under the read lock (file handle, committed length, index position) and do their positional
//! reads without any lock, so they never wait for a write syscall. Bytes are published (committed
//! length, high watermark, then the watch) only after they have been written.

use super::segment::{self, BatchRef, Segment};
use crate::storage::batch::{self, BatchHeader, HEADER_LEN, ValidBatch};
use crate::storage::{AppendInfo, ReadResult, StorageError};
use bytes::{Bytes, BytesMut};
use parking_lot::{Mutex, RwLock};
use std::fs::File;
use std::io::{self, IoSlice, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::watch;

/// Per-partition settings taken from the topic config.
#[derive(Clone, Copy, Debug)]
pub(super) struct PartitionConfig {
    pub segment_bytes: u64,
    pub index_interval_bytes: u32,
}

pub(super) struct Partition {
    dir: PathBuf,
    config: PartitionConfig,
    view: RwLock<View>,
    writer: Mutex<Writer>,
    /// Cloned for each subscriber; the sender lives in the writer.
    hwm: watch::Receiver<i64>,
}

struct View {
    /// Ordered by base offset; the last one is active. Never empty.
    segments: Vec<Segment>,
    log_start: i64,
    high_watermark: i64,
}

struct Writer {
    /// None once the partition is closed (its topic deleted): appends fail, watches close.
    hwm: Option<watch::Sender<i64>>,
    /// Files written since the last flush.
    unsynced: Vec<Arc<File>>,
    /// A segment file was created since the last flush.
    dir_unsynced: bool,
}

impl Partition {
    /// Open the partition in `dir`, creating it (with an empty first segment) if needed. The
    /// last segment is scanned with CRC checks and a torn or corrupt tail is cut off; earlier
    /// segments get a header-only scan.
    pub fn open(dir: &Path, config: PartitionConfig) -> io::Result<Partition> {
        std::fs::create_dir_all(dir)?;
        let mut bases = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if let Some(base) = entry.file_name().to_str().and_then(Segment::parse_file_name) {
                bases.push(base);
            }
        }
        bases.sort_unstable();

        let mut segments = Vec::with_capacity(bases.len().max(1));
        for (i, &base) in bases.iter().enumerate() {
            let last = i + 1 == bases.len();
            let path = dir.join(Segment::file_name(base));
            let recovered = segment::recover(&path, base, last, config.index_interval_bytes)?;
            if let Some((dropped, reason)) = &recovered.truncated {
                tracing::warn!(
                    segment = %path.display(),
                    "truncated {dropped} bytes at the end of the segment ({reason}); \
                     offsets continue at {}",
                    recovered.segment.next_offset
                );
            }
            if let Some(previous) = segments.last().map(|s: &Segment| s.next_offset)
                && previous != base
            {
                tracing::warn!(
                    segment = %path.display(),
                    "segment starts at offset {base} but the previous one ends at {previous}"
                );
            }
            segments.push(recovered.segment);
        }
        let created = segments.is_empty();
        if created {
            segments.push(Segment::create(dir, 0)?);
        }
        let log_start = segments[0].base_offset;
        let high_watermark = segments.last().map_or(log_start, |s| s.next_offset);
        let (tx, rx) = watch::channel(high_watermark);
        Ok(Partition {
            dir: dir.to_path_buf(),
            config,
            view: RwLock::new(View { segments, log_start, high_watermark }),
            writer: Mutex::new(Writer { hwm: Some(tx), unsynced: Vec::new(), dir_unsynced: created }),
            hwm: rx,
        })
    }

    /// Append already validated batches of `records`: assign contiguous offsets, write each
    /// batch with its base offset patched (vectored, straight from `records`), then publish.
    pub fn append(&self, records: &Bytes, batches: &[ValidBatch]) -> Result<AppendInfo, StorageError> {
        let mut writer = self.writer.lock();
        if writer.hwm.is_none() {
            return Err(StorageError::UnknownTopicOrPartition);
        }
        let total: u64 = batches.iter().map(|b| b.size() as u64).sum();
        let (mut file, mut position, base_offset, log_start) = {
            let view = self.view.read();
            let active = view.active();
            (active.file.clone(), active.size, view.high_watermark, view.log_start)
        };
        if position > 0 && position.saturating_add(total) > self.config.segment_bytes {
            file = self.roll(&mut writer, base_offset)?;
            position = 0;
        }

        // The assigned base offset of each batch, and its header as stored.
        let mut next = base_offset;
        let mut headers = Vec::with_capacity(batches.len());
        for b in batches {
            let mut header = b.header;
            header.base_offset = next;
            next = header.next_offset();
            headers.push(header);
        }
        let patched: Vec<[u8; 8]> = headers.iter().map(|h| h.base_offset.to_be_bytes()).collect();
        let mut slices = Vec::with_capacity(2 * batches.len());
        for (b, offset) in batches.iter().zip(&patched) {
            slices.push(IoSlice::new(offset));
            slices.push(IoSlice::new(&records[b.position + 8..b.position + b.size()]));
        }
        if let Err(e) = write_at_end(&file, position, &mut slices) {
            // Leave nothing behind the committed length: a later append starts there again.
            if let Err(undo) = file.set_len(position) {
                tracing::error!(dir = %self.dir.display(), "cannot cut a failed append back to {position}: {undo}");
            }
            return Err(e.into());
        }

        {
            let mut view = self.view.write();
            let active = view.active_mut();
            for header in &headers {
                active.note_batch(header, self.config.index_interval_bytes);
            }
            view.high_watermark = next;
        }
        if !writer.unsynced.last().is_some_and(|f| Arc::ptr_eq(f, &file)) {
            writer.unsynced.push(file);
        }
        if let Some(tx) = &writer.hwm {
            tx.send_replace(next);
        }
        Ok(AppendInfo { base_offset, last_offset: next - 1, log_start_offset: log_start })
    }

    /// Start a new active segment at `base_offset`.
    fn roll(&self, writer: &mut Writer, base_offset: i64) -> io::Result<Arc<File>> {
        let segment = Segment::create(&self.dir, base_offset)?;
        tracing::debug!(segment = %segment.path.display(), "rolled a new segment");
        let file = segment.file.clone();
        self.view.write().segments.push(segment);
        writer.dir_unsynced = true;
        Ok(file)
    }

    /// Whole batches from the one that holds `offset`, up to `max_bytes` (at least the first
    /// one when `min_one`), from a single segment.
    pub fn read(&self, offset: i64, max_bytes: usize, min_one: bool) -> Result<ReadResult, StorageError> {
        // None on the first visit; then the next segment, if a gap left by an earlier crash
        // means the segment that should hold `offset` does not: the first batch after the gap
        // is returned instead.
        let mut next_segment: Option<usize> = None;
        loop {
            // The high watermark returned is taken together with the committed length the read
            // goes up to, so no record returned is ever beyond it.
            let (i, file, start, end, high_watermark, log_start) = {
                let view = self.view.read();
                let nothing = ReadResult {
                    records: None,
                    high_watermark: view.high_watermark,
                    log_start_offset: view.log_start,
                };
                let i = match next_segment {
                    Some(i) => i,
                    None => {
                        if offset < view.log_start || offset > view.high_watermark {
                            return Err(StorageError::OffsetOutOfRange {
                                requested: offset,
                                start: view.log_start,
                                end: view.high_watermark,
                            });
                        }
                        if offset == view.high_watermark {
                            return Ok(nothing);
                        }
                        view.segments.partition_point(|s| s.base_offset <= offset).saturating_sub(1)
                    }
                };
                let Some(s) = view.segments.get(i) else {
                    return Ok(nothing);
                };
                let start = if next_segment.is_none() { s.position_for_offset(offset) } else { 0 };
                (i, s.file.clone(), start, s.size, view.high_watermark, view.log_start)
            };
            if let Some((position, first)) =
                segment::find_batch(&file, start, end, |h| h.last_offset() >= offset)?
            {
                let records = read_batches(&file, position, end, first.size(), max_bytes, min_one)?;
                return Ok(ReadResult { records, high_watermark, log_start_offset: log_start });
            }
            next_segment = Some(i + 1);
        }
    }

    /// (log start offset, high watermark).
    /// Delete whole old segments, never the active one, as Kafka's retention does: a segment
    /// whose newest record is older than `now_ms - retention_ms` (when `retention_ms >= 0`), and,
    /// oldest first, segments the partition can lose while still holding at least
    /// `retention_bytes` (when `retention_bytes >= 0`). The log start offset moves to the first
    /// kept segment. Returns the segments deleted and the new log start.
    pub fn apply_retention(
        &self,
        retention_ms: i64,
        retention_bytes: i64,
        now_ms: i64,
    ) -> io::Result<(usize, i64)> {
        // The writer lock keeps appends and rolls out while the segment list changes.
        let _writer = self.writer.lock();
        let (removed, log_start) = {
            let mut view = self.view.write();
            let mut total: u64 = view.segments.iter().map(|s| s.size).sum();
            let mut n = 0;
            while n + 1 < view.segments.len() {
                let s = &view.segments[n];
                let newest = s.max_timestamp();
                let expired =
                    retention_ms >= 0 && newest != i64::MIN && newest < now_ms.saturating_sub(retention_ms);
                let oversize = retention_bytes >= 0 && total.saturating_sub(s.size) >= retention_bytes as u64;
                if !(expired || oversize) {
                    break;
                }
                total -= s.size;
                n += 1;
            }
            if n == 0 {
                return Ok((0, view.log_start));
            }
            let removed: Vec<Segment> = view.segments.drain(..n).collect();
            view.log_start = view.segments[0].base_offset;
            (removed, view.log_start)
        };
        // Readers holding a removed segment's file keep reading it; the name goes now.
        for s in &removed {
            std::fs::remove_file(&s.path)?;
        }
        tracing::info!(
            dir = %self.dir.display(),
            segments = removed.len(),
            bytes = removed.iter().map(|s| s.size).sum::<u64>(),
            log_start,
            "retention deleted old segments"
        );
        Ok((removed.len(), log_start))
    }

    pub fn offsets(&self) -> (i64, i64) {
        let view = self.view.read();
        (view.log_start, view.high_watermark)
    }

    /// The first record whose timestamp is at or above `ts`, as (offset, timestamp).
    pub fn offset_for_timestamp(&self, ts: i64) -> Result<Option<(i64, i64)>, StorageError> {
        let found = {
            let view = self.view.read();
            view.segments
                .iter()
                .find(|s| s.max_timestamp() >= ts)
                .map(|s| (s.file.clone(), s.position_for_timestamp(ts), s.size))
        };
        let Some((file, start, end)) = found else {
            return Ok(None);
        };
        let Some((position, header)) = segment::find_batch(&file, start, end, |h| h.max_timestamp >= ts)?
        else {
            return Ok(None);
        };
        let fallback = (header.base_offset, header.max_timestamp);
        if header.is_compressed() {
            return Ok(Some(fallback));
        }
        let bytes = read_exact(&file, position, header.size())?;
        let exact = first_record(&bytes, |stamp| stamp.timestamp >= ts);
        Ok(Some(exact.unwrap_or(fallback)))
    }

    /// The first record with the largest timestamp, as (offset, timestamp). For a compressed
    /// batch, the batch's last offset stands in for the record's.
    pub fn max_timestamp(&self) -> Result<Option<(i64, i64)>, StorageError> {
        let best = {
            let view = self.view.read();
            let mut best: Option<(Arc<File>, BatchRef)> = None;
            for s in &view.segments {
                if let Some(b) = s.max_batch
                    && best.as_ref().is_none_or(|(_, current)| b.max_timestamp > current.max_timestamp)
                {
                    best = Some((s.file.clone(), b));
                }
            }
            best
        };
        let Some((file, b)) = best else {
            return Ok(None);
        };
        let fallback = (b.last_offset, b.max_timestamp);
        if b.compressed {
            return Ok(Some(fallback));
        }
        let size =
            usize::try_from(b.size).map_err(|_| segment::on_disk_corruption(b.position, "batch size"))?;
        let bytes = read_exact(&file, b.position, size)?;
        let exact = first_record(&bytes, |stamp| stamp.timestamp == b.max_timestamp);
        Ok(Some(exact.unwrap_or(fallback)))
    }

    /// A receiver of the high watermark that reports only changes after this call.
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        let mut rx = self.hwm.clone();
        rx.mark_unchanged();
        rx
    }

    /// Refuse further appends and close the watch (the topic is being deleted).
    pub fn close(&self) {
        self.writer.lock().hwm = None;
    }

    /// fsync the files written since the last flush (and the directory, if a segment was created).
    pub fn flush(&self) -> io::Result<()> {
        let (files, dir) = {
            let mut writer = self.writer.lock();
            (std::mem::take(&mut writer.unsynced), std::mem::take(&mut writer.dir_unsynced))
        };
        let mut failed = Vec::new();
        let mut error = None;
        for file in files {
            if let Err(e) = file.sync_data() {
                failed.push(file);
                error = Some(e);
            }
        }
        if dir && let Err(e) = File::open(&self.dir).and_then(|d| d.sync_all()) {
            error = Some(e);
        }
        if let Some(e) = error {
            let mut writer = self.writer.lock();
            writer.unsynced.extend(failed);
            writer.dir_unsynced |= dir;
            return Err(e);
        }
        Ok(())
    }

    #[cfg(test)]
    pub fn segment_count(&self) -> usize {
        self.view.read().segments.len()
    }

    #[cfg(test)]
    pub fn index_entries(&self) -> Vec<usize> {
        self.view.read().segments.iter().map(|s| s.index_len()).collect()
    }
}

impl View {
    fn active(&self) -> &Segment {
        // Invariant: a partition always has at least one segment.
        &self.segments[self.segments.len() - 1]
    }

    fn active_mut(&mut self) -> &mut Segment {
        let last = self.segments.len() - 1;
        &mut self.segments[last]
    }
}

/// Write all of `slices` at `position`, the current end of `file` (the writer is the only one
/// that moves the file cursor).
fn write_at_end(file: &File, position: u64, mut slices: &mut [IoSlice<'_>]) -> io::Result<()> {
    let mut w = file;
    w.seek(SeekFrom::Start(position))?;
    while !slices.is_empty() {
        match w.write_vectored(slices) {
            Ok(0) => {
                return Err(io::Error::new(io::ErrorKind::WriteZero, "the segment file accepted no bytes"));
            }
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Read whole batches starting at `position` (where a batch of `first_size` bytes starts),
/// stopping at `end`, before `max_bytes` is exceeded, or after the first batch when `min_one`.
fn read_batches(
    file: &File,
    position: u64,
    end: u64,
    first_size: usize,
    max_bytes: usize,
    min_one: bool,
) -> io::Result<Option<Bytes>> {
    let limit = if min_one { max_bytes.max(first_size) } else { max_bytes };
    let available = usize::try_from(end - position).unwrap_or(usize::MAX);
    let want = limit.min(available);
    if want < first_size {
        return Ok(None);
    }
    let mut buf = BytesMut::zeroed(want);
    file.read_exact_at(&mut buf, position)?;
    let mut whole = 0;
    while whole + HEADER_LEN <= buf.len() {
        let header = BatchHeader::parse(&buf[whole..])
            .map_err(|e| segment::on_disk_corruption(position + whole as u64, &e.to_string()))?;
        if whole + header.size() > buf.len() {
            break;
        }
        whole += header.size();
    }
    buf.truncate(whole);
    Ok(Some(buf.freeze()))
}

fn read_exact(file: &File, position: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, position)?;
    Ok(buf)
}

/// (offset, timestamp) of the first record of an uncompressed batch that satisfies `wanted`.
fn first_record(batch: &[u8], wanted: impl Fn(&batch::RecordStamp) -> bool) -> Option<(i64, i64)> {
    let stamps = batch::record_stamps(batch).ok()??;
    stamps.map_while(Result::ok).find(|s| wanted(s)).map(|s| (s.offset, s.timestamp))
}
