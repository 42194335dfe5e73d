//! One segment file: its in-memory sparse index, header walking for reads, and the recovery
//! scan at open.

use crate::record::batch::{self, BatchHeader, CRC_START, ControlType, HEADER_LEN};
use crate::storage::producers::ProducerStateTable;
use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// Segment files are named after their base offset, zero-padded to 20 digits.
const LOG_SUFFIX: &str = ".log";
/// How much a header walk reads per positional read.
const WALK_CHUNK: usize = 16 * 1024;
/// Buffer size of the sequential recovery scan.
const SCAN_BUFFER: usize = 64 * 1024;
/// The largest control batch whose record the recovery scan reads (a transaction marker takes
/// 78 bytes); a larger one is no marker Guise wrote, and its header is all the scan looks at.
const MAX_CONTROL_BATCH: u64 = 4096;

/// One entry of the sparse index.
#[derive(Clone, Copy, Debug)]
pub(super) struct IndexEntry {
    /// Base offset of the batch at `position`.
    pub offset: i64,
    pub position: u64,
    /// The largest batch max timestamp before `position` in this segment (i64::MIN if none):
    /// a timestamp lookup for `ts` can start at the last entry where this is below `ts`.
    pub max_timestamp_before: i64,
}

/// Where a batch is, with what a timestamp lookup needs.
#[derive(Clone, Copy, Debug)]
pub(super) struct BatchRef {
    pub position: u64,
    pub size: u64,
    pub last_offset: i64,
    pub max_timestamp: i64,
    pub compressed: bool,
}

/// A segment's file, open while it is used: a sealed segment nobody read for a while is closed
/// ([`SegmentFile::close_if_idle`], from the retention pass) and opened again on its next read,
/// so a partition's open files do not grow with its number of segments. Its identity (the
/// `Arc` around it) is the segment's, whether or not the file is open.
pub(super) struct SegmentFile {
    path: PathBuf,
    open: parking_lot::Mutex<Option<Arc<File>>>,
    /// When it was last handed out, in ms since the epoch.
    used_ms: AtomicI64,
}

impl SegmentFile {
    pub fn new(path: PathBuf, file: File) -> SegmentFile {
        SegmentFile {
            path,
            open: parking_lot::Mutex::new(Some(Arc::new(file))),
            used_ms: AtomicI64::new(now_ms()),
        }
    }

    /// The open file, opened again (read and write, as created) if it was closed.
    pub fn get(&self) -> io::Result<Arc<File>> {
        let mut open = self.open.lock();
        self.used_ms.store(now_ms(), Ordering::Relaxed);
        if let Some(f) = &*open {
            return Ok(f.clone());
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.path)
            .map_err(|e| io::Error::new(e.kind(), format!("reopening {}: {e}", self.path.display())))?;
        let file = Arc::new(file);
        *open = Some(file.clone());
        Ok(file)
    }

    /// Close the file if nothing used it for `idle_ms` and nothing holds it now (a reader, an
    /// fsync still owed). True if it was closed.
    pub fn close_if_idle(&self, now_ms: i64, idle_ms: i64) -> bool {
        let mut open = self.open.lock();
        let idle = now_ms.saturating_sub(self.used_ms.load(Ordering::Relaxed)) >= idle_ms;
        if idle && open.as_ref().is_some_and(|f| Arc::strong_count(f) == 1) {
            *open = None;
            return true;
        }
        false
    }

    #[cfg(test)]
    pub fn is_open(&self) -> bool {
        self.open.lock().is_some()
    }
}

/// A segment as the partition sees it. `size` is the committed length: every byte below it is
/// whole, validated batches, and readers never look past it.
pub(super) struct Segment {
    pub base_offset: i64,
    pub path: PathBuf,
    pub file: Arc<SegmentFile>,
    pub size: u64,
    pub next_offset: i64,
    /// The batch with the largest max timestamp (the first one on ties).
    pub max_batch: Option<BatchRef>,
    /// The max timestamp of the first batch: segment.ms counts from it (Kafka's
    /// `rollingBasedTimestamp`). None while empty.
    pub first_batch_timestamp: Option<i64>,
    /// Wall-clock time (ms) this segment was created or opened: segment.ms counts from it
    /// when the first batch has no timestamp (-1), as Kafka does.
    pub created_ms: i64,
    index: Vec<IndexEntry>,
    bytes_since_index: u64,
}

impl Segment {
    pub fn file_name(base_offset: i64) -> String {
        format!("{base_offset:020}{LOG_SUFFIX}")
    }

    /// The base offset named by a segment file name, if it is one.
    pub fn parse_file_name(name: &str) -> Option<i64> {
        let digits = name.strip_suffix(LOG_SUFFIX)?;
        if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok()
    }

    /// Create (or empty) the segment file for `base_offset` in `dir`.
    pub fn create(dir: &Path, base_offset: i64) -> io::Result<Segment> {
        let path = dir.join(Self::file_name(base_offset));
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path)?;
        Ok(Segment::empty(base_offset, path, file))
    }

    /// An empty segment over `file`, named `path` (the file may still be elsewhere: the log
    /// cleaner builds a segment in a temporary file and publishes it once renamed to `path`).
    pub fn empty(base_offset: i64, path: PathBuf, file: File) -> Segment {
        Segment {
            base_offset,
            file: Arc::new(SegmentFile::new(path.clone(), file)),
            path,
            size: 0,
            next_offset: base_offset,
            max_batch: None,
            first_batch_timestamp: None,
            created_ms: now_ms(),
            index: Vec::new(),
            bytes_since_index: 0,
        }
    }

    /// Whether the first batch is more than `segment_ms` older than `max_timestamp` (the newest
    /// timestamp of the batches about to be appended), or, for a first batch without a
    /// timestamp, the segment was created more than `segment_ms` before `now_ms`: time to roll
    /// (Kafka's `LogSegment.shouldRoll`, without jitter). Never for an empty segment.
    pub fn aged(&self, max_timestamp: i64, now_ms: i64, segment_ms: i64) -> bool {
        match self.first_batch_timestamp {
            None => false,
            Some(first) if first >= 0 => max_timestamp.saturating_sub(first) > segment_ms,
            Some(_) => now_ms.saturating_sub(self.created_ms) > segment_ms,
        }
    }

    /// The largest batch max timestamp in the segment, i64::MIN when empty.
    pub fn max_timestamp(&self) -> i64 {
        self.max_batch.map_or(i64::MIN, |b| b.max_timestamp)
    }

    /// Record a batch just written at the end of the segment (`header` carries its assigned base
    /// offset). Adds an index entry for the first batch and then every `index_interval` bytes.
    pub fn note_batch(&mut self, header: &BatchHeader, index_interval: u32) {
        let size = header.size() as u64;
        if self.size == 0 {
            self.first_batch_timestamp = Some(header.max_timestamp);
        }
        if self.index.is_empty() || self.bytes_since_index >= u64::from(index_interval) {
            self.index.push(IndexEntry {
                offset: header.base_offset,
                position: self.size,
                max_timestamp_before: self.max_timestamp(),
            });
            self.bytes_since_index = 0;
        }
        if self.max_batch.is_none_or(|b| header.max_timestamp > b.max_timestamp) {
            self.max_batch = Some(BatchRef {
                position: self.size,
                size,
                last_offset: header.last_offset(),
                max_timestamp: header.max_timestamp,
                compressed: header.is_compressed(),
            });
        }
        self.bytes_since_index += size;
        self.size += size;
        self.next_offset = header.next_offset();
    }

    /// Where to start looking for the batch that holds `offset`: the last indexed batch whose
    /// base offset is at or below it.
    pub fn position_for_offset(&self, offset: i64) -> u64 {
        let i = self.index.partition_point(|e| e.offset <= offset);
        i.checked_sub(1).map_or(0, |i| self.index[i].position)
    }

    /// Where to start looking for the first batch whose max timestamp is at or above `ts`: no
    /// batch before the returned position qualifies.
    pub fn position_for_timestamp(&self, ts: i64) -> u64 {
        let i = self.index.partition_point(|e| e.max_timestamp_before < ts);
        i.checked_sub(1).map_or(0, |i| self.index[i].position)
    }

    /// Number of index entries (for tests and diagnostics).
    #[cfg(test)]
    pub fn index_len(&self) -> usize {
        self.index.len()
    }
}

/// Walk the batch headers of `file` in `[start, end)` and return the first one for which
/// `wanted` holds, with its position. `end` must be a batch boundary (a committed length).
pub(super) fn find_batch(
    file: &File,
    start: u64,
    end: u64,
    mut wanted: impl FnMut(&BatchHeader) -> bool,
) -> io::Result<Option<(u64, BatchHeader)>> {
    let mut chunk = vec![0u8; WALK_CHUNK];
    let mut pos = start;
    while pos < end {
        let n = usize::try_from(end - pos).map_or(WALK_CHUNK, |left| left.min(WALK_CHUNK));
        if n < HEADER_LEN {
            return Err(on_disk_corruption(pos, "a partial batch header"));
        }
        file.read_exact_at(&mut chunk[..n], pos)?;
        let mut at = 0;
        while at + HEADER_LEN <= n {
            let header = BatchHeader::parse(&chunk[at..n])
                .map_err(|e| on_disk_corruption(pos + at as u64, &e.to_string()))?;
            if wanted(&header) {
                return Ok(Some((pos + at as u64, header)));
            }
            at += header.size();
        }
        pos += at as u64;
    }
    Ok(None)
}

/// Milliseconds since the epoch, by the wall clock.
pub(super) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The whole batches of `file` in `[start, end)`, in order, read in large chunks (the log
/// cleaner's sequential pass over a segment). `end` must be a batch boundary (a committed
/// length). Yields (position, batch bytes).
pub(super) struct Batches<'a> {
    file: &'a File,
    end: u64,
    /// File position of `buf[0]`.
    buf_start: u64,
    buf: Vec<u8>,
    /// Where the next batch starts in `buf`.
    at: usize,
}

impl<'a> Batches<'a> {
    pub fn new(file: &'a File, start: u64, end: u64) -> Batches<'a> {
        Batches { file, end, buf_start: start, buf: Vec::new(), at: 0 }
    }

    /// Have at least `n` bytes from `at` in `buf` (or fail: the file is shorter than `end`).
    fn fill(&mut self, n: usize) -> io::Result<()> {
        if self.buf.len() - self.at >= n {
            return Ok(());
        }
        self.buf.drain(..self.at);
        self.buf_start += self.at as u64;
        self.at = 0;
        let have = self.buf.len();
        let left = usize::try_from(self.end - self.buf_start).unwrap_or(usize::MAX);
        let want = n.max(SCAN_BUFFER * 16).min(left);
        if want < n {
            return Err(on_disk_corruption(self.buf_start, "a batch runs past the end of the segment"));
        }
        self.buf.resize(want, 0);
        self.file.read_exact_at(&mut self.buf[have..], self.buf_start + have as u64)
    }

    fn next_batch(&mut self) -> io::Result<(u64, Vec<u8>)> {
        let position = self.buf_start + self.at as u64;
        self.fill(HEADER_LEN)?;
        let header = BatchHeader::parse(&self.buf[self.at..])
            .map_err(|e| on_disk_corruption(position, &e.to_string()))?;
        let size = header.size();
        self.fill(size)?;
        let bytes = self.buf[self.at..self.at + size].to_vec();
        self.at += size;
        Ok((position, bytes))
    }
}

impl Iterator for Batches<'_> {
    type Item = io::Result<(u64, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.buf_start + self.at as u64 >= self.end {
            return None;
        }
        let next = self.next_batch();
        if next.is_err() {
            // Stop after an error.
            self.end = 0;
        }
        Some(next)
    }
}

/// Bytes below a committed length that do not parse: the file changed under us.
pub(super) fn on_disk_corruption(position: u64, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("stored log is corrupt at position {position}: {what}"),
    )
}

/// What the recovery scan found.
pub(super) struct Recovered {
    pub segment: Segment,
    /// Bytes cut off the end of the file (a torn or corrupt tail), with the reason.
    pub truncated: Option<(u64, String)>,
}

/// Open an existing segment and scan it: every header is checked (magic, length within the
/// file, record counts, offsets rising from `base_offset`) and, with `verify_crc`, every
/// CRC. The file is truncated after the last good batch. The kept batches from `replay_from`
/// on are also replayed, in order, into `producers` (the state of the log before them): their
/// headers, and for a transaction marker the type its record gives.
pub(super) fn recover(
    path: &Path,
    base_offset: i64,
    verify_crc: bool,
    index_interval: u32,
    replay_from: i64,
    producers: &mut ProducerStateTable,
) -> io::Result<Recovered> {
    let file = OpenOptions::new().read(true).write(true).open(path)?;
    let len = file.metadata()?.len();
    let mut segment = Segment::empty(base_offset, path.to_path_buf(), file);
    let file = segment.file.get()?;
    let problem = scan(&file, len, base_offset, verify_crc, |header, control| {
        segment.note_batch(header, index_interval);
        match control {
            _ if header.base_offset < replay_from => {}
            Some(control) => producers.replay_marker(header, control),
            None => producers.replay(header),
        }
    })
    .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    let mut truncated = None;
    if let Some(reason) = problem {
        let good = segment.size;
        file.set_len(good)?;
        truncated = Some((len - good, reason));
    }
    Ok(Recovered { segment, truncated })
}

/// Scan batches from the start of `file` (of length `len`), calling `found` for each good one
/// in order, with the control type of a transaction marker (whose record is read for it).
/// Returns why the scan stopped early, or None if it reached the end cleanly. A first batch
/// below `base_offset` is an error, not a tail to cut: the file does not belong under its name,
/// and nothing is thrown away.
fn scan(
    file: &File,
    len: u64,
    base_offset: i64,
    verify_crc: bool,
    mut found: impl FnMut(&BatchHeader, Option<ControlType>),
) -> io::Result<Option<String>> {
    let mut reader = BufReader::with_capacity(SCAN_BUFFER, file);
    let mut body = if verify_crc { vec![0u8; SCAN_BUFFER] } else { Vec::new() };
    let mut header_bytes = [0u8; HEADER_LEN];
    let mut pos = 0u64;
    let mut expected = base_offset;
    loop {
        let left = len - pos;
        if left == 0 {
            return Ok(None);
        }
        if left < HEADER_LEN as u64 {
            return Ok(Some(format!("{left} bytes at the end are too short for a batch header")));
        }
        reader.read_exact(&mut header_bytes)?;
        let header = match BatchHeader::parse(&header_bytes) {
            Ok(h) => h,
            Err(e) => return Ok(Some(e.to_string())),
        };
        let size = header.size() as u64;
        if size > left {
            return Ok(Some(format!("a batch of {size} bytes with only {left} bytes left")));
        }
        // Stored batches may span more offsets than they hold records (see check_span).
        if let Err(e) = header.check_span() {
            return Ok(Some(e.to_string()));
        }
        // Offsets rise from batch to batch; gaps are where the log cleaner removed batches
        // (offsets are never renumbered), so a segment it wrote may also start above its base.
        if header.base_offset < expected {
            if pos == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("the segment's first batch has offset {}, below {expected}", header.base_offset),
                ));
            }
            return Ok(Some(format!(
                "batch at offset {} where {expected} or later was expected",
                header.base_offset
            )));
        }
        let rest = size - HEADER_LEN as u64;
        let mut control = None;
        if header.is_control() && size <= MAX_CONTROL_BATCH {
            // A transaction marker: COMMIT or ABORT is in its record.
            let mut whole = header_bytes.to_vec();
            whole.resize(HEADER_LEN + rest as usize, 0);
            reader.read_exact(&mut whole[HEADER_LEN..])?;
            if verify_crc && crc32c::crc32c(&whole[CRC_START..]) != header.crc {
                return Ok(Some(format!("CRC mismatch in the batch at offset {}", header.base_offset)));
            }
            control = batch::control_type(&whole);
        } else if verify_crc {
            let mut crc = crc32c::crc32c(&header_bytes[CRC_START..]);
            let mut remaining = rest;
            while remaining > 0 {
                let n = usize::try_from(remaining).map_or(body.len(), |r| r.min(body.len()));
                reader.read_exact(&mut body[..n])?;
                crc = crc32c::crc32c_append(crc, &body[..n]);
                remaining -= n as u64;
            }
            if crc != header.crc {
                return Ok(Some(format!("CRC mismatch in the batch at offset {}", header.base_offset)));
            }
        } else {
            let skip =
                i64::try_from(rest).map_err(|_| on_disk_corruption(pos, "a batch too large to skip"))?;
            reader.seek_relative(skip)?;
        }
        found(&header, control);
        expected = header.next_offset();
        pos += size;
    }
}
