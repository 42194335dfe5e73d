//! Swapping cleaned segments in without ever losing a record to a crash, and finishing or
//! undoing at open what a crash interrupted (Kafka's `.cleaned` and `.swap` files).
//!
//! A clean of the consecutive segments `[b1, end)` (b1 the first one's base offset, `end` the
//! base offset of the segment after them) goes:
//!
//! 1. the cleaner writes the cleaned segment to `<b1>.log.cleaned` and fsyncs it (no lock held;
//!    the name is not a segment's, so nothing reads it);
//! 2. under the partition's writer lock, [`commit`]: rename it to `<b1>-<end>.swap`. This is
//!    the commit point: from here on the clean is finished, by the running host or at the next
//!    open;
//! 3. [`complete`]: fsync the directory (the swap file is durable before anything it replaces
//!    goes), delete every other segment file `<b>.log` with `b1 < b < end` and fsync the
//!    directory, then rename the swap file over `<b1>.log` and fsync the directory again.
//!
//! At open, [`recover`] removes every `.cleaned` file (a clean that did not commit: the old
//! segments are all still there) and redoes step 3 for every swap file (a committed clean: its
//! file is complete and fsynced, and whatever is left of the segments it replaces is
//! superseded). Step 3 is idempotent, so a crash during recovery is recovered the same way.
//!
//! Why the directory is synced between the deletions and the final rename: if the rename
//! reached the disk and a deletion did not, an old segment would come back next to the cleaned
//! one, which covers its offsets, with no swap file left to say that it is superseded.
//!
//! Readers holding a replaced segment's file keep reading it: unlink and rename-over only drop
//! names. Appends never touch these files (the active segment is never cleaned).

use super::super::segment::Segment;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// A segment being written by the cleaner: `<base>.log.cleaned`.
const CLEANED_SUFFIX: &str = ".log.cleaned";
/// A committed clean: `<base>-<end>.swap`.
const SWAP_SUFFIX: &str = ".swap";

/// The steps of a swap, for tests that stop one dead there (a simulated `kill -9`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SwapStep {
    /// The cleaned file is written and fsynced; not committed yet.
    Written,
    /// Renamed to its swap name, directory fsynced.
    Committed,
    /// This many of the replaced segments' other files deleted (1 for the first).
    Deleted(usize),
    /// The swap file renamed over the first replaced segment (directory not fsynced yet).
    Replaced,
    /// Every group swapped; the cleaner checkpoint not written yet.
    Swapped,
}

/// Where the cleaner writes the cleaned segment that will start at `base`.
pub(in super::super) fn cleaned_path(dir: &Path, base: i64) -> PathBuf {
    dir.join(format!("{base:020}{CLEANED_SUFFIX}"))
}

fn swap_path(dir: &Path, base: i64, end: i64) -> PathBuf {
    dir.join(format!("{base:020}-{end:020}{SWAP_SUFFIX}"))
}

/// (base, end) named by a swap file name.
fn parse_swap(name: &str) -> Option<(i64, i64)> {
    let (base, end) = name.strip_suffix(SWAP_SUFFIX)?.split_once('-')?;
    let digits = |s: &str| s.len() == 20 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(base) || !digits(end) {
        return None;
    }
    Some((base.parse().ok()?, end.parse().ok()?))
}

/// Step 2: rename the complete, fsynced `cleaned` file (to start at `base`, replacing the
/// segments up to `end`) to its swap name. Returns the swap file. Once this returns Ok, the
/// swap must be [`complete`]d (or left to [`recover`]), never undone.
pub(in super::super) fn commit(dir: &Path, cleaned: &Path, base: i64, end: i64) -> io::Result<PathBuf> {
    let swap = swap_path(dir, base, end);
    fs::rename(cleaned, &swap)?;
    Ok(swap)
}

/// Step 3: make the swap file's name durable, delete the segment files it replaces (base
/// offsets in `(base, end)`), then put it in place of `<base>.log`, each durably. `step` is
/// told after each move (tests stop there).
pub(in super::super) fn complete(
    dir: &Path,
    swap: &Path,
    base: i64,
    end: i64,
    mut step: impl FnMut(SwapStep) -> io::Result<()>,
) -> io::Result<()> {
    sync_dir(dir)?;
    step(SwapStep::Committed)?;
    let mut replaced = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if let Some(b) = entry.file_name().to_str().and_then(Segment::parse_file_name)
            && b > base
            && b < end
        {
            replaced.push((b, entry.path()));
        }
    }
    replaced.sort_unstable();
    for (n, (_, path)) in replaced.iter().enumerate() {
        match fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        step(SwapStep::Deleted(n + 1))?;
    }
    if !replaced.is_empty() {
        sync_dir(dir)?;
    }
    fs::rename(swap, dir.join(Segment::file_name(base)))?;
    step(SwapStep::Replaced)?;
    sync_dir(dir)
}

/// At open, before the segments are listed: remove what an uncommitted clean left, finish every
/// committed one.
pub(in super::super) fn recover(dir: &Path) -> io::Result<()> {
    let mut swaps = Vec::new();
    let mut removed = false;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else { continue };
        if name.ends_with(CLEANED_SUFFIX) {
            tracing::warn!(file = %entry.path().display(), "removing the output of a clean that a crash interrupted before it committed");
            fs::remove_file(entry.path())?;
            removed = true;
        } else if let Some((base, end)) = parse_swap(&name) {
            swaps.push((base, end, entry.path()));
        }
    }
    if removed {
        sync_dir(dir)?;
    }
    swaps.sort_unstable();
    for (base, end, path) in swaps {
        tracing::warn!(file = %path.display(), "finishing the swap of a cleaned segment that a crash interrupted");
        complete(dir, &path, base, end, |_| Ok(()))?;
    }
    Ok(())
}

pub(in super::super) fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swap_names_round_trip() {
        let dir = Path::new("/p");
        let swap = swap_path(dir, 12, 3400);
        let name = swap.file_name().unwrap().to_str().unwrap();
        assert_eq!(name, "00000000000000000012-00000000000000003400.swap");
        assert_eq!(parse_swap(name), Some((12, 3400)));
        assert_eq!(parse_swap("00000000000000000012.log"), None);
        assert_eq!(parse_swap("12-3400.swap"), None);
        let cleaned = cleaned_path(dir, 12);
        assert_eq!(cleaned.file_name().unwrap().to_str().unwrap(), "00000000000000000012.log.cleaned");
        assert_eq!(Segment::parse_file_name("00000000000000000012.log.cleaned"), None);
    }
}
