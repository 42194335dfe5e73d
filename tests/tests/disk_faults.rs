//! Disk faults under a running host, with a real client (rskafka, which reports each produce's
//! error code instead of retrying storage errors): a full disk (a small tmpfs) and a file system
//! that turns read-only (ext4 on a loop device, forced read-only by the kernel's error handling).
//! A produce that cannot be stored gets KAFKA_STORAGE_ERROR, everything acknowledged before can
//! still be fetched unchanged (also after a restart), other connections are served, and once the
//! disk is usable again produces continue at the next offset.
//!
//! These tests mount file systems, so they need root (CAP_SYS_ADMIN). When mounting fails they
//! fail, saying so — unless the process lacks CAP_SYS_ADMIN altogether (an unprivileged
//! container) or GUISE_SKIP_MOUNT_TESTS=1 is set: then they print SKIPPED and why, and pass.

use guise_tests::TestServer;
use rskafka::client::error::{Error as ClientError, ProtocolError};
use rskafka::client::partition::{Compression, OffsetAt, PartitionClient, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};
use rskafka::record::Record;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

const SKIP_VAR: &str = "GUISE_SKIP_MOUNT_TESTS";

/// Records of about 1 KiB, each different.
fn record(i: usize) -> Record {
    Record {
        key: Some(format!("key-{i}").into_bytes()),
        value: Some(format!("value-{i:08}-").repeat(70).into_bytes()),
        headers: BTreeMap::from([("n".to_string(), i.to_string().into_bytes())]),
        timestamp: chrono::DateTime::from_timestamp_millis(1_700_000_000_000 + i as i64).unwrap(),
    }
}

/// `batch` records from index `first`.
fn records(first: usize, batch: usize) -> Vec<Record> {
    (first..first + batch).map(record).collect()
}

fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program).args(args).output().map_err(|e| format!("cannot run {program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn display(path: &Path) -> &str {
    path.to_str().expect("UTF-8 temporary path")
}

/// A file system mounted on a fresh temporary directory; unmounted (and its image deleted) on
/// drop. Drop it after the server using it.
struct Mount {
    point: tempfile::TempDir,
    /// The ext4 image and the directory holding it; None for a tmpfs.
    image: Option<(PathBuf, tempfile::TempDir)>,
    mounted: bool,
}

impl Mount {
    fn tmpfs(size: &str) -> Result<Mount, String> {
        let point = tempfile::tempdir().map_err(|e| e.to_string())?;
        run("mount", &["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs", display(point.path())])?;
        Ok(Mount { point, image: None, mounted: true })
    }

    /// Bytes in use on the file system.
    fn used(&self) -> u64 {
        let out = run("df", &["-B1", "--output=used", display(self.path())]).unwrap();
        let used = out.lines().last().unwrap_or_default().trim();
        used.parse().unwrap_or_else(|e| panic!("df said {out:?}: {e}"))
    }

    /// Set a tmpfs's size (it cannot shrink below what it holds).
    fn resize(&self, bytes: u64) {
        run("mount", &["-o", &format!("remount,size={bytes}"), display(self.path())]).unwrap();
    }

    /// An ext4 file system of `mib` MiB on a loop device, mounted with errors=remount-ro.
    fn ext4(mib: u64) -> Result<Mount, String> {
        let image_dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let image = image_dir.path().join("fs.img");
        std::fs::File::create(&image).and_then(|f| f.set_len(mib << 20)).map_err(|e| e.to_string())?;
        run("mkfs.ext4", &["-q", "-O", "^has_journal", display(&image)])?;
        let point = tempfile::tempdir().map_err(|e| e.to_string())?;
        let mut mount = Mount { point, image: Some((image, image_dir)), mounted: false };
        mount.mount_image()?;
        // Checked now, so that a kernel without it reads as a setup failure.
        mount.error_trigger()?;
        Ok(mount)
    }

    fn mount_image(&mut self) -> Result<(), String> {
        let (image, _) = self.image.as_ref().expect("an ext4 mount");
        run(
            "mount",
            &["-t", "ext4", "-o", "loop,errors=remount-ro", display(image), display(self.point.path())],
        )?;
        self.mounted = true;
        Ok(())
    }

    fn path(&self) -> &Path {
        self.point.path()
    }

    /// ext4's sysfs file that raises a file system error.
    fn error_trigger(&self) -> Result<PathBuf, String> {
        let source = run("findmnt", &["-n", "-o", "SOURCE", "--mountpoint", display(self.path())])?;
        let device = source.rsplit('/').next().unwrap_or_default();
        let trigger = PathBuf::from(format!("/sys/fs/ext4/{device}/trigger_fs_error"));
        if trigger.exists() {
            Ok(trigger)
        } else {
            Err(format!("{} does not exist (mounted from {source:?})", trigger.display()))
        }
    }

    /// Make the file system read-only under whoever has files open on it, as the kernel does
    /// when ext4 meets an error with errors=remount-ro. (`mount -o remount,ro` is refused with
    /// EBUSY while the host holds its segment files open for writing.)
    fn fail_read_only(&self) {
        let trigger = self.error_trigger().unwrap();
        std::fs::write(&trigger, "1").unwrap_or_else(|e| panic!("writing {}: {e}", trigger.display()));
        let probe = self.path().join("probe");
        let err = std::fs::File::create(&probe).expect_err("the file system is still writable");
        assert_eq!(err.raw_os_error(), Some(30), "creating a file: {err}"); // EROFS
    }

    /// After `fail_read_only`: unmount, repair with e2fsck and mount again, writable. (The kernel
    /// keeps an ext4 that failed read-only until it is unmounted.)
    fn repair(&mut self) {
        self.unmount().unwrap();
        let (image, _) = self.image.as_ref().expect("an ext4 mount");
        let out = Command::new("e2fsck").args(["-f", "-y", display(image)]).output().expect("run e2fsck");
        // 0: clean, 1: errors corrected.
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "e2fsck: {}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        self.mount_image().unwrap();
    }

    fn unmount(&mut self) -> Result<(), String> {
        if self.mounted {
            run("umount", &[display(self.point.path())])?;
            self.mounted = false;
        }
        Ok(())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Err(e) = self.unmount() {
            eprintln!("{e}; unmounting lazily");
            let _ = run("umount", &["-l", display(self.point.path())]);
        }
    }
}

/// Whether this process may mount at all: CAP_SYS_ADMIN (bit 21) in its effective set.
fn may_mount() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("CapEff:").map(|v| v.trim().to_string())))
        .and_then(|v| u64::from_str_radix(&v, 16).ok())
        .is_some_and(|caps| caps & (1 << 21) != 0)
}

/// The mount, or None when it failed and the process may not mount or GUISE_SKIP_MOUNT_TESTS=1.
/// Panics with the reason when it failed otherwise.
fn mount_or_skip(test: &str, mount: impl FnOnce() -> Result<Mount, String>) -> Option<Mount> {
    match mount() {
        Ok(m) => Some(m),
        Err(e) if std::env::var(SKIP_VAR).as_deref() == Ok("1") || !may_mount() => {
            let why = if may_mount() { format!("{SKIP_VAR}=1 is set") } else { "no CAP_SYS_ADMIN".into() };
            // Straight to stderr: the test harness shows captured output only for failures.
            let _ = writeln!(std::io::stderr(), "SKIPPED {test}: mounting a file system failed ({e}); {why}");
            None
        }
        Err(e) => panic!(
            "{test}: mounting a file system failed: {e}\n\
             These tests need root (mount, loop devices); set {SKIP_VAR}=1 to skip them."
        ),
    }
}

async fn connect(server: &TestServer) -> Client {
    ClientBuilder::new(vec![server.bootstrap()]).build().await.unwrap()
}

async fn partition(client: &Client, topic: &str) -> PartitionClient {
    client.partition_client(topic, 0, UnknownTopicHandling::Error).await.unwrap()
}

fn is_storage_error(e: &ClientError) -> bool {
    matches!(e, ClientError::ServerError { protocol_error: ProtocolError::KafkaStorageError, .. })
}

/// Produce `batch`, expecting it at offset `next`.
async fn produce_at(pc: &PartitionClient, batch: Vec<Record>, next: usize) {
    let n = batch.len();
    let offsets = pc.produce(batch, Compression::NoCompression).await.unwrap();
    assert_eq!(offsets, (next as i64..(next + n) as i64).collect::<Vec<_>>());
}

async fn expect_storage_error(pc: &PartitionClient, batch: Vec<Record>) {
    match pc.produce(batch, Compression::NoCompression).await {
        Err(e) if is_storage_error(&e) => {}
        other => panic!("expected KAFKA_STORAGE_ERROR, got {other:?}"),
    }
}

/// Fetch the whole partition and check it is exactly `expected`, at offsets 0, 1, 2, ...
async fn assert_log_is(pc: &PartitionClient, expected: &[Record]) {
    let end = expected.len() as i64;
    assert_eq!(pc.get_offset(OffsetAt::Latest).await.unwrap(), end, "high watermark");
    let mut offset = 0;
    while offset < end {
        let (records, high_watermark) = pc.fetch_records(offset, 1..1_000_000, 1_000).await.unwrap();
        assert_eq!(high_watermark, end);
        assert!(!records.is_empty(), "nothing fetched at offset {offset} below the high watermark {end}");
        for r in records {
            assert_eq!(r.offset, offset, "offsets contiguous");
            assert!(r.record == expected[offset as usize], "record {offset} changed");
            offset += 1;
        }
    }
}

#[test]
fn a_full_disk_fails_produces_and_keeps_everything_acknowledged() {
    // Shrunk to size once the host has written what it writes at start (its module cache).
    let Some(mount) = mount_or_skip("disk full", || Mount::tmpfs("256m")) else { return };
    let data_dir = mount.path().join("data");
    // Small segments, so the disk may also fill while a new segment is started.
    let config = |c: &mut guise_host::config::Config| {
        c.data_dir = data_dir.clone();
        c.segment_bytes = 100 << 10;
        // The records' timestamps are from 2023: time retention would delete whole segments.
        c.retention_ms = -1;
    };
    const BATCH: usize = 10;

    let server = TestServer::start_with(config);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let acked = rt.block_on(async {
        let client = connect(&server).await;
        client.controller_client().unwrap().create_topic("full", 1, 1, 5000).await.unwrap();
        let pc = partition(&client, "full").await;

        // Room for about 1 MiB of records, then produce until the disk is full.
        mount.resize(mount.used() + (1 << 20));
        let mut acked: Vec<Record> = Vec::new();
        loop {
            assert!(acked.len() < 10_000, "the disk never filled");
            let batch = records(acked.len(), BATCH);
            match pc.produce(batch.clone(), Compression::NoCompression).await {
                Ok(offsets) => {
                    let next = acked.len() as i64;
                    assert_eq!(offsets, (next..next + BATCH as i64).collect::<Vec<_>>());
                    acked.extend(batch);
                }
                Err(e) if is_storage_error(&e) => break,
                Err(e) => panic!("produce after {} records: {e}", acked.len()),
            }
        }
        assert!(acked.len() > 100, "only {} records fitted", acked.len());
        // Still full: the same batch is refused again, and nothing of it was stored.
        expect_storage_error(&pc, records(acked.len(), BATCH)).await;
        assert_log_is(&pc, &acked).await;

        // Another connection is served: metadata, and the data.
        let other = connect(&server).await;
        assert!(other.list_topics().await.unwrap().iter().any(|t| t.name == "full"));
        assert_log_is(&partition(&other, "full").await, &acked).await;

        // Room again: produces continue at the next offset.
        mount.resize(mount.used() + (4 << 20));
        for _ in 0..3 {
            let batch = records(acked.len(), BATCH);
            produce_at(&pc, batch.clone(), acked.len()).await;
            acked.extend(batch);
        }
        assert_log_is(&pc, &acked).await;
        acked
    });
    drop(server);

    // And after a restart, the log is exactly what was acknowledged.
    let server = TestServer::start_with(config);
    rt.block_on(async {
        let pc = partition(&connect(&server).await, "full").await;
        assert_log_is(&pc, &acked).await;
        produce_at(&pc, records(acked.len(), 1), acked.len()).await;
    });
    drop(server);
    drop(mount);
}

#[test]
fn a_read_only_file_system_fails_produces_and_keeps_serving_fetches() {
    let Some(mut mount) = mount_or_skip("read-only file system", || Mount::ext4(128)) else { return };
    let data_dir = mount.path().join("data");
    // Acknowledged means on disk, whatever the file system does after failing.
    let config = |c: &mut guise_host::config::Config| {
        c.data_dir = data_dir.clone();
        c.fsync = guise_host::config::FsyncMode::EveryBatch;
    };
    const BATCH: usize = 10;

    let server = TestServer::start_with(config);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut acked: Vec<Record> = Vec::new();
    rt.block_on(async {
        let client = connect(&server).await;
        client.controller_client().unwrap().create_topic("ro", 1, 1, 5000).await.unwrap();
        let pc = partition(&client, "ro").await;
        for _ in 0..5 {
            let batch = records(acked.len(), BATCH);
            produce_at(&pc, batch.clone(), acked.len()).await;
            acked.extend(batch);
        }

        mount.fail_read_only();
        expect_storage_error(&pc, records(acked.len(), BATCH)).await;
        expect_storage_error(&pc, records(acked.len(), 1)).await;
        // Fetches of what is there keep working, on this connection and others.
        assert_log_is(&pc, &acked).await;
        let other = connect(&server).await;
        assert!(other.list_topics().await.unwrap().iter().any(|t| t.name == "ro"));
        let other_pc = partition(&other, "ro").await;
        assert_log_is(&other_pc, &acked).await;
        expect_storage_error(&other_pc, records(acked.len(), 1)).await;
    });
    // The log cannot be flushed at shutdown (logged); everything acknowledged was fsynced.
    drop(server);

    mount.repair();
    let server = TestServer::start_with(config);
    rt.block_on(async {
        let pc = partition(&connect(&server).await, "ro").await;
        assert_log_is(&pc, &acked).await;
        let batch = records(acked.len(), BATCH);
        produce_at(&pc, batch.clone(), acked.len()).await;
        acked.extend(batch);
        assert_log_is(&pc, &acked).await;
    });
    drop(server);
    drop(mount);
}
