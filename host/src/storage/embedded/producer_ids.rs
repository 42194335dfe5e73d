//! Producer ids that never repeat: handed out from blocks of [`BLOCK`] ids, each reserved
//! durably before its first id is used. `<data_dir>/producer-ids` holds the start of the next
//! unreserved block as a decimal number; reserving a block rewrites it atomically (temporary
//! file, fsync, rename, fsync of the directory). After a restart or a crash, ids continue at the
//! recorded number: what was left of the last block is skipped, never handed out twice.

use parking_lot::Mutex;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Ids reserved per write of the file.
pub(super) const BLOCK: i64 = 1000;
const FILE: &str = "producer-ids";
const TMP: &str = "producer-ids.tmp";

pub(super) struct ProducerIds {
    dir: PathBuf,
    state: Mutex<Block>,
}

/// Ids in `next..end` are reserved and not handed out yet.
struct Block {
    next: i64,
    end: i64,
}

impl ProducerIds {
    /// Read `<dir>/producer-ids` (absent: start at 0). A file that does not hold a number fails
    /// the open: starting over could hand out ids that are in use.
    pub fn open(dir: &Path) -> io::Result<ProducerIds> {
        let path = dir.join(FILE);
        let start = match fs::read_to_string(&path) {
            Ok(text) => text.trim().parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: not a producer id block start: {text:?}", path.display()),
                )
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
            Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
        };
        Ok(ProducerIds { dir: dir.to_path_buf(), state: Mutex::new(Block { next: start, end: start }) })
    }

    /// The next id, reserving a new block first when the current one is used up. A failed
    /// reservation hands out nothing and changes nothing.
    pub fn allocate(&self) -> io::Result<i64> {
        let mut block = self.state.lock();
        if block.next >= block.end {
            let end =
                block.end.checked_add(BLOCK).ok_or_else(|| io::Error::other("producer ids exhausted"))?;
            self.write(end)?;
            tracing::debug!(from = block.end, to = end, "reserved a block of producer ids");
            block.next = block.end;
            block.end = end;
        }
        let id = block.next;
        block.next += 1;
        Ok(id)
    }

    /// Every id ever handed out from this directory is below this.
    pub fn reserved_end(&self) -> i64 {
        self.state.lock().end
    }

    fn write(&self, next_block: i64) -> io::Result<()> {
        let tmp = self.dir.join(TMP);
        let path = self.dir.join(FILE);
        let written = (|| {
            let mut file = File::create(&tmp)?;
            file.write_all(format!("{next_block}\n").as_bytes())?;
            file.sync_all()?;
            fs::rename(&tmp, &path)?;
            File::open(&self.dir)?.sync_all()
        })();
        written.map_err(|e| {
            io::Error::new(e.kind(), format!("reserving producer ids in {}: {e}", path.display()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_never_repeat_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let ids = ProducerIds::open(dir.path()).unwrap();
        let first: Vec<i64> = (0..3).map(|_| ids.allocate().unwrap()).collect();
        assert_eq!(first, vec![0, 1, 2]);
        assert_eq!(ids.reserved_end(), BLOCK);
        assert_eq!(fs::read_to_string(dir.path().join(FILE)).unwrap().trim(), BLOCK.to_string());
        // A crash: the block was reserved, only three ids used. The rest is skipped.
        drop(ids);
        let ids = ProducerIds::open(dir.path()).unwrap();
        assert_eq!(ids.reserved_end(), BLOCK);
        assert_eq!(ids.allocate().unwrap(), BLOCK);
        // Using up a block reserves the next one.
        for expected in BLOCK + 1..2 * BLOCK {
            assert_eq!(ids.allocate().unwrap(), expected);
        }
        assert_eq!(ids.allocate().unwrap(), 2 * BLOCK);
        assert_eq!(ids.reserved_end(), 3 * BLOCK);
        drop(ids);
        assert_eq!(ProducerIds::open(dir.path()).unwrap().allocate().unwrap(), 3 * BLOCK);
    }

    #[test]
    fn a_leftover_temporary_file_is_ignored_and_a_bad_file_fails_the_open() {
        let dir = tempfile::tempdir().unwrap();
        ProducerIds::open(dir.path()).unwrap().allocate().unwrap();
        // A crash between writing the temporary file and the rename.
        fs::write(dir.path().join(TMP), "5000\n").unwrap();
        let ids = ProducerIds::open(dir.path()).unwrap();
        assert_eq!(ids.allocate().unwrap(), BLOCK);
        assert_eq!(fs::read_to_string(dir.path().join(FILE)).unwrap(), format!("{}\n", 2 * BLOCK));

        fs::write(dir.path().join(FILE), "garbage").unwrap();
        let err = ProducerIds::open(dir.path()).err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        fs::write(dir.path().join(FILE), "-5").unwrap();
        assert!(ProducerIds::open(dir.path()).is_err());
    }

    #[test]
    fn a_failed_reservation_hands_out_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("gone");
        fs::create_dir(&sub).unwrap();
        let ids = ProducerIds::open(&sub).unwrap();
        fs::remove_dir(&sub).unwrap();
        assert!(ids.allocate().is_err());
        assert_eq!(ids.reserved_end(), 0);
        fs::create_dir(&sub).unwrap();
        assert_eq!(ids.allocate().unwrap(), 0);
    }
}
