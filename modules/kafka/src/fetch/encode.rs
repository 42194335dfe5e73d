//! The Fetch response, encoded by hand so that stored record batches are spliced in by the host
//! (as `Segment::Buffer`s) instead of being copied into guest memory.
//!
//! The guest writes the response header and body into a byte vector; at each records field it
//! writes the length prefix, closes the current run of guest bytes as a `Segment::Bytes`, and
//! pushes the host buffer. The host prepends the 4-byte size and writes the segments with
//! vectored I/O. Checked byte for byte against `kafka-protocol`'s `FetchResponse::encode`.
//!
//! Layout (v4–v12; flexible from v12: compact arrays and strings, empty tagged-field sections):
//!
//! ```text
//! header: correlation_id int32 [v12: tagged fields]
//! body:   throttle_time_ms int32, [v7+: error_code int16, session_id int32],
//!         responses [topic string, partitions [partition_index int32, error_code int16,
//!           high_watermark int64, last_stable_offset int64, [v5+: log_start_offset int64],
//!           aborted_transactions [producer_id int64, first_offset int64 [v12: tagged fields]]
//!           (empty, not null, at read_uncommitted), [v11+: preferred_read_replica int32],
//!           records bytes, [v12: tagged fields]] [v12: tagged fields]]
//!         [v12: tagged fields]
//! ```

use guise_guest_sdk::{AbortedTransaction, ErrorCode, Segment};
use kafka_protocol::messages::FetchResponse;
use kafka_protocol::protocol::HeaderVersion;

/// The first flexible version of Fetch.
const FLEXIBLE: i16 = 12;

/// One partition of the response.
#[derive(Debug)]
pub(crate) struct PartitionOut<B> {
    pub index: i32,
    pub error_code: ErrorCode,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
    /// The aborted transactions among the records (read_committed).
    pub aborted: Vec<AbortedTransaction>,
    /// Stored batches to splice in, with their length in bytes; `None` writes an empty (not
    /// null) records field, as Kafka's broker does.
    pub records: Option<(B, u32)>,
}

impl<B> PartitionOut<B> {
    /// A partition that failed with `code`: offsets -1 and no records, as Kafka answers.
    pub fn failed(index: i32, error_code: ErrorCode) -> Self {
        PartitionOut {
            index,
            error_code,
            high_watermark: -1,
            last_stable_offset: -1,
            log_start_offset: -1,
            aborted: Vec::new(),
            records: None,
        }
    }
}

/// One topic of the response.
#[derive(Debug)]
pub(crate) struct TopicOut<'a, B> {
    pub name: &'a str,
    pub partitions: Vec<PartitionOut<B>>,
}

/// Guest bytes so far, and the segments already closed.
struct Writer<B> {
    segments: Vec<Segment<B>>,
    cur: Vec<u8>,
    flexible: bool,
}

impl<B> Writer<B> {
    fn i16(&mut self, v: i16) {
        self.cur.extend_from_slice(&v.to_be_bytes());
    }
    fn i32(&mut self, v: i32) {
        self.cur.extend_from_slice(&v.to_be_bytes());
    }
    fn i64(&mut self, v: i64) {
        self.cur.extend_from_slice(&v.to_be_bytes());
    }
    fn uvarint(&mut self, mut v: u32) {
        while v >= 0x80 {
            self.cur.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.cur.push(v as u8);
    }
    /// An array's length: int32, or unsigned varint of length+1 when flexible.
    fn array_len(&mut self, n: usize) -> Result<(), String> {
        let n = u32::try_from(n).ok().filter(|&n| n < i32::MAX as u32).ok_or("array too long")?;
        if self.flexible {
            self.uvarint(n + 1)
        } else {
            self.i32(n as i32)
        }
        Ok(())
    }
    /// A non-null string: int16 length, or unsigned varint of length+1 when flexible.
    fn string(&mut self, s: &str) -> Result<(), String> {
        if self.flexible {
            let n = u32::try_from(s.len()).ok().filter(|&n| n < u32::MAX).ok_or("string too long")?;
            self.uvarint(n + 1);
        } else {
            let n = i16::try_from(s.len()).map_err(|_| format!("topic name of {} bytes", s.len()))?;
            self.i16(n);
        }
        self.cur.extend_from_slice(s.as_bytes());
        Ok(())
    }
    /// An empty tagged-field section (flexible versions only).
    fn no_tagged_fields(&mut self) {
        if self.flexible {
            self.cur.push(0);
        }
    }
    /// A records field: its length prefix, then the host buffer spliced in.
    fn records(&mut self, records: Option<(B, u32)>) -> Result<(), String> {
        let len = records.as_ref().map_or(0, |(_, len)| *len);
        let len = i32::try_from(len).map_err(|_| format!("records field of {len} bytes"))?;
        if self.flexible {
            self.uvarint(len as u32 + 1);
        } else {
            self.i32(len);
        }
        if let Some((buf, len)) = records
            && len > 0
        {
            let run = std::mem::replace(&mut self.cur, Vec::with_capacity(RUN_CAPACITY));
            self.segments.push(Segment::Bytes(run));
            self.segments.push(Segment::Buffer(buf));
        }
        Ok(())
    }
}

/// Room for the guest bytes between two spliced buffers: a partition's tail and the next one's
/// head (about 50 bytes each) plus a topic name, usually.
const RUN_CAPACITY: usize = 128;

/// Encode a Fetch response (header and body, without the size prefix) at `version` (4..=12).
/// `error_code` is the top-level error (v7+); the session id is always 0 (no fetch sessions).
pub(crate) fn encode<B>(
    version: i16,
    correlation_id: i32,
    throttle_ms: i32,
    error_code: ErrorCode,
    topics: Vec<TopicOut<'_, B>>,
) -> Result<Vec<Segment<B>>, String> {
    if !(4..=FLEXIBLE).contains(&version) {
        return Err(format!("cannot encode Fetch v{version}"));
    }
    let flexible = version >= FLEXIBLE;
    let spliced = topics.iter().flat_map(|t| &t.partitions).filter(|p| p.records.is_some()).count();
    let head: usize = 32
        + topics
            .iter()
            .map(|t| t.name.len() + 8 + t.partitions.iter().map(|p| 64 + 17 * p.aborted.len()).sum::<usize>())
            .sum::<usize>();
    let mut w = Writer {
        segments: Vec::with_capacity(2 * spliced + 1),
        cur: Vec::with_capacity(if spliced == 0 { head } else { RUN_CAPACITY.max(head / (spliced + 1)) }),
        flexible,
    };

    // Response header: v0 = correlation id; v1 adds an empty tagged-field section.
    w.i32(correlation_id);
    if FetchResponse::header_version(version) >= 1 {
        w.cur.push(0);
    }

    w.i32(throttle_ms);
    if version >= 7 {
        w.i16(error_code);
        w.i32(0); // session_id: no fetch sessions
    }
    w.array_len(topics.len())?;
    for topic in topics {
        w.string(topic.name)?;
        w.array_len(topic.partitions.len())?;
        for p in topic.partitions {
            w.i32(p.index);
            w.i16(p.error_code);
            w.i64(p.high_watermark);
            w.i64(p.last_stable_offset);
            if version >= 5 {
                w.i64(p.log_start_offset);
            }
            w.array_len(p.aborted.len())?; // aborted_transactions: empty, not null, when none
            for a in &p.aborted {
                w.i64(a.producer_id);
                w.i64(a.first_offset);
                w.no_tagged_fields();
            }
            if version >= 11 {
                w.i32(-1); // preferred_read_replica: none
            }
            w.records(p.records)?;
            w.no_tagged_fields();
        }
        w.no_tagged_fields();
    }
    w.no_tagged_fields();

    if !w.cur.is_empty() {
        w.segments.push(Segment::Bytes(w.cur));
    }
    Ok(w.segments)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{at_offset, record_batch};
    use bytes::{Bytes, BytesMut};
    use guise_guest_sdk::error;
    use guise_guest_sdk::stub::{StubBuffer, flatten};
    use kafka_protocol::messages::fetch_response::{self, FetchableTopicResponse, PartitionData};
    use kafka_protocol::messages::{ResponseHeader, TopicName};
    use kafka_protocol::protocol::{Encodable, StrBytes};

    /// (partition, error, high watermark, log start, records)
    type Part = (i32, i16, i64, i64, Option<Bytes>);

    /// The last stable offset the samples give a partition of high watermark `hw`: below it when
    /// the partition has some, to tell the two apart.
    fn lso(hw: i64) -> i64 {
        if hw > 1 { hw - 1 } else { hw }
    }

    /// The aborted transactions the samples give a partition: two for partition 3.
    fn aborted(index: i32) -> Vec<AbortedTransaction> {
        if index == 3 {
            vec![
                AbortedTransaction { producer_id: 7000, first_offset: 0 },
                AbortedTransaction { producer_id: 0x0102_0304_0506, first_offset: 1 },
            ]
        } else {
            Vec::new()
        }
    }

    fn sample() -> Vec<(&'static str, Vec<Part>)> {
        let one = Bytes::from(at_offset(&record_batch(&[b"hello", b"world"], &[1_000, 1_001]), 7));
        let mut two = at_offset(&record_batch(&[b"x"], &[5]), 0);
        two.extend(at_offset(&record_batch(&[&[0xAB; 300][..], b"y"], &[6, 7]), 1));
        vec![
            (
                "alpha",
                vec![
                    (0, 0, 9, 0, Some(one)),
                    (1, 0, 0, 0, None),                            // empty partition
                    (2, error::OFFSET_OUT_OF_RANGE, -1, -1, None), // error partition
                ],
            ),
            (
                "b",
                vec![
                    (3, 0, 3, 0, Some(Bytes::from(two))),
                    (9, error::UNKNOWN_TOPIC_OR_PARTITION, -1, -1, None),
                ],
            ),
            ("empty-topic", vec![]),
        ]
    }

    /// What `kafka-protocol` encodes for the same response (header + body).
    fn reference(version: i16, correlation_id: i32, code: i16, topics: &[(&str, Vec<Part>)]) -> Vec<u8> {
        let responses = topics
            .iter()
            .map(|(name, parts)| {
                FetchableTopicResponse::default()
                    .with_topic(TopicName(StrBytes::from_string(name.to_string())))
                    .with_partitions(
                        parts
                            .iter()
                            .map(|(index, error, hw, start, records)| {
                                PartitionData::default()
                                    .with_partition_index(*index)
                                    .with_error_code(*error)
                                    .with_high_watermark(*hw)
                                    .with_last_stable_offset(lso(*hw))
                                    .with_log_start_offset(*start)
                                    .with_aborted_transactions(Some(
                                        aborted(*index)
                                            .iter()
                                            .map(|a| {
                                                fetch_response::AbortedTransaction::default()
                                                    .with_producer_id(a.producer_id.into())
                                                    .with_first_offset(a.first_offset)
                                            })
                                            .collect(),
                                    ))
                                    .with_preferred_read_replica((-1).into())
                                    .with_records(Some(records.clone().unwrap_or_default()))
                            })
                            .collect(),
                    )
            })
            .collect();
        let mut body = FetchResponse::default().with_responses(responses);
        if version >= 7 {
            body = body.with_error_code(code);
        }
        let mut out = BytesMut::new();
        ResponseHeader::default()
            .with_correlation_id(correlation_id)
            .encode(&mut out, FetchResponse::header_version(version))
            .unwrap();
        body.encode(&mut out, version).unwrap();
        out.to_vec()
    }

    fn ours(
        version: i16,
        correlation_id: i32,
        code: i16,
        topics: &[(&str, Vec<Part>)],
    ) -> Vec<Segment<StubBuffer>> {
        let topics = topics
            .iter()
            .map(|(name, parts)| TopicOut {
                name,
                partitions: parts
                    .iter()
                    .map(|(index, error, hw, start, records)| PartitionOut {
                        index: *index,
                        error_code: *error,
                        high_watermark: *hw,
                        last_stable_offset: lso(*hw),
                        log_start_offset: *start,
                        aborted: aborted(*index),
                        records: records.clone().map(|b| (StubBuffer(b.clone()), b.len() as u32)),
                    })
                    .collect(),
            })
            .collect();
        encode(version, correlation_id, 0, code, topics).unwrap()
    }

    #[test]
    fn matches_kafka_protocol_byte_for_byte_at_every_version() {
        let topics = sample();
        for v in 4..=12 {
            let segments = ours(v, 0x0102_0304, 0, &topics);
            assert_eq!(flatten(&segments), reference(v, 0x0102_0304, 0, &topics), "v{v}");
            // The stored batches are spliced, never copied into guest bytes.
            let spliced: Vec<&Bytes> = segments
                .iter()
                .filter_map(|s| match s {
                    Segment::Buffer(b) => Some(&b.0),
                    Segment::Bytes(_) => None,
                })
                .collect();
            assert_eq!(spliced, vec![topics[0].1[0].4.as_ref().unwrap(), topics[1].1[0].4.as_ref().unwrap()]);
            let guest_bytes: usize = segments
                .iter()
                .map(|s| match s {
                    Segment::Bytes(b) => b.len(),
                    Segment::Buffer(_) => 0,
                })
                .sum();
            assert!(guest_bytes < 300, "v{v}: {guest_bytes} guest bytes");
            assert_eq!(segments.len(), 5, "v{v}: bytes, buffer, bytes, buffer, bytes");
        }
    }

    #[test]
    fn matches_with_top_level_error_and_no_topics() {
        for v in 4..=12 {
            let code = if v >= 7 { 70 } else { 0 };
            assert_eq!(flatten(&ours(v, -5, code, &[])), reference(v, -5, code, &[]), "v{v}");
            let topics = sample();
            assert_eq!(flatten(&ours(v, 1, code, &topics)), reference(v, 1, code, &topics), "v{v}");
        }
    }

    #[test]
    fn long_names_and_many_partitions_use_multi_byte_varints() {
        let name: String = "n".repeat(200);
        let parts: Vec<Part> = (0..130).map(|i| (i, 0, 0, 0, None)).collect();
        let big = Bytes::from(at_offset(&record_batch(&[&[7u8; 20_000][..]], &[1]), 0));
        let topics = vec![(name.as_str(), parts), ("z", vec![(0, 0, 1, 0, Some(big))])];
        for v in [4, 11, 12] {
            assert_eq!(flatten(&ours(v, 3, 0, &topics)), reference(v, 3, 0, &topics), "v{v}");
        }
    }

    #[test]
    fn empty_records_are_written_as_length_zero() {
        let topics = vec![("t", vec![(0, 0, 0, 0, None)])];
        let v11 = flatten(&ours(11, 0, 0, &topics));
        assert_eq!(&v11[v11.len() - 4..], &[0, 0, 0, 0]); // records: int32 0 (not -1 = null)
        let v12 = flatten(&ours(12, 0, 0, &topics));
        // records: uvarint 1 (length 0), then partition, topic and body tagged fields.
        assert_eq!(&v12[v12.len() - 4..], &[1, 0, 0, 0]);
    }

    #[test]
    fn refuses_versions_it_cannot_encode() {
        assert!(encode::<StubBuffer>(3, 0, 0, 0, vec![]).is_err());
        assert!(encode::<StubBuffer>(13, 0, 0, 0, vec![]).is_err());
    }
}
