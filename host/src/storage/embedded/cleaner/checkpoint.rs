//! The log cleaner's checkpoint of one partition: the first offset not cleaned yet (Kafka's
//! `cleaner-offset-checkpoint`, kept here per partition, in `<partition>/cleaner-offset-checkpoint`).
//! Everything below it has been cleaned; the bytes from it on are the "dirty" part that
//! min.cleanable.dirty.ratio weighs and the next pass maps.
//!
//! Written atomically (temporary file, fsync, rename, directory fsync) after the segments of a
//! pass are swapped in. A crash before that only leaves the old checkpoint: the next pass finds
//! the part it already cleaned dirty again and cleans it once more, which changes nothing.

use super::swap::sync_dir;
use std::fs;
use std::io::{self, Write};
use std::path::Path;

const FILE: &str = "cleaner-offset-checkpoint";
const TMP: &str = "cleaner-offset-checkpoint.tmp";

/// The checkpoint in `dir`, if any. A leftover temporary file is removed; an unreadable
/// checkpoint counts as none (everything is dirty: the safe side) and is logged.
pub(in super::super) fn read(dir: &Path) -> io::Result<Option<i64>> {
    read_offset(dir, FILE, TMP, "cleaner checkpoint")
}

/// Persist `offset` as the checkpoint in `dir`, durably and atomically.
pub(in super::super) fn write(dir: &Path, offset: i64) -> io::Result<()> {
    write_offset(dir, FILE, TMP, offset)
}

/// One offset kept in the file `file` of `dir` (written through `tmp`), if any; an unreadable
/// one counts as none and is logged as `what`.
pub(in super::super) fn read_offset(
    dir: &Path,
    file: &str,
    tmp: &str,
    what: &str,
) -> io::Result<Option<i64>> {
    match fs::remove_file(dir.join(tmp)) {
        Ok(()) => {
            tracing::debug!(dir = %dir.display(), "removed the leftover of an interrupted checkpoint write")
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let text = match fs::read_to_string(dir.join(file)) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    match text.trim().parse::<i64>() {
        Ok(offset) if offset >= 0 => Ok(Some(offset)),
        _ => {
            tracing::warn!(dir = %dir.display(), "ignoring an unreadable {what} {text:?}");
            Ok(None)
        }
    }
}

/// Persist `offset` in the file `file` of `dir`, durably and atomically (through `tmp`).
pub(in super::super) fn write_offset(dir: &Path, file: &str, tmp: &str, offset: i64) -> io::Result<()> {
    let tmp = dir.join(tmp);
    let mut out = fs::File::create(&tmp)?;
    out.write_all(format!("{offset}\n").as_bytes())?;
    out.sync_all()?;
    fs::rename(&tmp, dir.join(file))?;
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
        write(dir.path(), 1234).unwrap();
        assert_eq!(read(dir.path()).unwrap(), Some(1234));
        fs::write(dir.path().join(TMP), "99").unwrap();
        assert_eq!(read(dir.path()).unwrap(), Some(1234));
        assert!(!dir.path().join(TMP).exists());
        fs::write(dir.path().join(FILE), "garbage").unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
    }
}
