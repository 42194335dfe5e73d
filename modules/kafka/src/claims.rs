//! Array counts a request claims, checked against the bytes that carry them, before decoding.
//!
//! kafka-protocol's decoder (0.18) sizes every array with `Vec::with_capacity(count)` straight
//! from the wire, before decoding a single element. A few-byte request claiming 2^31-1 topics
//! would make it reserve `count × size_of::<element>()` — gigabytes — which fails the guest's
//! memory cap (a trap) or, natively, aborts the process. Every array element takes at least one
//! byte on the wire, so a count larger than the bytes left is impossible: [`check`] walks the
//! request body exactly as the decoder will, and rejects such a count before anything is
//! allocated. Decoding after a successful check allocates in proportion to the bytes received.
//!
//! The walk mirrors the generated decoders field for field (the `claims_match_the_decoder`
//! property test holds it to that). Where the decoder would fail anyway (a short buffer, a
//! negative length) the walk stops and lets the decoder report it.

/// Why the walk stopped early.
#[derive(Debug, PartialEq, Eq)]
pub enum Stop {
    /// The decoder fails here on its own (too few bytes, a negative length, an invalid tag).
    Malformed,
    /// An array claims more elements than the bytes left could hold.
    Impossible { count: u64, min_bytes: u64, remaining: usize },
}

pub(crate) type Step = Result<(), Stop>;

/// Check the request body of `api_key` at `version`: an error names an impossible array count.
/// Bodies the decoder rejects for other reasons, and APIs this module does not know, pass.
pub fn check(api_key: i16, version: i16, body: &[u8]) -> Result<(), String> {
    match walk(api_key, version, body) {
        Some(Err(Stop::Impossible { count, min_bytes, remaining })) => Err(format!(
            "malformed request (api key {api_key} v{version}): an array claims {count} elements of at \
             least {min_bytes} byte(s) with {remaining} bytes left"
        )),
        _ => Ok(()),
    }
}

/// Walk `body` as the decoder would: `Some(Ok(consumed))` when it decodes (structurally), `None`
/// for an API this module does not describe.
pub fn walk(api_key: i16, version: i16, body: &[u8]) -> Option<Result<usize, Stop>> {
    let (flexible_from, request) = crate::apis::walker(api_key)?;
    let mut w = Walk { buf: body, flexible: version >= flexible_from };
    Some(request(&mut w, version).map(|()| body.len() - w.buf.len()))
}

/// A cursor over the body; `flexible` selects compact lengths and tagged-field sections.
pub(crate) struct Walk<'a> {
    buf: &'a [u8],
    flexible: bool,
}

impl Walk<'_> {
    fn skip(&mut self, n: usize) -> Step {
        match self.buf.get(n..) {
            Some(rest) => {
                self.buf = rest;
                Ok(())
            }
            None => Err(Stop::Malformed),
        }
    }

    fn int16(&mut self) -> Result<i16, Stop> {
        let b = self.buf.get(..2).ok_or(Stop::Malformed)?;
        let v = i16::from_be_bytes([b[0], b[1]]);
        self.skip(2).map(|()| v)
    }

    fn int32(&mut self) -> Result<i32, Stop> {
        let b = self.buf.get(..4).ok_or(Stop::Malformed)?;
        let v = i32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        self.skip(4).map(|()| v)
    }

    fn i8(&mut self) -> Step {
        self.skip(1)
    }
    fn i16(&mut self) -> Step {
        self.skip(2)
    }
    fn i32(&mut self) -> Step {
        self.skip(4)
    }
    fn i64(&mut self) -> Step {
        self.skip(8)
    }
    fn uuid(&mut self) -> Step {
        self.skip(16)
    }
    fn bool(&mut self) -> Step {
        self.skip(1)
    }

    /// An unsigned varint, read exactly as kafka-protocol's `UnsignedVarInt` does (at most five
    /// bytes, excess bits dropped).
    fn uvarint(&mut self) -> Result<u32, Stop> {
        let mut value = 0u32;
        for i in 0..5 {
            let (&b, rest) = self.buf.split_first().ok_or(Stop::Malformed)?;
            self.buf = rest;
            value |= u32::from(b & 0x7f) << (i * 7);
            if b < 0x80 {
                break;
            }
        }
        Ok(value)
    }

    /// A (nullable) string: an int16 length, or a compact one.
    fn string(&mut self) -> Step {
        if self.flexible {
            match self.uvarint()? {
                0 => Ok(()),
                n => self.skip((n - 1) as usize),
            }
        } else {
            match self.int16()? {
                -1 => Ok(()),
                n if n >= 0 => self.skip(n as usize),
                _ => Err(Stop::Malformed),
            }
        }
    }

    /// (Nullable) bytes: an int32 length, or a compact one.
    fn bytes(&mut self) -> Step {
        if self.flexible {
            match self.uvarint()? {
                0 => Ok(()),
                n => self.skip((n - 1) as usize),
            }
        } else {
            match self.int32()? {
                -1 => Ok(()),
                n if n >= 0 => self.skip(n as usize),
                _ => Err(Stop::Malformed),
            }
        }
    }

    /// A (nullable) array of elements of at least `min_bytes` each: the count is checked against
    /// the bytes left before any element is walked.
    fn array(&mut self, min_bytes: u64, mut element: impl FnMut(&mut Self) -> Step) -> Step {
        let count = if self.flexible {
            match self.uvarint()? {
                0 => return Ok(()),
                n => u64::from(n - 1),
            }
        } else {
            match self.int32()? {
                -1 => return Ok(()),
                n if n >= 0 => n as u64,
                _ => return Err(Stop::Malformed),
            }
        };
        let remaining = self.buf.len();
        if count.saturating_mul(min_bytes) > remaining as u64 {
            return Err(Stop::Impossible { count, min_bytes, remaining });
        }
        for _ in 0..count {
            element(self)?;
        }
        Ok(())
    }

    /// The array element size floor of a string.
    fn min_string(&self) -> u64 {
        if self.flexible { 1 } else { 2 }
    }

    /// A tagged-field section (flexible versions only). `known` walks a tag the decoder reads
    /// itself (from the buffer, not from the tag's size) and returns `None` for the others,
    /// which the decoder skips by their size.
    fn tagged(&mut self, mut known: impl FnMut(&mut Self, u32) -> Option<Step>) -> Step {
        if !self.flexible {
            return Ok(());
        }
        let n = self.uvarint()?;
        for _ in 0..n {
            let tag = self.uvarint()?;
            let size = self.uvarint()?;
            match known(self, tag) {
                Some(step) => step?,
                None => self.skip(size as usize)?,
            }
        }
        Ok(())
    }

    /// A tagged-field section with no known tags.
    fn tags(&mut self) -> Step {
        self.tagged(|_, _| None)
    }
}

// One function per request, mirroring kafka-protocol 0.18's `Decodable` impls (`messages/*_request.rs`).

pub(crate) fn produce(w: &mut Walk<'_>, v: i16) -> Step {
    w.string()?; // transactional_id
    w.i16()?; // acks
    w.i32()?; // timeout_ms
    w.array(1, |w| {
        if v <= 12 {
            w.string()?; // name
        }
        if v >= 13 {
            w.uuid()?; // topic_id
        }
        w.array(1, |w| {
            w.i32()?; // index
            w.bytes()?; // records
            w.tags()
        })?;
        w.tags()
    })?;
    w.tags()
}

pub(crate) fn fetch(w: &mut Walk<'_>, v: i16) -> Step {
    if v <= 14 {
        w.i32()?; // replica_id
    }
    w.i32()?; // max_wait_ms
    w.i32()?; // min_bytes
    w.i32()?; // max_bytes
    w.i8()?; // isolation_level
    if v >= 7 {
        w.i32()?; // session_id
        w.i32()?; // session_epoch
    }
    w.array(1, |w| {
        if v <= 12 {
            w.string()?; // topic
        }
        if v >= 13 {
            w.uuid()?; // topic_id
        }
        w.array(1, |w| {
            w.i32()?; // partition
            if v >= 9 {
                w.i32()?; // current_leader_epoch
            }
            w.i64()?; // fetch_offset
            if v >= 12 {
                w.i32()?; // last_fetched_epoch
            }
            if v >= 5 {
                w.i64()?; // log_start_offset
            }
            w.i32()?; // partition_max_bytes
            w.tagged(|w, tag| match tag {
                0 if v >= 17 => Some(w.uuid()), // replica_directory_id
                1 if v >= 18 => Some(w.i64()),  // high_watermark
                0 | 1 => Some(Err(Stop::Malformed)),
                _ => None,
            })
        })?;
        w.tags()
    })?;
    if v >= 7 {
        w.array(1, |w| {
            if v <= 12 {
                w.string()?; // topic
            }
            if v >= 13 {
                w.uuid()?; // topic_id
            }
            w.array(4, |w| w.i32())?; // partitions
            w.tags()
        })?;
    }
    if v >= 11 {
        w.string()?; // rack_id
    }
    w.tagged(|w, tag| match tag {
        0 => Some(w.string()),                  // cluster_id
        1 if v >= 15 => Some(replica_state(w)), // replica_state
        1 => Some(Err(Stop::Malformed)),
        _ => None,
    })
}

/// Fetch's ReplicaState (a tagged field from v15).
fn replica_state(w: &mut Walk<'_>) -> Step {
    w.i32()?; // replica_id
    w.i64()?; // replica_epoch
    w.tags()
}

pub(crate) fn list_offsets(w: &mut Walk<'_>, v: i16) -> Step {
    w.i32()?; // replica_id
    if v >= 2 {
        w.i8()?; // isolation_level
    }
    w.array(1, |w| {
        w.string()?; // name
        w.array(1, |w| {
            w.i32()?; // partition_index
            if v >= 4 {
                w.i32()?; // current_leader_epoch
            }
            w.i64()?; // timestamp
            w.tags()
        })?;
        w.tags()
    })?;
    if v >= 10 {
        w.i32()?; // timeout_ms
    }
    w.tags()
}

pub(crate) fn metadata(w: &mut Walk<'_>, v: i16) -> Step {
    w.array(1, |w| {
        if v >= 10 {
            w.uuid()?; // topic_id
        }
        w.string()?; // name
        w.tags()
    })?;
    if v >= 4 {
        w.bool()?; // allow_auto_topic_creation
    }
    if (8..=10).contains(&v) {
        w.bool()?; // include_cluster_authorized_operations
    }
    if v >= 8 {
        w.bool()?; // include_topic_authorized_operations
    }
    w.tags()
}

pub(crate) fn api_versions(w: &mut Walk<'_>, v: i16) -> Step {
    if v >= 3 {
        w.string()?; // client_software_name
        w.string()?; // client_software_version
    }
    w.tags()
}

pub(crate) fn create_topics(w: &mut Walk<'_>, _v: i16) -> Step {
    w.array(1, |w| {
        w.string()?; // name
        w.i32()?; // num_partitions
        w.i16()?; // replication_factor
        w.array(1, |w| {
            w.i32()?; // partition_index
            w.array(4, |w| w.i32())?; // broker_ids
            w.tags()
        })?;
        w.array(1, |w| {
            w.string()?; // name
            w.string()?; // value
            w.tags()
        })?;
        w.tags()
    })?;
    w.i32()?; // timeout_ms
    w.bool()?; // validate_only
    w.tags()
}

pub(crate) fn delete_topics(w: &mut Walk<'_>, v: i16) -> Step {
    if v >= 6 {
        w.array(1, |w| {
            w.string()?; // name
            w.uuid()?; // topic_id
            w.tags()
        })?;
    } else {
        let min = w.min_string();
        w.array(min, |w| w.string())?; // topic_names
    }
    w.i32()?; // timeout_ms
    w.tags()
}

pub(crate) fn describe_configs(w: &mut Walk<'_>, v: i16) -> Step {
    w.array(1, |w| {
        w.i8()?; // resource_type
        w.string()?; // resource_name
        let min = w.min_string();
        w.array(min, |w| w.string())?; // configuration_keys
        w.tags()
    })?;
    w.bool()?; // include_synonyms
    if v >= 3 {
        w.bool()?; // include_documentation
    }
    w.tags()
}

pub(crate) fn create_partitions(w: &mut Walk<'_>, _v: i16) -> Step {
    w.array(1, |w| {
        w.string()?; // name
        w.i32()?; // count
        w.array(1, |w| {
            w.array(4, |w| w.i32())?; // broker_ids
            w.tags()
        })?;
        w.tags()
    })?;
    w.i32()?; // timeout_ms
    w.bool()?; // validate_only
    w.tags()
}

pub(crate) fn offset_commit(w: &mut Walk<'_>, v: i16) -> Step {
    w.string()?; // group_id
    w.i32()?; // generation_id_or_member_epoch
    w.string()?; // member_id
    if v >= 7 {
        w.string()?; // group_instance_id
    }
    if v <= 4 {
        w.i64()?; // retention_time_ms
    }
    w.array(1, |w| {
        w.string()?; // name
        w.array(1, |w| {
            w.i32()?; // partition_index
            w.i64()?; // committed_offset
            if v >= 6 {
                w.i32()?; // committed_leader_epoch
            }
            w.string()?; // committed_metadata
            w.tags()
        })?;
        w.tags()
    })?;
    w.tags()
}

pub(crate) fn offset_fetch(w: &mut Walk<'_>, v: i16) -> Step {
    if v <= 7 {
        w.string()?; // group_id
        w.array(1, |w| {
            w.string()?; // name
            w.array(4, |w| w.i32())?; // partition_indexes
            w.tags()
        })?;
    }
    if v >= 8 {
        w.array(1, |w| {
            w.string()?; // group_id
            if v >= 9 {
                w.string()?; // member_id
                w.i32()?; // member_epoch
            }
            w.array(1, |w| {
                w.string()?; // name
                w.array(4, |w| w.i32())?; // partition_indexes
                w.tags()
            })?;
            w.tags()
        })?;
    }
    if v >= 7 {
        w.bool()?; // require_stable
    }
    w.tags()
}

pub(crate) fn find_coordinator(w: &mut Walk<'_>, v: i16) -> Step {
    if v <= 3 {
        w.string()?; // key
    }
    if v >= 1 {
        w.i8()?; // key_type
    }
    if v >= 4 {
        let min = w.min_string();
        w.array(min, |w| w.string())?; // coordinator_keys
    }
    w.tags()
}

pub(crate) fn join_group(w: &mut Walk<'_>, v: i16) -> Step {
    w.string()?; // group_id
    w.i32()?; // session_timeout_ms
    if v >= 1 {
        w.i32()?; // rebalance_timeout_ms
    }
    w.string()?; // member_id
    if v >= 5 {
        w.string()?; // group_instance_id
    }
    w.string()?; // protocol_type
    w.array(1, |w| {
        w.string()?; // name
        w.bytes()?; // metadata
        w.tags()
    })?;
    if v >= 8 {
        w.string()?; // reason
    }
    w.tags()
}

pub(crate) fn heartbeat(w: &mut Walk<'_>, v: i16) -> Step {
    w.string()?; // group_id
    w.i32()?; // generation_id
    w.string()?; // member_id
    if v >= 3 {
        w.string()?; // group_instance_id
    }
    w.tags()
}

pub(crate) fn leave_group(w: &mut Walk<'_>, v: i16) -> Step {
    w.string()?; // group_id
    if v <= 2 {
        w.string()?; // member_id
    }
    if v >= 3 {
        w.array(1, |w| {
            w.string()?; // member_id
            w.string()?; // group_instance_id
            if v >= 5 {
                w.string()?; // reason
            }
            w.tags()
        })?;
    }
    w.tags()
}

pub(crate) fn sync_group(w: &mut Walk<'_>, v: i16) -> Step {
    w.string()?; // group_id
    w.i32()?; // generation_id
    w.string()?; // member_id
    if v >= 3 {
        w.string()?; // group_instance_id
    }
    if v >= 5 {
        w.string()?; // protocol_type
        w.string()?; // protocol_name
    }
    w.array(1, |w| {
        w.string()?; // member_id
        w.bytes()?; // assignment
        w.tags()
    })?;
    w.tags()
}

pub(crate) fn describe_groups(w: &mut Walk<'_>, v: i16) -> Step {
    let min = w.min_string();
    w.array(min, |w| w.string())?; // groups
    if v >= 3 {
        w.bool()?; // include_authorized_operations
    }
    w.tags()
}

pub(crate) fn list_groups(w: &mut Walk<'_>, v: i16) -> Step {
    let min = w.min_string();
    if v >= 4 {
        w.array(min, |w| w.string())?; // states_filter
    }
    if v >= 5 {
        w.array(min, |w| w.string())?; // types_filter
    }
    w.tags()
}

pub(crate) fn init_producer_id(w: &mut Walk<'_>, v: i16) -> Step {
    w.string()?; // transactional_id
    w.i32()?; // transaction_timeout_ms
    if v >= 3 {
        w.i64()?; // producer_id
        w.i16()?; // producer_epoch
    }
    w.tags()
}

pub(crate) fn delete_groups(w: &mut Walk<'_>, _v: i16) -> Step {
    let min = w.min_string();
    w.array(min, |w| w.string())?; // groups_names
    w.tags()
}

pub(crate) fn offset_delete(w: &mut Walk<'_>, _v: i16) -> Step {
    w.string()?; // group_id
    w.array(1, |w| {
        w.string()?; // name
        w.array(4, |w| w.i32()) // partitions (partition_index)
    })
}
