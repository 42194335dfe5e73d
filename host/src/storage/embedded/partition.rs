//! One partition: its segments, the single writer, and reads that run alongside the writer.
//!
//! Concurrency: appends hold `writer` for the whole append (one writer per partition). The
//! segment list, committed lengths, indexes and high watermark live in `view`, behind a RwLock
//! that is held only to look things up or to publish a completed write. Reads take a snapshot
//! under the read lock (file handle, committed length, index position) and do their positional
//! reads without any lock, so they never wait for a write syscall. Bytes are published (committed
//! length, high watermark, then the watch) only after they have been written.
//!
//! Producers' state (idempotence and transactions, see `storage::producers`) has a lock of its
//! own, so that reads find the last stable offset and the aborted transactions without waiting
//! for a write: an append is checked against it under the writer lock, before any byte is
//! written, and the new state is committed only once the batches are stored, before they are
//! published. So a reader that takes the view and then the producers' state never sees a
//! published batch of a transaction the state does not know (lock order: writer, then view or
//! producers; view, then producers; never producers, then view). At open it is rebuilt from
//! every segment in order, by the same scan that rebuilds the index: batch headers, and the
//! record of each transaction marker.

pub(super) use super::cleaner::swap::SwapStep;
use super::cleaner::{checkpoint, swap};
use super::log_start;
use super::segment::{self, BatchRef, Segment, SegmentFile};
use crate::record::batch::{self, BatchHeader, HEADER_LEN, ValidBatch};
use crate::storage::producers::{self, Checked, ProducerEpochs, ProducerStateTable};
use crate::storage::{AbortedTxn, AppendInfo, Isolation, ReadResult, StorageError, TxnMarker};
use bytes::{Bytes, BytesMut};
use parking_lot::{Mutex, RwLock};
use std::collections::HashSet;
use std::fs::File;
use std::io::{self, IoSlice, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::watch;

/// Where DeleteRecords keeps the log start offset when it lies past the first segment's base.
const LOG_START_FILE: &str = "log-start-offset";
const LOG_START_TMP: &str = "log-start-offset.tmp";

/// Per-partition settings taken from the topic config: at open (the index interval of the
/// recovery scan) and at every append, so that altered configs apply to the next append.
#[derive(Clone, Copy, Debug)]
pub(super) struct PartitionConfig {
    pub segment_bytes: u64,
    /// Roll the active segment once its first batch is this much older than the batches being
    /// appended (segment.ms; for a compacted topic, at most max.compaction.lag.ms, as Kafka's
    /// `LogConfig.maxSegmentMs`): the cleaner and retention never touch the active segment.
    pub segment_ms: i64,
    pub index_interval_bytes: u32,
}

pub(super) struct Partition {
    dir: PathBuf,
    view: RwLock<View>,
    writer: Mutex<Writer>,
    /// Producers' sequence and transaction state, as of the stored batches (written under the
    /// writer lock).
    producers: RwLock<ProducerStateTable>,
    /// Cloned for each subscriber; the sender lives in the writer.
    hwm: watch::Receiver<i64>,
    /// The log cleaner's state of this partition.
    cleaner: CleanerState,
    #[cfg(test)]
    pub faults: Mutex<Faults>,
}

/// I/O failures the next operations meet, for tests.
#[cfg(test)]
#[derive(Default)]
pub(super) struct Faults {
    /// The next write stores this many bytes, then fails with ENOSPC.
    pub write: Option<usize>,
    /// The next fsync of a segment fails with EIO.
    pub sync: bool,
    /// The next segment creation fails with EROFS.
    pub create: bool,
    /// The next removal of a segment fails with EROFS.
    pub remove: bool,
    /// The next this many cuts of a failed append fail with EROFS.
    pub cut: usize,
    /// The next swap of cleaned segments stops dead after this step, as a `kill -9` there
    /// would: nothing is undone and nothing in memory changes.
    pub crash_after: Option<SwapStep>,
    /// A simulated crash happened.
    pub crashed: bool,
}

/// What the log cleaner keeps per partition between passes.
#[derive(Default)]
struct CleanerState {
    /// Held for a whole pass: one pass at a time per partition.
    running: Mutex<()>,
    /// The first offset not cleaned yet (persisted, see `cleaner::checkpoint`); None before
    /// the first clean.
    checkpoint: Mutex<Option<i64>>,
    /// Set when a committed swap could neither finish nor be rolled forward: the files on disk
    /// are ahead of the view, so the partition is not cleaned again before the next open
    /// (which finishes the swap).
    blocked: AtomicBool,
}

/// A segment as the log cleaner sees it when a pass starts.
#[derive(Clone)]
pub(super) struct SegmentSnapshot {
    pub base_offset: i64,
    /// The segment's file (its identity; `get` opens it).
    pub file: Arc<SegmentFile>,
    /// Committed length: the pass reads no further.
    pub size: u64,
    pub max_timestamp: i64,
    pub first_batch_timestamp: Option<i64>,
}

/// What a cleaner pass starts from (taken under the locks, used without them).
pub(super) struct CleanSnapshot {
    /// Every segment but the active one, in offset order.
    pub segments: Vec<SegmentSnapshot>,
    pub active_base: i64,
    pub log_start: i64,
    pub high_watermark: i64,
    pub checkpoint: Option<i64>,
    /// (producer id, base offset) of every batch the idempotent-producer state remembers: the
    /// cleaner keeps them (empty if need be), so that the state rebuilt at the next open still
    /// recognizes a retry of any of them.
    pub producer_batches: HashSet<(i64, i64)>,
    /// The last stable offset: nothing from the first segment that reaches it on is cleaned
    /// (its transactions may still abort).
    pub last_stable: i64,
    /// The aborted transactions (every transactional batch below the last stable offset is
    /// decided: aborted if one of these spans it, else committed).
    pub aborted: Vec<AbortedTxn>,
    /// Whether the partition has held a transaction (else there are no markers to plan).
    pub transactional: bool,
}

struct View {
    /// Ordered by base offset; the last one is active. Never empty.
    segments: Vec<Segment>,
    log_start: i64,
    high_watermark: i64,
    /// Changes whenever segments are removed or replaced (retention, the cleaner), so that a
    /// read moving on to "the next segment" knows whether its index still means that.
    generation: u64,
}

struct Writer {
    /// None once the partition is closed (its topic deleted): appends fail, watches close.
    hwm: Option<watch::Sender<i64>>,
    /// Files written since the last flush.
    unsynced: Vec<Arc<File>>,
    /// A segment file was created since the last flush.
    dir_unsynced: bool,
    /// Bytes of a failed append that could not be cut off yet.
    dirty_tail: Option<DirtyTail>,
}

/// `file` (at `path`) must be cut back to `len` before anything more is written.
struct DirtyTail {
    file: Arc<File>,
    path: PathBuf,
    len: u64,
}

impl Partition {
    /// Open the partition in `dir`, creating it (with an empty first segment) if needed. The
    /// last segment is scanned with CRC checks and a torn or corrupt tail is cut off; earlier
    /// segments get a header-only scan. The producer state is seeded with what it held below the
    /// log start when that last moved (see `log_start`) and replayed from every segment kept, in
    /// order, from there on (one pass over the headers, which the index needs anyway; bodies are
    /// skipped but a transaction marker's). Before anything, what a crash left of a clean is
    /// finished or removed (see `cleaner::swap`).
    pub fn open(dir: &Path, config: PartitionConfig) -> io::Result<Partition> {
        std::fs::create_dir_all(dir)?;
        // A clean that a crash interrupted: finished if its swap was committed, else undone.
        swap::recover(dir)?;
        let cleaned_up_to = checkpoint::read(dir)?;
        let deleted_up_to = checkpoint::read_offset(dir, LOG_START_FILE, LOG_START_TMP, "log start offset")?;
        let mut bases = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if let Some(base) = entry.file_name().to_str().and_then(Segment::parse_file_name) {
                bases.push(base);
            }
        }
        bases.sort_unstable();

        let below = log_start::read(dir)?;
        let replay_from = below.as_ref().map_or(i64::MIN, |b| b.log_start);
        let mut producers = ProducerStateTable::new();
        producers.seed(below.map(|b| b.producers).unwrap_or_default());
        let mut recover = |base: i64, verify_crc: bool| -> io::Result<Segment> {
            let path = dir.join(Segment::file_name(base));
            let interval = config.index_interval_bytes;
            let recovered = segment::recover(&path, base, verify_crc, interval, replay_from, &mut producers)?;
            if let Some((dropped, reason)) = &recovered.truncated {
                tracing::warn!(
                    segment = %path.display(),
                    "truncated {dropped} bytes at the end of the segment ({reason}); \
                     offsets continue at {}",
                    recovered.segment.next_offset
                );
            }
            Ok(recovered.segment)
        };
        let mut segments = Vec::with_capacity(bases.len().max(1));
        // Whether the last segment kept had the full (CRC) scan.
        let mut last_verified = true;
        for (i, &base) in bases.iter().enumerate() {
            let last = i + 1 == bases.len();
            let path = dir.join(Segment::file_name(base));
            let segment = recover(base, last)?;
            let previous = segments.last().map(|s: &Segment| s.next_offset);
            if let Some(previous) = previous
                && base < previous
                && segment.size == 0
            {
                // An empty segment inside the offsets of the one before: the leftover of an
                // append that failed after creating it (and whose removal was lost in a crash).
                // Kept, it would move the log's end back and offsets would be handed out twice.
                // Empty, it gave the producers' state nothing.
                tracing::warn!(
                    segment = %path.display(),
                    "removing an empty segment at offset {base}, inside the previous one (which ends at {previous})"
                );
                std::fs::remove_file(&path)?;
                last_verified = !last;
                continue;
            }
            if let Some(previous) = previous
                && previous != base
            {
                tracing::warn!(
                    segment = %path.display(),
                    "segment starts at offset {base} but the previous one ends at {previous}"
                );
            }
            segments.push(segment);
            last_verified = last;
        }
        if !last_verified {
            // The segment kept last, the active one now, had the header-only scan, and the
            // producers' state has its batches: open again, now that the leftover after it is
            // gone, so that it gets the CRC checks of a last segment (and a torn tail of it
            // leaves nothing in the state). Each time a file fewer: this ends.
            drop(segments);
            return Partition::open(dir, config);
        }
        if !producers.is_empty() {
            tracing::debug!(dir = %dir.display(), producers = producers.len(), "recovered idempotent producer state");
        }
        let created = segments.is_empty();
        if created {
            segments.push(Segment::create(dir, 0)?);
        }
        let high_watermark = segments.last().map_or(0, |s| s.next_offset);
        // DeleteRecords may have moved the log start into the first segment (and a crash may
        // have come between the move and its segments' removal).
        let moved_to = deleted_up_to.unwrap_or(0).max(replay_from);
        let log_start = segments[0].base_offset.max(moved_to.min(high_watermark));
        // What the log start passed was evicted when it moved (a log of an older version, whose
        // whole first segment is replayed, may still hold some).
        producers.evict_before(log_start);
        let (tx, rx) = watch::channel(high_watermark);
        let cleaner = CleanerState { checkpoint: Mutex::new(cleaned_up_to), ..CleanerState::default() };
        Ok(Partition {
            dir: dir.to_path_buf(),
            cleaner,
            view: RwLock::new(View { segments, log_start, high_watermark, generation: 0 }),
            writer: Mutex::new(Writer {
                hwm: Some(tx),
                unsynced: Vec::new(),
                dir_unsynced: created,
                dirty_tail: None,
            }),
            producers: RwLock::new(producers),
            hwm: rx,
            #[cfg(test)]
            faults: Mutex::new(Faults::default()),
        })
    }

    /// Append already validated batches of `records`, with the topic's current `config`
    /// (segment size and age for rolling, index interval): assign contiguous offsets, check
    /// idempotent producers' sequences (with `epochs`, the latest epoch of each producer id
    /// host-wide, which the append raises), write each batch with its base offset patched
    /// (vectored, straight from `records`), with `sync` also fsync it (and the directory, for a
    /// new segment), then publish. An append of batches already stored (a producer's retry)
    /// writes nothing and returns their original offsets.
    ///
    /// A failed append changes nothing anyone can see: the bytes it wrote are cut off again, a
    /// segment it created is removed, and the segment sizes, index, high watermark and watch
    /// are untouched, so the next append lands where this one would have. The error names the
    /// file and is logged here.
    pub fn append(
        &self,
        records: &Bytes,
        batches: &[ValidBatch],
        config: &PartitionConfig,
        sync: bool,
        epochs: &ProducerEpochs,
        unsequenced_txn: bool,
    ) -> Result<AppendInfo, StorageError> {
        self.append_checked(records, batches, config, sync, epochs, |producers, headers| {
            producers.check(headers, |pid| epochs.latest(pid), unsequenced_txn)
        })
    }

    /// Append the transaction coordinator's `marker`, whose control batch `records` holds
    /// (validated, the only batch in `batches`), as [`append`](Self::append) appends: it is
    /// checked against the producer's state on the partition (a stale epoch is refused) instead
    /// of the sequence checks, and ends the producer's open transaction once stored.
    pub fn write_marker(
        &self,
        records: &Bytes,
        batches: &[ValidBatch],
        marker: &TxnMarker,
        config: &PartitionConfig,
        sync: bool,
        epochs: &ProducerEpochs,
    ) -> Result<AppendInfo, StorageError> {
        self.append_checked(records, batches, config, sync, epochs, |producers, headers| match headers {
            [h] if h.is_control() => {
                producers.check_marker(marker, h.base_offset, h.max_timestamp).map(Checked::Append)
            }
            _ => Err(StorageError::InvalidRecord("a transaction marker is one control batch".into())),
        })
    }

    /// [`append`](Self::append) with the producers' check `check` (given the state and the
    /// batches' headers with their assigned offsets).
    fn append_checked(
        &self,
        records: &Bytes,
        batches: &[ValidBatch],
        config: &PartitionConfig,
        sync: bool,
        epochs: &ProducerEpochs,
        check: impl FnOnce(&ProducerStateTable, &[BatchHeader]) -> Result<Checked, StorageError>,
    ) -> Result<AppendInfo, StorageError> {
        let mut writer = self.writer.lock();
        if writer.hwm.is_none() {
            return Err(StorageError::UnknownTopicOrPartition);
        }
        self.cut_dirty_tail(&mut writer)?;
        let total: u64 = batches.iter().map(|b| b.size() as u64).sum();
        let newest = batches.iter().map(|b| b.header.max_timestamp).max().unwrap_or(i64::MIN);
        let (active_file, active_path, active_size, aged, base_offset, log_start) = {
            let view = self.view.read();
            let active = view.active();
            let aged = active.aged(newest, segment::now_ms(), config.segment_ms);
            (active.file.clone(), active.path.clone(), active.size, aged, view.high_watermark, view.log_start)
        };
        // The active segment is never closed, so this is its open file.
        let active_file = active_file.get().map_err(|e| with_path(e, "opening segment", &active_path))?;
        // The assigned base offset of each batch, and its header as stored.
        let mut next = base_offset;
        let mut headers = Vec::with_capacity(batches.len());
        for b in batches {
            let mut header = b.header;
            header.base_offset = next;
            next = header.next_offset();
            headers.push(header);
        }
        let checked = check(&self.producers.read(), &headers)?;
        let producers = match checked {
            Checked::Append(pending) => pending,
            Checked::Duplicate { base_offset, last_offset } => {
                tracing::debug!(dir = %self.dir.display(), base_offset, last_offset, "a producer's retry of stored batches; appended nothing");
                return Ok(AppendInfo { base_offset, last_offset, log_start_offset: log_start });
            }
        };

        // A new active segment, published only once the batches are in it.
        let full = active_size.saturating_add(total) > config.segment_bytes;
        let rolled = if active_size > 0 && (full || aged) {
            Some(self.create_segment(base_offset).map_err(|e| {
                let path = self.dir.join(Segment::file_name(base_offset));
                tracing::error!(segment = %path.display(), error = %e, "append failed: cannot create a new segment");
                with_path(e, "creating segment", &path)
            })?)
        } else {
            None
        };
        let (file, path, position) = match &rolled {
            Some(s) => {
                (s.file.get().map_err(|e| with_path(e, "opening segment", &s.path))?, s.path.clone(), 0)
            }
            None => (active_file, active_path, active_size),
        };

        let patched: Vec<[u8; 8]> = headers.iter().map(|h| h.base_offset.to_be_bytes()).collect();
        let mut slices = Vec::with_capacity(2 * batches.len());
        for (b, offset) in batches.iter().zip(&patched) {
            slices.push(IoSlice::new(offset));
            slices.push(IoSlice::new(&records[b.position + 8..b.position + b.size()]));
        }
        // A new segment's name must be durable too (and the first segment's, not synced yet).
        let sync_dir = sync && (rolled.is_some() || writer.dir_unsynced);
        let written = self.write_at_end(&file, position, &mut slices).and_then(|()| {
            if sync {
                self.sync_file(&file)?;
            }
            if sync_dir { self.sync_dir() } else { Ok(()) }
        });
        if let Err(e) = written {
            tracing::error!(
                segment = %path.display(),
                position,
                bytes = total,
                error = %e,
                "append failed; nothing of it is kept"
            );
            self.undo_append(&mut writer, rolled, &file, &path, position);
            return Err(
                with_path(e, &format!("appending {total} bytes at position {position} to"), &path).into()
            );
        }

        // The producers' state first: a reader that sees the batches sees their transactions.
        for (pid, epoch) in producers.epochs() {
            epochs.observe(pid, epoch);
        }
        self.producers.write().commit(producers);
        {
            let mut view = self.view.write();
            if let Some(segment) = rolled {
                tracing::debug!(segment = %segment.path.display(), "rolled a new segment");
                view.segments.push(segment);
                writer.dir_unsynced |= !sync_dir;
            }
            let active = view.active_mut();
            for header in &headers {
                active.note_batch(header, config.index_interval_bytes);
            }
            view.high_watermark = next;
        }
        if sync_dir {
            writer.dir_unsynced = false;
        }
        if !sync && !writer.unsynced.last().is_some_and(|f| Arc::ptr_eq(f, &file)) {
            writer.unsynced.push(file);
        }
        if let Some(tx) = &writer.hwm {
            tx.send_replace(next);
        }
        Ok(AppendInfo { base_offset, last_offset: next - 1, log_start_offset: log_start })
    }

    /// The producer checks an append of `header` (a producer's batch) would meet now, without
    /// changing anything: its original offsets if it repeats a stored batch, None if it would
    /// be accepted, or the error it would get (a stale epoch, a sequence gap).
    pub fn precheck(
        &self,
        header: &BatchHeader,
        epochs: &ProducerEpochs,
    ) -> Result<Option<(i64, i64)>, StorageError> {
        // Under the writer lock: not while an append is between its check and its commit.
        let _writer = self.writer.lock();
        let checked =
            self.producers.read().check(std::slice::from_ref(header), |pid| epochs.latest(pid), false)?;
        match checked {
            Checked::Duplicate { base_offset, last_offset } => Ok(Some((base_offset, last_offset))),
            Checked::Append(_) => Ok(None),
        }
    }

    /// After a failed write: cut `file` back to `len` (its committed length) and remove a segment
    /// created for this append. What cannot be undone now is remembered and retried before the
    /// next append, which is refused until it succeeds: bytes past a committed length must never
    /// stay behind data written later.
    fn undo_append(
        &self,
        writer: &mut Writer,
        rolled: Option<Segment>,
        file: &Arc<File>,
        path: &Path,
        len: u64,
    ) {
        if let Some(segment) = rolled {
            // The directory changed either way.
            writer.dir_unsynced = true;
            match self.remove_file(path) {
                Ok(()) => return,
                Err(e) => {
                    // Keep it as the (empty) active segment instead: a stray file with a base
                    // offset below the log's end would lose offsets at the next open.
                    tracing::error!(segment = %path.display(), error = %e, "cannot remove the segment of a failed append; keeping it, empty");
                    self.view.write().segments.push(segment);
                }
            }
        }
        let tail = DirtyTail { file: file.clone(), path: path.to_path_buf(), len };
        if let Err(e) = self.cut(&tail) {
            tracing::error!(segment = %path.display(), len, error = %e, "cannot cut a failed append off; retried before the next append");
            writer.dirty_tail = Some(tail);
        }
    }

    /// Retry cutting off what a failed append left behind, if anything.
    fn cut_dirty_tail(&self, writer: &mut Writer) -> Result<(), StorageError> {
        let Some(tail) = &writer.dirty_tail else { return Ok(()) };
        if let Err(e) = self.cut(tail) {
            tracing::error!(segment = %tail.path.display(), len = tail.len, error = %e, "append refused: the bytes of an earlier failed append are still there and cannot be cut off");
            return Err(with_path(e, "cutting a failed append off", &tail.path).into());
        }
        tracing::info!(segment = %tail.path.display(), len = tail.len, "cut a failed append off");
        writer.dirty_tail = None;
        Ok(())
    }

    /// Truncate the file to `tail.len` if it is longer.
    fn cut(&self, tail: &DirtyTail) -> io::Result<()> {
        #[cfg(test)]
        {
            let mut faults = self.faults.lock();
            if faults.cut > 0 {
                faults.cut -= 1;
                return Err(io::Error::from_raw_os_error(30)); // EROFS
            }
        }
        if tail.file.metadata()?.len() > tail.len { tail.file.set_len(tail.len) } else { Ok(()) }
    }

    fn create_segment(&self, base_offset: i64) -> io::Result<Segment> {
        #[cfg(test)]
        if std::mem::take(&mut self.faults.lock().create) {
            return Err(io::Error::from_raw_os_error(30)); // EROFS
        }
        Segment::create(&self.dir, base_offset)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        #[cfg(test)]
        if std::mem::take(&mut self.faults.lock().remove) {
            return Err(io::Error::from_raw_os_error(30)); // EROFS
        }
        std::fs::remove_file(path)
    }

    /// Write all of `slices` at `position`, the current end of `file` (the writer is the only
    /// one that moves the file cursor).
    fn write_at_end(&self, file: &File, position: u64, slices: &mut [IoSlice<'_>]) -> io::Result<()> {
        #[cfg(test)]
        if let Some(n) = self.faults.lock().write.take() {
            // Store the first `n` bytes, then fail as a full disk does.
            let all: Vec<u8> = slices.iter().flat_map(|s| s.iter().copied()).collect();
            file.write_all_at(&all[..n.min(all.len())], position)?;
            return Err(io::Error::from_raw_os_error(28)); // ENOSPC
        }
        write_at_end(file, position, slices)
    }

    fn sync_file(&self, file: &File) -> io::Result<()> {
        #[cfg(test)]
        if std::mem::take(&mut self.faults.lock().sync) {
            return Err(io::Error::from_raw_os_error(5)); // EIO
        }
        file.sync_data()
    }

    fn sync_dir(&self) -> io::Result<()> {
        File::open(&self.dir).and_then(|d| d.sync_all())
    }

    /// Whole batches from the one that holds `offset`, up to `max_bytes` (at least the first
    /// one when `min_one`), from a single segment. With [`Isolation::ReadCommitted`], only
    /// batches below the last stable offset, and the aborted transactions among them (see
    /// `Log::read_with`).
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
        isolation: Isolation,
    ) -> Result<ReadResult, StorageError> {
        let committed = isolation == Isolation::ReadCommitted;
        // None on the first visit; then the next segment, when the segment that should hold
        // `offset` has no batch at or after it (the log cleaner removed its last batches, or a
        // crash left a gap): the first batch after the gap is returned instead, as Kafka does.
        let mut next_segment: Option<usize> = None;
        // The view's generation when `next_segment` was chosen: if segments were removed or
        // replaced since, the index means nothing and the search starts over from `offset`.
        let mut generation = 0;
        loop {
            // The high watermark returned is taken together with the committed length the read
            // goes up to, so no record returned is ever beyond it; the last stable offset right
            // after it (the producers' state is committed before an append is published, so it
            // knows every transaction the view holds).
            let (found, high_watermark, log_start, last_stable) = {
                let view = self.view.read();
                let last_stable =
                    self.producers.read().last_stable_offset(view.log_start, view.high_watermark);
                let limit = if committed { last_stable } else { view.high_watermark };
                if next_segment.is_some() && view.generation != generation {
                    next_segment = None;
                }
                generation = view.generation;
                let at = match next_segment {
                    Some(i) => Some((i, 0)),
                    None => {
                        if offset < view.log_start || offset > view.high_watermark {
                            return Err(StorageError::OffsetOutOfRange {
                                requested: offset,
                                start: view.log_start,
                                end: view.high_watermark,
                            });
                        }
                        let i = view.segments.partition_point(|s| s.base_offset <= offset).saturating_sub(1);
                        (offset < limit)
                            .then(|| view.segments.get(i).map(|s| (i, s.position_for_offset(offset))))
                            .flatten()
                    }
                };
                let found = at
                    .and_then(|(i, start)| view.segments.get(i).map(|s| (i, s.file.clone(), start, s.size)));
                (found, view.high_watermark, view.log_start, last_stable)
            };
            let limit = if committed { last_stable } else { high_watermark };
            let answer = |records| {
                self.read_result(records, offset, high_watermark, log_start, last_stable, committed)
            };
            let Some((i, file, start, end)) = found else {
                return Ok(answer(None));
            };
            let file = file.get()?;
            if let Some((position, first)) =
                segment::find_batch(&file, start, end, |h| h.last_offset() >= offset)?
            {
                if first.last_offset() >= limit {
                    // The first batch from `offset` on is not stable yet.
                    return Ok(answer(None));
                }
                let records = read_batches(&file, position, end, first.size(), max_bytes, min_one, limit)?;
                return Ok(answer(records));
            }
            next_segment = Some(i + 1);
        }
    }

    /// A read's answer: `records` with the offset after their last batch, the offsets, and,
    /// when the read is `committed`, the aborted transactions a consumer needs for it.
    fn read_result(
        &self,
        records: Option<(Bytes, i64)>,
        offset: i64,
        high_watermark: i64,
        log_start: i64,
        last_stable: i64,
        committed: bool,
    ) -> ReadResult {
        let aborted = if committed {
            let upper = records.as_ref().map_or(last_stable, |(_, next)| *next);
            self.producers.read().aborted_between(offset, upper)
        } else {
            Vec::new()
        };
        ReadResult {
            records: records.map(|(bytes, _)| bytes),
            high_watermark,
            log_start_offset: log_start,
            last_stable_offset: last_stable,
            aborted,
        }
    }

    /// Close the files of sealed segments nobody used for `idle_ms` (the active segment's stays
    /// open). Returns how many were closed.
    pub fn close_idle_files(&self, now_ms: i64, idle_ms: i64) -> usize {
        let view = self.view.read();
        let sealed = view.segments.len().saturating_sub(1);
        view.segments[..sealed].iter().filter(|s| s.file.close_if_idle(now_ms, idle_ms)).count()
    }

    /// How many of the partition's segment files are open.
    #[cfg(test)]
    pub fn open_files(&self) -> usize {
        self.view.read().segments.iter().filter(|s| s.file.is_open()).count()
    }

    /// Delete whole old segments, as Kafka's retention does: a segment whose newest record is
    /// older than `now_ms - retention_ms` (when `retention_ms >= 0`), and, oldest first,
    /// segments the partition can lose while still holding at least `retention_bytes` (when
    /// `retention_bytes >= 0`). The active segment goes too when it qualifies after all the
    /// others (a new empty one replaces it). The log start offset moves to the first kept
    /// segment. Returns the segments deleted and the new log start.
    pub fn apply_retention(
        &self,
        retention_ms: i64,
        retention_bytes: i64,
        now_ms: i64,
    ) -> io::Result<(usize, i64)> {
        // The writer lock keeps appends and rolls out while the segment list changes.
        let _writer = self.writer.lock();
        // How many segments go, oldest first. The active one goes too once it breaches the
        // limits with everything before it, as in Kafka: a new, empty active segment at the
        // high watermark replaces it, so the log start moves to the high watermark.
        let (n, segments, high_watermark, new_start) = {
            let view = self.view.read();
            let mut total: u64 = view.segments.iter().map(|s| s.size).sum();
            let mut n = 0;
            while let Some(s) = view.segments.get(n) {
                let newest = s.max_timestamp();
                let expired =
                    retention_ms >= 0 && newest != i64::MIN && newest < now_ms.saturating_sub(retention_ms);
                let oversize = retention_bytes >= 0 && total.saturating_sub(s.size) >= retention_bytes as u64;
                let active_and_empty = n + 1 == view.segments.len() && s.size == 0;
                if !(expired || oversize) || active_and_empty {
                    break;
                }
                total -= s.size;
                n += 1;
            }
            let new_start =
                view.segments.get(n).map_or(view.high_watermark, |s| s.base_offset).max(view.log_start);
            (n, view.segments.len(), view.high_watermark, new_start)
        };
        if n == 0 {
            return Ok((0, self.view.read().log_start));
        }
        // Before anything goes: what the producers' state holds below the new log start, which
        // a restart from here on starts from.
        log_start::write(&self.dir, new_start, self.producers.read().below(new_start))?;
        // The new segment's name is durable before the old active one's goes: a crash between
        // must not leave a partition without segments (it would restart its offsets at 0).
        let fresh = if n == segments {
            let s = self.create_segment(high_watermark)?;
            self.sync_dir()?;
            Some(s)
        } else {
            None
        };
        let (removed, log_start) = {
            let mut view = self.view.write();
            let removed: Vec<Segment> = view.segments.drain(..n).collect();
            if let Some(s) = fresh {
                view.segments.push(s);
            }
            view.log_start = view.log_start.max(view.segments[0].base_offset);
            view.generation += 1;
            (removed, view.log_start)
        };
        self.producers.write().evict_before(log_start);
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

    /// DeleteRecords: move the log start up to `offset` (-1: the high watermark), durably (the
    /// `log-start-offset` file), and delete the whole segments below it, never the active one.
    /// Records below the log start are unreadable from now on, though they stay in the file
    /// of the segment that holds the new start. Returns the new log start.
    pub fn delete_records(&self, offset: i64) -> Result<i64, StorageError> {
        // The writer lock keeps appends, retention and the cleaner's swaps out meanwhile.
        let _writer = self.writer.lock();
        let (log_start, high_watermark) = self.offsets();
        let offset = if offset == -1 { high_watermark } else { offset };
        if !(0..=high_watermark).contains(&offset) {
            return Err(StorageError::OffsetOutOfRange {
                requested: offset,
                start: log_start,
                end: high_watermark,
            });
        }
        if offset <= log_start {
            return Ok(log_start);
        }
        // What the producers' state holds below the new log start first: a restart from here on
        // starts from it (and from the new log start, were the next write cut short).
        log_start::write(&self.dir, offset, self.producers.read().below(offset))?;
        checkpoint::write_offset(&self.dir, LOG_START_FILE, LOG_START_TMP, offset)?;
        let removed: Vec<Segment> = {
            let mut view = self.view.write();
            view.log_start = offset;
            let mut n = 0;
            while n + 1 < view.segments.len() && view.segments[n + 1].base_offset <= offset {
                n += 1;
            }
            if n > 0 {
                view.generation += 1;
            }
            view.segments.drain(..n).collect()
        };
        self.producers.write().evict_before(offset);
        for s in &removed {
            std::fs::remove_file(&s.path)?;
        }
        tracing::info!(dir = %self.dir.display(), log_start = offset, segments = removed.len(), "deleted records");
        Ok(offset)
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
        let file = file.get()?;
        let Some((position, header)) = segment::find_batch(&file, start, end, |h| h.max_timestamp >= ts)?
        else {
            return Ok(None);
        };
        let fallback = (header.base_offset, header.max_timestamp);
        let found = if header.is_compressed() {
            fallback
        } else {
            let bytes = read_exact(&file, position, header.size())?;
            batch::first_stamp(&bytes, |t| t >= ts).unwrap_or(fallback)
        };
        // Records below the log start (DeleteRecords) are gone, as far as clients know.
        let log_start = self.view.read().log_start;
        Ok(Some((found.0.max(log_start), found.1)))
    }

    /// The first record with the largest timestamp, as (offset, timestamp). For a compressed
    /// batch, the batch's last offset stands in for the record's.
    pub fn max_timestamp(&self) -> Result<Option<(i64, i64)>, StorageError> {
        let best = {
            let view = self.view.read();
            let mut best: Option<(Arc<SegmentFile>, BatchRef)> = None;
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
        let file = file.get()?;
        let fallback = (b.last_offset, b.max_timestamp);
        if b.compressed {
            return Ok(Some(fallback));
        }
        let size =
            usize::try_from(b.size).map_err(|_| segment::on_disk_corruption(b.position, "batch size"))?;
        let bytes = read_exact(&file, b.position, size)?;
        let exact = batch::first_stamp(&bytes, |t| t == b.max_timestamp);
        Ok(Some(exact.unwrap_or(fallback)))
    }

    /// A receiver of the high watermark that reports only changes after this call.
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        let mut rx = self.hwm.clone();
        rx.mark_unchanged();
        rx
    }

    /// Its segments' bytes and its idempotent producers.
    pub fn report(&self) -> crate::storage::PartitionReport {
        let size_bytes = self.view.read().segments.iter().map(|s| s.size).sum();
        crate::storage::PartitionReport { size_bytes, producers: self.producers.read().snapshot() }
    }

    /// (producer id, epoch) of every idempotent producer this partition knows.
    pub fn producer_epochs(&self) -> Vec<(i64, i16)> {
        self.producers.read().epochs().collect()
    }

    /// The last stable offset: the first offset of the earliest open transaction, else the
    /// high watermark.
    pub fn last_stable_offset(&self) -> i64 {
        let view = self.view.read();
        self.producers.read().last_stable_offset(view.log_start, view.high_watermark)
    }

    /// The transaction coordinator added this partition to producer `pid`'s transaction at
    /// `epoch` (under the writer lock, so in order with appends and markers).
    pub fn register_txn(&self, pid: i64, epoch: i16) {
        let _writer = self.writer.lock();
        self.producers.write().register_txn(pid, epoch);
    }

    /// Refuse further appends and close the watch (the topic is being deleted).
    pub fn close(&self) {
        self.writer.lock().hwm = None;
    }

    /// fsync the files written since the last flush (and the directory, if a segment was
    /// created). What fails stays to be synced by the next flush; the error names the partition.
    pub fn flush(&self) -> io::Result<()> {
        let (files, dir) = {
            let mut writer = self.writer.lock();
            // Also the moment to retry cutting off a failed append (logged if it fails again).
            let _ = self.cut_dirty_tail(&mut writer);
            (std::mem::take(&mut writer.unsynced), std::mem::take(&mut writer.dir_unsynced))
        };
        let mut failed = Vec::new();
        let mut error = None;
        for file in files {
            if let Err(e) = self.sync_file(&file) {
                failed.push(file);
                error = Some(e);
            }
        }
        if dir && let Err(e) = self.sync_dir() {
            error = Some(e);
        }
        if let Some(e) = error {
            let mut writer = self.writer.lock();
            writer.unsynced.extend(failed);
            writer.dir_unsynced |= dir;
            return Err(with_path(e, "syncing the partition", &self.dir));
        }
        Ok(())
    }

    /// The directory of the partition's files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Take the partition's cleaner lock for one pass: None when a pass is already running or
    /// an unfinished swap blocks cleaning until the next open.
    pub fn start_clean(&self) -> Option<parking_lot::MutexGuard<'_, ()>> {
        if self.cleaner.blocked.load(Ordering::Relaxed) {
            return None;
        }
        self.cleaner.running.try_lock()
    }

    /// What a cleaner pass starts from: the segments but the active one, the offsets, the
    /// checkpoint, the batches idempotent producers' state depends on, the last stable offset
    /// and the aborted transactions (all as of one moment: no append in between).
    pub fn clean_snapshot(&self) -> CleanSnapshot {
        let _writer = self.writer.lock();
        let (producer_batches, first_unstable, aborted, transactional) = {
            let table = self.producers.read();
            let batches = table
                .epochs()
                .filter_map(|(pid, _)| table.get(pid).map(|e| (pid, e)))
                .flat_map(|(pid, e)| e.batches().map(move |b| (pid, b.base_offset)))
                .collect();
            (
                batches,
                table.first_unstable_offset(),
                table.aborted().copied().collect(),
                table.has_transactions(),
            )
        };
        let view = self.view.read();
        let last_stable = producers::last_stable_offset(first_unstable, view.log_start, view.high_watermark);
        let inactive = &view.segments[..view.segments.len() - 1];
        CleanSnapshot {
            segments: inactive
                .iter()
                .map(|s| SegmentSnapshot {
                    base_offset: s.base_offset,
                    file: s.file.clone(),
                    size: s.size,
                    max_timestamp: s.max_timestamp(),
                    first_batch_timestamp: s.first_batch_timestamp,
                })
                .collect(),
            active_base: view.active().base_offset,
            log_start: view.log_start,
            high_watermark: view.high_watermark,
            checkpoint: *self.cleaner.checkpoint.lock(),
            producer_batches,
            last_stable,
            aborted,
            transactional,
        }
    }

    /// See `ProducerStateTable::forget_aborted` (the cleaner, before it drops markers).
    pub fn forget_aborted(&self, dropped: impl Fn(i64) -> bool) {
        let _writer = self.writer.lock();
        self.producers.write().forget_aborted(dropped);
    }

    /// Persist the cleaner's checkpoint (the first offset not cleaned yet). Under the writer
    /// lock, like a swap: a closed partition's directory may already hold a new topic of the
    /// same name, which must not get this checkpoint.
    pub fn set_clean_checkpoint(&self, offset: i64) -> io::Result<()> {
        self.crash_point(SwapStep::Swapped)?;
        let writer = self.writer.lock();
        if writer.hwm.is_none() {
            return Ok(());
        }
        checkpoint::write(&self.dir, offset)?;
        *self.cleaner.checkpoint.lock() = Some(offset);
        Ok(())
    }

    /// Swap `cleaned` (a complete segment built by the cleaner in `cleaned_path`, fsynced, named
    /// for its final place) in for `group`, consecutive segments that the segment at `end`
    /// follows. Under the writer lock, so appends and retention wait only for the renames and
    /// directory fsyncs, not for the clean. The protocol (see `cleaner::swap`): rename the file
    /// to its swap name (the commit point: from here a crash finishes the swap at the next
    /// open), delete the group's other files, rename the swap file over the group's first one.
    /// Readers that hold a replaced segment's file keep reading it.
    ///
    /// Ok(false), with the cleaned file removed, when the group is no longer in the view as it
    /// was (retention deleted some of it, or the topic is being deleted).
    pub fn replace_segments(
        &self,
        group: &[SegmentSnapshot],
        cleaned: Segment,
        cleaned_path: &Path,
        end: i64,
    ) -> io::Result<bool> {
        let writer = self.writer.lock();
        let at = {
            let view = self.view.read();
            let first = view
                .segments
                .iter()
                .position(|s| group.first().is_some_and(|g| Arc::ptr_eq(&s.file, &g.file)));
            first.filter(|&i| {
                let same = group.iter().zip(&view.segments[i..]).all(|(g, s)| Arc::ptr_eq(&g.file, &s.file));
                // The group is whole and is followed by the segment at `end` (never the group's
                // own last segment becoming active: the active one is never in a group).
                same && view.segments.get(i + group.len()).is_some_and(|next| next.base_offset == end)
            })
        };
        let Some(at) = at.filter(|_| writer.hwm.is_some()) else {
            if let Err(e) = std::fs::remove_file(cleaned_path) {
                tracing::warn!(file = %cleaned_path.display(), error = %e, "cannot remove an abandoned cleaned segment");
            }
            return Ok(false);
        };
        let base = cleaned.base_offset;
        self.crash_point(SwapStep::Written)?;
        let swap_path = swap::commit(&self.dir, cleaned_path, base, end).inspect_err(|_| {
            // Not committed: the old segments stay, and so would the cleaned file until the
            // next open.
            let _ = std::fs::remove_file(cleaned_path);
        })?;
        let completed = swap::complete(&self.dir, &swap_path, base, end, |step| self.crash_point(step));
        if let Err(e) = completed {
            if self.crashed() {
                return Err(e);
            }
            tracing::error!(dir = %self.dir.display(), error = %e, "cannot finish swapping a cleaned segment in; retrying");
            if let Err(again) = swap::complete(&self.dir, &swap_path, base, end, |_| Ok(())) {
                tracing::error!(dir = %self.dir.display(), error = %again, "cannot finish swapping a cleaned segment in; \
                    the partition is not cleaned again before the next start, which finishes it");
                self.cleaner.blocked.store(true, Ordering::Relaxed);
                return Err(again);
            }
        }
        let mut view = self.view.write();
        view.segments.splice(at..at + group.len(), [cleaned]);
        view.generation += 1;
        drop(writer);
        Ok(true)
    }

    /// A simulated `kill -9` after `step` (tests); nothing otherwise.
    fn crash_point(&self, step: SwapStep) -> io::Result<()> {
        #[cfg(test)]
        {
            let mut faults = self.faults.lock();
            if faults.crash_after == Some(step) {
                faults.crash_after = None;
                faults.crashed = true;
                return Err(io::Error::other(format!("simulated crash after {step:?}")));
            }
        }
        let _ = step;
        Ok(())
    }

    /// Whether a simulated crash happened (tests): nothing may be undone after it.
    fn crashed(&self) -> bool {
        #[cfg(test)]
        let crashed = self.faults.lock().crashed;
        #[cfg(not(test))]
        let crashed = false;
        crashed
    }

    #[cfg(test)]
    pub fn clean_checkpoint(&self) -> Option<i64> {
        *self.cleaner.checkpoint.lock()
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

/// `e` with what was being done to which file in front of its message (the kind is kept).
fn with_path(e: io::Error, doing: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{doing} {}: {e}", path.display()))
}

/// Read whole batches starting at `position` (where a batch of `first_size` bytes starts),
/// stopping at `end`, before `max_bytes` is exceeded, after the first batch when `min_one`, or
/// before the first batch whose last offset is at or past `stop_at` (the last stable offset of
/// a read-committed read). Returns them with the offset after the last one.
fn read_batches(
    file: &File,
    position: u64,
    end: u64,
    first_size: usize,
    max_bytes: usize,
    min_one: bool,
    stop_at: i64,
) -> io::Result<Option<(Bytes, i64)>> {
    let limit = if min_one { max_bytes.max(first_size) } else { max_bytes };
    let available = usize::try_from(end - position).unwrap_or(usize::MAX);
    let want = limit.min(available);
    if want < first_size {
        return Ok(None);
    }
    let mut buf = BytesMut::zeroed(want);
    file.read_exact_at(&mut buf, position)?;
    let mut whole = 0;
    let mut next = None;
    while whole + HEADER_LEN <= buf.len() {
        let header = BatchHeader::parse(&buf[whole..])
            .map_err(|e| segment::on_disk_corruption(position + whole as u64, &e.to_string()))?;
        if whole + header.size() > buf.len() || header.last_offset() >= stop_at {
            break;
        }
        whole += header.size();
        next = Some(header.next_offset());
    }
    buf.truncate(whole);
    Ok(next.map(|next| (buf.freeze(), next)))
}

fn read_exact(file: &File, position: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, position)?;
    Ok(buf)
}
