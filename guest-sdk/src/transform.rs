//! Tenant message transforms: plain Rust types for the `transform` world.
//!
//! An author writes one function, called once per record of each produced batch:
//!
//! ```
//! use guise_guest_sdk::transform::{Output, Record, Result};
//!
//! fn upper(mut record: Record, out: &mut Output) -> Result<()> {
//!     record.value = record.value.map(|v| v.to_ascii_uppercase());
//!     out.emit(record);
//!     Ok(())
//! }
//! guise_guest_sdk::export_transform!(upper);
//!
//! let out = guise_guest_sdk::transform::test::run(upper, "t", vec![Record::new(None, Some(b"a".to_vec()))]);
//! assert_eq!(out.unwrap()[0].1.value.as_deref(), Some(&b"A"[..]));
//! ```
//!
//! [`export_transform!`](crate::export_transform) (or the shorthands
//! [`export_filter!`](crate::export_filter) and [`export_map!`](crate::export_map)) generates the
//! component's export on wasm32; natively [`test::run`] drives the same function in a unit test.
//! A record the function does not emit is dropped; an error fails the whole batch, which the host
//! then handles by the transform's error policy.

use std::fmt;

/// The most distinct topics, other than the input topic, one batch may emit to (as the host
/// enforces).
pub const MAX_OUTPUT_TOPICS: usize = 8;

/// A record header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub key: String,
    pub value: Option<Vec<u8>>,
}

impl Header {
    pub fn new(key: impl Into<String>, value: Option<Vec<u8>>) -> Self {
        Header { key: key.into(), value }
    }
}

/// One record of a produced batch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<Header>,
    /// Milliseconds since the epoch.
    pub timestamp: i64,
    /// The record's position in the input batch.
    pub offset_delta: i32,
}

impl Record {
    /// A record with this key and value, no headers, timestamp 0 and offset delta 0.
    pub fn new(key: Option<Vec<u8>>, value: Option<Vec<u8>>) -> Self {
        Record { key, value, ..Record::default() }
    }

    /// Add a header (builder style).
    pub fn with_header(mut self, key: impl Into<String>, value: Option<Vec<u8>>) -> Self {
        self.headers.push(Header::new(key, value));
        self
    }

    /// The first header named `key`, if any (its value may itself be null).
    pub fn header(&self, key: &str) -> Option<&Header> {
        self.headers.iter().find(|h| h.key == key)
    }

    /// The value as UTF-8, if present and valid.
    pub fn value_str(&self) -> Option<&str> {
        self.value.as_deref().and_then(|v| std::str::from_utf8(v).ok())
    }
}

/// Why a transform failed: the whole batch is then handled by the transform's error policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransformError(pub String);

impl TransformError {
    pub fn new(message: impl Into<String>) -> Self {
        TransformError(message.into())
    }
}

impl fmt::Display for TransformError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TransformError {}

impl From<String> for TransformError {
    fn from(s: String) -> Self {
        TransformError(s)
    }
}

impl From<&str> for TransformError {
    fn from(s: &str) -> Self {
        TransformError(s.to_string())
    }
}

/// The result of a transform function.
pub type Result<T = (), E = TransformError> = std::result::Result<T, E>;

/// Where a transform function puts its records.
#[derive(Debug)]
pub struct Output {
    topic: String,
    emitted: Vec<(Option<String>, Record)>,
}

impl Output {
    fn new(topic: &str) -> Self {
        Output { topic: topic.to_string(), emitted: Vec::new() }
    }

    /// The batch's input topic.
    pub fn input_topic(&self) -> &str {
        &self.topic
    }

    /// Append `record` to the input topic.
    pub fn emit(&mut self, record: Record) {
        self.emitted.push((None, record));
    }

    /// Append `record` to `topic`, another topic of the same tenant (the input topic itself is
    /// the same as [`Output::emit`]). At most [`MAX_OUTPUT_TOPICS`] distinct other topics per
    /// batch.
    pub fn emit_to(&mut self, topic: &str, record: Record) {
        let topic = (topic != self.topic).then(|| topic.to_string());
        self.emitted.push((topic, record));
    }
}

/// The wire form of a transform's result (see `transform-types` in `wit/guise.wit`): each
/// output as topic, key, value, timestamp and headers, lengths as big-endian i32 (-1: none).
#[doc(hidden)]
pub fn encode_outputs(outputs: &[(Option<String>, Record)]) -> Vec<u8> {
    fn put(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
        match bytes {
            Some(b) => {
                out.extend_from_slice(&(b.len() as i32).to_be_bytes());
                out.extend_from_slice(b);
            }
            None => out.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }
    let size: usize = outputs
        .iter()
        .map(|(t, r)| {
            let h: usize =
                r.headers.iter().map(|h| 8 + h.key.len() + h.value.as_ref().map_or(0, Vec::len)).sum();
            28 + t.as_ref().map_or(0, String::len)
                + r.key.as_ref().map_or(0, Vec::len)
                + r.value.as_ref().map_or(0, Vec::len)
                + h
        })
        .sum();
    let mut out = Vec::with_capacity(size);
    for (topic, r) in outputs {
        put(&mut out, topic.as_deref().map(str::as_bytes));
        put(&mut out, r.key.as_deref());
        put(&mut out, r.value.as_deref());
        out.extend_from_slice(&r.timestamp.to_be_bytes());
        out.extend_from_slice(&r.offset_delta.to_be_bytes());
        out.extend_from_slice(&(r.headers.len() as i32).to_be_bytes());
        for h in &r.headers {
            put(&mut out, Some(h.key.as_bytes()));
            put(&mut out, h.value.as_deref());
        }
    }
    out
}

/// Run `f` once per record of one batch, in order: the records to append, each with its topic
/// (`None`: the input topic). Shared by the wasm export and [`test::run`].
#[doc(hidden)]
pub fn run_batch<F>(f: F, topic: &str, records: Vec<Record>) -> Result<Vec<(Option<String>, Record)>>
where
    F: Fn(Record, &mut Output) -> Result<()>,
{
    let mut out = Output::new(topic);
    for record in records {
        let delta = record.offset_delta;
        f(record, &mut out).map_err(|e| TransformError(format!("record at offset delta {delta}: {e}")))?;
    }
    let mut topics: Vec<&str> = out.emitted.iter().filter_map(|(t, _)| t.as_deref()).collect();
    topics.sort_unstable();
    topics.dedup();
    if topics.len() > MAX_OUTPUT_TOPICS {
        return Err(TransformError(format!(
            "{} output topics (at most {MAX_OUTPUT_TOPICS} besides the input topic)",
            topics.len()
        )));
    }
    Ok(out.emitted)
}

/// A transform function from a filter predicate: keep the records for which `pred` is true.
pub fn filter(pred: fn(&Record) -> bool) -> impl Fn(Record, &mut Output) -> Result<()> {
    move |record, out| {
        if pred(&record) {
            out.emit(record);
        }
        Ok(())
    }
}

/// A transform function from a map: each record becomes exactly one record on the input topic.
pub fn map(f: fn(Record) -> Result<Record>) -> impl Fn(Record, &mut Output) -> Result<()> {
    move |record, out| {
        out.emit(f(record)?);
        Ok(())
    }
}

/// Log levels for [`log`].
pub use crate::Level;

/// Log through the host's `tracing` (natively: to stderr).
pub fn log(level: Level, message: &str) {
    #[cfg(all(target_arch = "wasm32", feature = "transform"))]
    crate::transform_wasm::log(level, message);
    #[cfg(not(all(target_arch = "wasm32", feature = "transform")))]
    eprintln!("[{level:?}] {message}");
}

/// The module's configuration value for `key` (the first entry with that key).
pub fn config(key: &str) -> Option<String> {
    config_entries(|entries| entries.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()))
}

/// Every configuration entry of the module.
pub fn config_all() -> Vec<(String, String)> {
    config_entries(|entries| entries.to_vec())
}

#[cfg(all(target_arch = "wasm32", feature = "transform"))]
fn config_entries<T>(f: impl FnOnce(&[(String, String)]) -> T) -> T {
    f(crate::transform_wasm::config())
}

#[cfg(not(all(target_arch = "wasm32", feature = "transform")))]
fn config_entries<T>(f: impl FnOnce(&[(String, String)]) -> T) -> T {
    native::CONFIG.with(|c| f(&c.borrow()))
}

#[cfg(not(all(target_arch = "wasm32", feature = "transform")))]
mod native {
    use std::cell::RefCell;

    thread_local! {
        /// The configuration [`super::test::run_with_config`] sets for the current thread.
        pub(super) static CONFIG: RefCell<Vec<(String, String)>> = const { RefCell::new(Vec::new()) };
    }
}

/// A native harness: drive a transform function as the host would, in a plain `cargo test`.
#[cfg(not(target_arch = "wasm32"))]
pub mod test {
    use super::{Output, Record, Result};

    /// Run `f` on one batch of `records` from `topic`, with no configuration: the records to
    /// append, each with its topic (`None`: the input topic), or the batch's error. Records get
    /// their offset deltas (0, 1, ...) here, as in a real batch.
    pub fn run<F>(f: F, topic: &str, records: Vec<Record>) -> Result<Vec<(Option<String>, Record)>>
    where
        F: Fn(Record, &mut Output) -> Result<()>,
    {
        run_with_config(f, topic, records, &[])
    }

    /// [`run`] with the module configuration `config` (as `transform::config` returns it).
    pub fn run_with_config<F>(
        f: F,
        topic: &str,
        mut records: Vec<Record>,
        config: &[(&str, &str)],
    ) -> Result<Vec<(Option<String>, Record)>>
    where
        F: Fn(Record, &mut Output) -> Result<()>,
    {
        for (i, r) in records.iter_mut().enumerate() {
            r.offset_delta = i as i32;
        }
        let config = config.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let previous = super::native::CONFIG.with(|c| c.replace(config));
        let result = super::run_batch(f, topic, records);
        super::native::CONFIG.with(|c| c.replace(previous));
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(key: &str, value: &str) -> Record {
        Record::new(Some(key.as_bytes().to_vec()), Some(value.as_bytes().to_vec()))
    }

    #[test]
    fn emits_in_order_with_topics() {
        let f = |r: Record, out: &mut Output| {
            if r.key.as_deref() == Some(b"a") {
                out.emit_to("other", r.clone());
            }
            out.emit(r);
            Ok(())
        };
        let out = test::run(f, "in", vec![rec("a", "1"), rec("b", "2")]).unwrap();
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].0.as_deref(), Some("other"));
        assert_eq!(out[1].0, None);
        assert_eq!(out[2].1.offset_delta, 1);
    }

    #[test]
    fn emit_to_the_input_topic_is_emit() {
        let f = |r: Record, out: &mut Output| {
            out.emit_to("in", r);
            Ok(())
        };
        let out = test::run(f, "in", vec![rec("a", "1")]).unwrap();
        assert_eq!(out[0].0, None);
    }

    #[test]
    fn an_error_fails_the_batch() {
        let f = |r: Record, out: &mut Output| {
            if r.key.as_deref() == Some(b"bad") {
                return Err("no".into());
            }
            out.emit(r);
            Ok(())
        };
        let err = test::run(f, "in", vec![rec("a", "1"), rec("bad", "2")]).unwrap_err();
        assert_eq!(err.to_string(), "record at offset delta 1: no");
    }

    #[test]
    fn at_most_eight_other_topics() {
        let f = |r: Record, out: &mut Output| {
            let v = r.value_str().unwrap().to_string();
            out.emit_to(&format!("t{v}"), r);
            Ok(())
        };
        let records = |n: usize| (0..n).map(|i| rec("k", &i.to_string())).collect::<Vec<_>>();
        assert!(test::run(f, "in", records(8)).is_ok());
        assert!(test::run(f, "in", records(9)).is_err());
    }

    #[test]
    fn filter_map_and_config() {
        fn keep(r: &Record) -> bool {
            r.header("h").is_some()
        }
        fn upper(mut r: Record) -> Result<Record> {
            let suffix = config("suffix").unwrap_or_default();
            r.value = r.value.map(|v| [v.to_ascii_uppercase(), suffix.into_bytes()].concat());
            Ok(r)
        }
        let out =
            test::run(filter(keep), "t", vec![rec("a", "1").with_header("h", None), rec("b", "2")]).unwrap();
        assert_eq!(out.len(), 1);
        let out = test::run_with_config(map(upper), "t", vec![rec("a", "x")], &[("suffix", "!")]).unwrap();
        assert_eq!(out[0].1.value_str(), Some("X!"));
        assert_eq!(config("suffix"), None, "configuration is restored after the run");
    }
}
