//! The on-disk layout of topics: `<data_dir>/topics/<tenant>/<namespace>/<topic>/topic.json`
//! next to one directory per partition, and `<data_dir>/deleted/` for topics being removed.

use crate::storage::TopicName;
use crate::tenant::names::{validate_path_component, validate_topic_name};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

const TOPIC_FILE: &str = "topic.json";
const TOPIC_FILE_TMP: &str = "topic.json.tmp";

/// What `topic.json` holds. Written last at creation (atomically, by rename), so a topic
/// directory without it is the leftover of a creation that did not finish.
#[derive(Serialize, Deserialize, Debug)]
pub(super) struct TopicFile {
    pub id: String,
    pub partitions: i32,
    /// The topic's config overrides (Kafka names); everything else follows the defaults.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
}

pub(super) struct Layout {
    topics: PathBuf,
    trash: PathBuf,
}

impl Layout {
    /// Create the directories under `data_dir` and empty the trash of an earlier run.
    pub fn open(data_dir: &Path) -> io::Result<Layout> {
        let layout = Layout { topics: data_dir.join("topics"), trash: data_dir.join("deleted") };
        fs::create_dir_all(&layout.topics)?;
        fs::create_dir_all(&layout.trash)?;
        // Their names, if just created (a topic's files are no use if `topics/` is lost).
        if let Err(e) = sync_dir(data_dir) {
            tracing::warn!(dir = %data_dir.display(), "cannot sync the data directory: {e}");
        }
        for entry in fs::read_dir(&layout.trash)? {
            let path = entry?.path();
            if let Err(e) = fs::remove_dir_all(&path) {
                tracing::warn!(path = %path.display(), "cannot remove a deleted topic's files: {e}");
            }
        }
        Ok(layout)
    }

    /// The directory every topic lives under.
    pub fn topics_dir(&self) -> &Path {
        &self.topics
    }

    pub fn topic_dir(&self, name: &TopicName) -> PathBuf {
        self.topics.join(&name.tenant).join(&name.namespace).join(&name.topic)
    }

    /// Every topic directory, as (name, directory). Directories whose names are not valid
    /// tenant, namespace or topic names are skipped with a warning.
    pub fn topic_dirs(&self) -> io::Result<Vec<(TopicName, PathBuf)>> {
        let mut found = Vec::new();
        for (tenant, tenant_dir) in subdirs(&self.topics)? {
            if validate_path_component("tenant", &tenant).is_err() {
                continue;
            }
            if let Err(e) = crate::tenant::TenantId::new(&tenant) {
                // Kept (nothing is lost), but no listener can serve it: tenants written before
                // the one tenant rule may break it. Rename the directory to a valid tenant.
                tracing::warn!(dir = %tenant_dir.display(), "this tenant's topics cannot be served: {e}");
            }
            for (namespace, ns_dir) in subdirs(&tenant_dir)? {
                if validate_path_component("namespace", &namespace).is_err() {
                    continue;
                }
                for (topic, dir) in subdirs(&ns_dir)? {
                    if let Err(e) = validate_topic_name(&topic) {
                        tracing::warn!(dir = %dir.display(), "skipping a directory that is not a topic: {e}");
                        continue;
                    }
                    found.push((
                        TopicName { tenant: tenant.clone(), namespace: namespace.clone(), topic },
                        dir,
                    ));
                }
            }
        }
        Ok(found)
    }

    /// Move a topic directory out of the tree (atomically), then remove it.
    pub fn remove_topic_dir(&self, dir: &Path) -> io::Result<()> {
        let trash = self.trash.join(uuid::Uuid::new_v4().to_string());
        fs::rename(dir, &trash)?;
        // The topic is gone from here on; a failed sync only risks it coming back after a crash.
        if let Some(parent) = dir.parent()
            && let Err(e) = sync_dir(parent)
        {
            tracing::warn!(dir = %parent.display(), "cannot sync the directory of a deleted topic: {e}");
        }
        if let Err(e) = fs::remove_dir_all(&trash) {
            tracing::warn!(path = %trash.display(), "cannot remove a deleted topic's files (retried at the next start): {e}");
        }
        Ok(())
    }
}

/// Read `topic.json` in `dir`; None if there is none.
pub(super) fn read_topic_file(dir: &Path) -> io::Result<Option<TopicFile>> {
    let bytes = match fs::read(dir.join(TOPIC_FILE)) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", dir.join(TOPIC_FILE).display()))
    })
}

/// Write `topic.json` in `dir` durably and atomically (temporary file, fsync, rename, fsync dir).
pub(super) fn write_topic_file(dir: &Path, topic: &TopicFile) -> io::Result<()> {
    let json = serde_json::to_vec_pretty(topic).map_err(io::Error::other)?;
    let tmp = dir.join(TOPIC_FILE_TMP);
    let mut file = File::create(&tmp)?;
    file.write_all(&json)?;
    file.sync_all()?;
    fs::rename(&tmp, dir.join(TOPIC_FILE))?;
    sync_dir(dir)
}

/// Make an empty directory for a new topic. A leftover of an unfinished creation (no
/// `topic.json`) is removed; a directory that holds a topic is never touched.
pub(super) fn prepare_topic_dir(dir: &Path) -> io::Result<()> {
    if dir.join(TOPIC_FILE).exists() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} already holds a topic that is not loaded", dir.display()),
        ));
    }
    if dir.exists() {
        tracing::warn!(dir = %dir.display(), "removing the leftover of an unfinished topic creation");
        fs::remove_dir_all(dir)?;
    }
    fs::create_dir_all(dir)?;
    // The topic's name in its namespace's directory, and the namespace's and tenant's names if
    // they are new too: an acknowledged record must not vanish with a directory entry.
    for ancestor in dir.ancestors().skip(1).take(3) {
        sync_dir(ancestor)?;
    }
    Ok(())
}

/// Make an empty directory for a new partition, removing the leftover of an unfinished
/// CreatePartitions (a partition directory beyond the count in `topic.json`).
pub(super) fn prepare_partition_dir(dir: &Path) -> io::Result<()> {
    if dir.exists() {
        tracing::warn!(dir = %dir.display(), "removing the leftover of an unfinished partition creation");
        fs::remove_dir_all(dir)?;
    }
    fs::create_dir_all(dir)
}

/// A partition's directory inside its topic's.
pub(super) fn partition_dir(topic_dir: &Path, partition: i32) -> PathBuf {
    topic_dir.join(partition.to_string())
}

pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The subdirectories of `dir` whose names are UTF-8, sorted.
fn subdirs(dir: &Path) -> io::Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if !entry.file_type()?.is_dir() {
            continue;
        }
        match entry.file_name().into_string() {
            Ok(name) => out.push((name, entry.path())),
            Err(name) => {
                tracing::warn!(dir = %dir.display(), "skipping a directory with a non-UTF-8 name: {name:?}")
            }
        }
    }
    out.sort();
    Ok(out)
}
