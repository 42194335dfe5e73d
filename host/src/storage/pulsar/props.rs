//! What the backend writes in the properties of each Pulsar message of a partition topic, and
//! how it reads them back. Every message the partition's writer sends carries the topic id (so
//! a re-created topic ignores the messages of the topic it replaced) and the writer's epoch (so
//! readers and recovery skip what a fenced writer sent after its successor started).
//!
//! | message | properties |
//! |---|---|
//! | Kafka batch (format `kafka`) | `guise.offset` = base offset, `guise.last` = last offset |
//! | one record (format `pulsar`) | `guise.offset` = the record's offset, `guise.batch` = the Kafka batch it came from |
//! | fence marker (empty payload) | `guise.fence` = next offset, `guise.start` = log start offset |
//! | probe (empty payload) | `guise.probe` = `1`: a no-op that a writer appends to learn where the topic ends |
//! | compaction's copy (a Kafka batch or one record) | as a batch or record above, and `guise.copy` = `1` |
//! | compaction's commit (empty payload) | `guise.compacted` = the offset up to which it rewrote, `guise.start` = log start offset |
//!
//! The last message of an append made from the partition's ingress topic, and a compaction's
//! commit, also carry `guise.ingress` = `ledger:entry:index`: the last ingress message in the
//! log so far (see `ingress`).
//!
//! A compaction of the partition (`cleanup.policy=compact`, see `compact`) appends the kept
//! batches of everything written so far as copies, in offset order, then the commit marker:
//! from the marker on, the copies are the partition up to `guise.compacted`, and every message
//! before the first copy is obsolete.
//!
//! `guise.batch` is `base last producer-id producer-epoch base-sequence codec index count
//! max-timestamp`: message `index` of the `count` records of the batch (an empty batch, which
//! only keeps a producer's sequence span, is one message with count 0). A tombstone record
//! (null value) is an empty payload with `guise.null` = `1`: the `pulsar` crate cannot set the
//! message metadata's `null_value`.

use std::fmt;

pub const TOPIC_ID: &str = "guise.topic-id";
pub const EPOCH: &str = "guise.epoch";
pub const OFFSET: &str = "guise.offset";
pub const LAST: &str = "guise.last";
pub const BATCH: &str = "guise.batch";
pub const FENCE: &str = "guise.fence";
pub const START: &str = "guise.start";
pub const NULL: &str = "guise.null";
pub const PROBE: &str = "guise.probe";
pub const COPY: &str = "guise.copy";
pub const COMPACTED: &str = "guise.compacted";
pub const INGRESS: &str = "guise.ingress";

/// The ingress mark a message carries, if any.
pub fn ingress_of<'a>(
    props: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Option<crate::storage::IngressMark> {
    props.into_iter().find(|(k, _)| *k == INGRESS).and_then(|(_, v)| v.parse().ok())
}

/// The largest last offset of a stored batch (the offset after it must fit in an i64): a
/// message claiming more is malformed, never a cause of overflow.
pub const MAX_LAST: i64 = i64::MAX - 1;

/// Whether a property is one of ours (not a Kafka record header).
pub fn is_ours(key: &str) -> bool {
    key.starts_with("guise.")
}

/// The Kafka batch a record message (format `pulsar`) belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchInfo {
    pub base: i64,
    pub last: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub codec: u8,
    pub index: u32,
    pub count: u32,
    pub max_timestamp: i64,
}

impl BatchInfo {
    /// Messages the batch takes: one per record, or one for an empty batch.
    pub fn messages(&self) -> u32 {
        self.count.max(1)
    }
}

impl fmt::Display for BatchInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} {} {} {} {} {} {}",
            self.base,
            self.last,
            self.producer_id,
            self.producer_epoch,
            self.base_sequence,
            self.codec,
            self.index,
            self.count,
            self.max_timestamp
        )
    }
}

impl std::str::FromStr for BatchInfo {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        let mut it = s.split(' ');
        let mut next = || it.next().ok_or(());
        let info = BatchInfo {
            base: next()?.parse().map_err(drop)?,
            last: next()?.parse().map_err(drop)?,
            producer_id: next()?.parse().map_err(drop)?,
            producer_epoch: next()?.parse().map_err(drop)?,
            base_sequence: next()?.parse().map_err(drop)?,
            codec: next()?.parse().map_err(drop)?,
            index: next()?.parse().map_err(drop)?,
            count: next()?.parse().map_err(drop)?,
            max_timestamp: next()?.parse().map_err(drop)?,
        };
        let sane =
            info.base >= 0 && (info.base..=MAX_LAST).contains(&info.last) && info.index < info.messages();
        if next().is_ok() || !sane {
            return Err(());
        }
        Ok(info)
    }
}

/// What one message of a partition topic is, as far as the backend is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A whole Kafka batch spanning `base..=last`.
    Kafka { base: i64, last: i64 },
    /// One record at `offset` of a Kafka batch.
    Record { offset: i64, batch: BatchInfo },
    /// A writer took over: it continues at `next`; the log starts at `start`.
    Fence { next: i64, start: i64 },
    /// Nothing: a writer marked the end of the topic (readers and recovery skip it).
    Probe,
    /// A compaction's commit: the copies since the previous non-copy message are the partition
    /// up to `upto` (the next offset, unchanged); the log starts at `start`.
    Compacted { upto: i64, start: i64 },
}

/// A message's properties, parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Props {
    pub topic_id: uuid::Uuid,
    pub epoch: u64,
    pub kind: Kind,
    /// A compaction's copy of a batch or record written before (only with `Kafka`/`Record`).
    pub copy: bool,
}

impl Props {
    /// The properties to send.
    pub fn encode(&self) -> Vec<(String, String)> {
        let mut out = vec![
            (TOPIC_ID.to_string(), self.topic_id.to_string()),
            (EPOCH.to_string(), self.epoch.to_string()),
        ];
        match self.kind {
            Kind::Kafka { base, last } => {
                out.push((OFFSET.into(), base.to_string()));
                out.push((LAST.into(), last.to_string()));
            }
            Kind::Record { offset, batch } => {
                out.push((OFFSET.into(), offset.to_string()));
                out.push((BATCH.into(), batch.to_string()));
            }
            Kind::Fence { next, start } => {
                out.push((FENCE.into(), next.to_string()));
                out.push((START.into(), start.to_string()));
            }
            Kind::Probe => out.push((PROBE.into(), "1".into())),
            Kind::Compacted { upto, start } => {
                out.push((COMPACTED.into(), upto.to_string()));
                out.push((START.into(), start.to_string()));
            }
        }
        if self.copy {
            out.push((COPY.into(), "1".into()));
        }
        out
    }

    /// Parse a message's properties; None for a message that is not one of ours or is
    /// malformed (it is skipped).
    pub fn parse<'a>(props: impl IntoIterator<Item = (&'a str, &'a str)>) -> Option<Props> {
        let (mut topic_id, mut epoch, mut offset, mut last, mut batch, mut fence, mut start) =
            (None, None, None, None, None, None, None);
        let (mut probe, mut copy, mut compacted) = (false, false, None);
        for (k, v) in props {
            match k {
                TOPIC_ID => topic_id = uuid::Uuid::parse_str(v).ok(),
                EPOCH => epoch = v.parse::<u64>().ok(),
                OFFSET => offset = v.parse::<i64>().ok(),
                LAST => last = v.parse::<i64>().ok(),
                BATCH => batch = v.parse::<BatchInfo>().ok(),
                FENCE => fence = v.parse::<i64>().ok(),
                START => start = v.parse::<i64>().ok(),
                PROBE => probe = v == "1",
                COPY => copy = v == "1",
                COMPACTED => compacted = v.parse::<i64>().ok(),
                _ => {}
            }
        }
        let kind = match (offset, last, batch, fence.or(compacted), probe) {
            (None, None, None, Some(upto), false) if compacted.is_some() => {
                if fence.is_some() || copy || !(0..=MAX_LAST).contains(&upto) {
                    return None;
                }
                Kind::Compacted { upto, start: start.filter(|s| (0..=upto).contains(s)).unwrap_or(0) }
            }
            (Some(base), Some(last), None, None, false) if base >= 0 && (base..=MAX_LAST).contains(&last) => {
                Kind::Kafka { base, last }
            }
            (Some(offset), None, Some(batch), None, false)
                if offset >= batch.base && offset <= batch.last =>
            {
                Kind::Record { offset, batch }
            }
            (None, None, None, Some(next), false) if (0..=MAX_LAST).contains(&next) => {
                Kind::Fence { next, start: start.filter(|s| (0..=next).contains(s)).unwrap_or(0) }
            }
            (None, None, None, None, true) => Kind::Probe,
            _ => return None,
        };
        if copy && !matches!(kind, Kind::Kafka { .. } | Kind::Record { .. }) {
            return None;
        }
        Some(Props { topic_id: topic_id?, epoch: epoch?, kind, copy })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(p: Props) {
        let encoded = p.encode();
        let parsed = Props::parse(encoded.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        assert_eq!(parsed, Some(p));
    }

    #[test]
    fn properties_round_trip() {
        let topic_id = uuid::Uuid::new_v4();
        round_trip(Props { topic_id, epoch: 3, kind: Kind::Kafka { base: 10, last: 14 }, copy: false });
        round_trip(Props { topic_id, epoch: 1, kind: Kind::Fence { next: 15, start: 4 }, copy: false });
        round_trip(Props { topic_id, epoch: 0, kind: Kind::Probe, copy: false });
        round_trip(Props { topic_id, epoch: 3, kind: Kind::Kafka { base: 10, last: 14 }, copy: true });
        round_trip(Props { topic_id, epoch: 3, kind: Kind::Compacted { upto: 15, start: 2 }, copy: false });
        let batch = BatchInfo {
            base: 20,
            last: 22,
            producer_id: 7,
            producer_epoch: 2,
            base_sequence: 40,
            codec: 4,
            index: 1,
            count: 3,
            max_timestamp: -5,
        };
        round_trip(Props { topic_id, epoch: 9, kind: Kind::Record { offset: 21, batch }, copy: false });
        let empty = BatchInfo { count: 0, index: 0, ..batch };
        round_trip(Props {
            topic_id,
            epoch: 9,
            kind: Kind::Record { offset: 20, batch: empty },
            copy: false,
        });
    }

    #[test]
    fn foreign_or_malformed_properties_are_not_ours() {
        let id = uuid::Uuid::new_v4().to_string();
        let parse = |p: &[(&'static str, &str)]| Props::parse(p.iter().copied());
        assert_eq!(parse(&[("a", "b")]), None, "a plain Pulsar message");
        assert_eq!(parse(&[(EPOCH, "1"), (OFFSET, "0"), (LAST, "0")]), None, "no topic id");
        assert_eq!(parse(&[(TOPIC_ID, "x"), (EPOCH, "1"), (OFFSET, "0"), (LAST, "0")]), None);
        assert_eq!(parse(&[(TOPIC_ID, &id), (EPOCH, "1"), (OFFSET, "5"), (LAST, "4")]), None);
        assert_eq!(parse(&[(TOPIC_ID, &id), (EPOCH, "-1"), (OFFSET, "0"), (LAST, "0")]), None);
        assert_eq!(
            parse(&[(TOPIC_ID, &id), (EPOCH, "1"), (OFFSET, "0"), (BATCH, "0 0 -1 -1 -1 0 1 1 0")]),
            None
        );
        assert_eq!(
            parse(&[(TOPIC_ID, &id), (EPOCH, "1"), (OFFSET, "9"), (BATCH, "0 3 -1 -1 -1 0 0 4 0")]),
            None
        );
        assert_eq!(parse(&[(TOPIC_ID, &id), (EPOCH, "1"), (FENCE, "3"), (OFFSET, "3"), (LAST, "3")]), None);
        assert!(parse(&[(TOPIC_ID, &id), (EPOCH, "1"), (FENCE, "3")]).is_some());
        assert_eq!(parse(&[(TOPIC_ID, &id), (EPOCH, "1"), (FENCE, "3"), (PROBE, "1")]), None);
        assert_eq!(
            parse(&[(TOPIC_ID, &id), (EPOCH, "1"), (FENCE, "3"), (COPY, "1")]),
            None,
            "a copied fence"
        );
        assert_eq!(parse(&[(TOPIC_ID, &id), (EPOCH, "1"), (FENCE, "3"), (COMPACTED, "3")]), None);
        assert_eq!(parse(&[(TOPIC_ID, &id), (EPOCH, "1"), (COMPACTED, "3"), (COPY, "1")]), None);
        assert!(is_ours(EPOCH) && !is_ours("trace-id"));
        // Offsets whose successor does not fit in an i64.
        let max = i64::MAX.to_string();
        assert_eq!(parse(&[(TOPIC_ID, &id), (EPOCH, "1"), (OFFSET, "0"), (LAST, &max)]), None);
        assert_eq!(parse(&[(TOPIC_ID, &id), (EPOCH, "1"), (FENCE, &max)]), None);
        let batch = format!("0 {max} -1 -1 -1 0 0 1 0");
        assert_eq!(parse(&[(TOPIC_ID, &id), (EPOCH, "1"), (OFFSET, "0"), (BATCH, &batch)]), None);
        let near = (i64::MAX - 1).to_string();
        assert!(parse(&[(TOPIC_ID, &id), (EPOCH, "1"), (OFFSET, &near), (LAST, &near)]).is_some());
    }
}
