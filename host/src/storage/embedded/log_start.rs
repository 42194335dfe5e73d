//! What a partition's producers' state holds of the log below its log start, kept in
//! `<partition>/log-start-producers` (JSON): written, atomically and durably, whenever retention
//! or DeleteRecords moves the log start, before any segment goes; read at open, which seeds the
//! state with it and replays the segments from that log start on only. So the producers' state
//! — sequences, open and aborted transactions — comes out of a restart as it was, though the
//! batches it came from are gone (Kafka keeps producer-state snapshots for this; see
//! `storage::producers::ProducerSeed`).

use super::cleaner::swap::sync_dir;
use crate::storage::producers::ProducerSeed;
use std::fs;
use std::io::{self, Write};
use std::path::Path;

const FILE: &str = "log-start-producers";
const TMP: &str = "log-start-producers.tmp";

#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub(super) struct BelowLogStart {
    /// The log start it was written for: the replay at open starts there.
    pub log_start: i64,
    pub producers: Vec<ProducerSeed>,
}

/// The file in `dir`, if any. A leftover temporary file is removed; an unreadable file counts
/// as none (the whole log is replayed, as before the first move) and is logged.
pub(super) fn read(dir: &Path) -> io::Result<Option<BelowLogStart>> {
    match fs::remove_file(dir.join(TMP)) {
        Ok(()) => {
            tracing::debug!(dir = %dir.display(), "removed the leftover of an interrupted write of {FILE}")
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let bytes = match fs::read(dir.join(FILE)) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    match serde_json::from_slice::<BelowLogStart>(&bytes) {
        Ok(below) if below.log_start >= 0 => Ok(Some(below)),
        Ok(_) => {
            tracing::warn!(dir = %dir.display(), "ignoring {FILE} with a negative log start");
            Ok(None)
        }
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "ignoring an unreadable {FILE}");
            Ok(None)
        }
    }
}

/// Persist what the producers' state holds below `log_start` in `dir`, durably and atomically.
pub(super) fn write(dir: &Path, log_start: i64, producers: Vec<ProducerSeed>) -> io::Result<()> {
    let json = serde_json::to_vec(&BelowLogStart { log_start, producers }).map_err(io::Error::other)?;
    let tmp = dir.join(TMP);
    let mut out = fs::File::create(&tmp)?;
    out.write_all(&json)?;
    out.sync_all()?;
    fs::rename(&tmp, dir.join(FILE))?;
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::producers::BatchMeta;

    #[test]
    fn round_trip_and_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
        let batch =
            BatchMeta { first_seq: 0, last_seq: 2, base_offset: 7, last_offset_delta: 2, max_timestamp: 5 };
        let seed = ProducerSeed { producer_id: 3, epoch: 1, batches: vec![batch], txn_first_offset: Some(7) };
        write(dir.path(), 10, vec![seed.clone()]).unwrap();
        let below = read(dir.path()).unwrap().unwrap();
        assert_eq!(below, BelowLogStart { log_start: 10, producers: vec![seed] });
        fs::write(dir.path().join(TMP), "{").unwrap();
        assert_eq!(read(dir.path()).unwrap(), Some(below));
        assert!(!dir.path().join(TMP).exists());
        fs::write(dir.path().join(FILE), "garbage").unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
    }
}
