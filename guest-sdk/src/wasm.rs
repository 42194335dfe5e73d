//! The wasm32 side: WIT bindings, the host's imports as [`Services`], and the export glue
//! that [`crate::export_protocol_handler!`] expands to.

use crate::{
    AppendInfo, Broker, ConfigEntry, ErrorCode, Fetched, Handler, HostBuffer, Level, OffsetAndTimestamp,
    Outcome, Request, Segment, Services, Settings, TopicInfo, TopicPartition, WakeSource,
};
use bytes::Bytes;

#[allow(clippy::all, missing_docs, unsafe_op_in_unsafe_fn)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "protocol-handler",
        pub_export_macro: true,
        default_bindings_module: "guise_guest_sdk::wasm::bindings",
        generate_all,
    });
}

use bindings::guise::runtime::{cluster, connection, handler_types as ht, log, logging, types};

impl HostBuffer for types::Buffer {
    fn len(&self) -> u32 {
        types::Buffer::len(self)
    }
    fn read(&self, offset: u32, len: u32) -> Vec<u8> {
        types::Buffer::read(self, offset, len)
    }
    fn slice(&self, offset: u32, len: u32) -> Result<Self, ErrorCode> {
        types::Buffer::slice(self, offset, len)
    }
}

/// The host's imports.
pub struct WasmServices;

fn tp(t: &TopicPartition) -> types::TopicPartition {
    types::TopicPartition { topic: t.topic.clone(), partition: t.partition }
}

fn topic_info(t: log::TopicInfo) -> TopicInfo {
    TopicInfo {
        name: t.name,
        id: ((t.id_hi as u128) << 64) | t.id_lo as u128,
        partitions: t.partitions,
        internal: t.internal,
    }
}

fn config_entry(c: log::ConfigEntry) -> ConfigEntry {
    ConfigEntry {
        name: c.name,
        value: c.value,
        read_only: c.read_only,
        is_default: c.is_default,
        sensitive: c.sensitive,
    }
}

fn broker(b: cluster::Broker) -> Broker {
    Broker { node_id: b.node_id, host: b.host, port: b.port, rack: b.rack }
}

impl Services for WasmServices {
    type Buffer = types::Buffer;

    fn list_topics(&self) -> Vec<TopicInfo> {
        log::list_topics().into_iter().map(topic_info).collect()
    }
    fn describe_topic(&self, name: &str) -> Option<TopicInfo> {
        log::describe_topic(name).map(topic_info)
    }
    fn topic_by_id(&self, id: u128) -> Option<TopicInfo> {
        log::topic_by_id((id >> 64) as u64, id as u64).map(topic_info)
    }
    fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        configs: &[(String, String)],
        validate_only: bool,
    ) -> Result<TopicInfo, ErrorCode> {
        log::create_topic(name, partitions, configs, validate_only).map(topic_info)
    }
    fn delete_topic(&self, name: &str) -> Result<(), ErrorCode> {
        log::delete_topic(name)
    }
    fn create_partitions(&self, name: &str, total: i32, validate_only: bool) -> Result<(), ErrorCode> {
        log::create_partitions(name, total, validate_only)
    }
    fn topic_configs(&self, name: &str) -> Result<Vec<ConfigEntry>, ErrorCode> {
        log::topic_configs(name).map(|v| v.into_iter().map(config_entry).collect())
    }
    fn broker_configs(&self) -> Vec<ConfigEntry> {
        log::broker_configs().into_iter().map(config_entry).collect()
    }
    fn append(&self, t: &TopicPartition, records: &Self::Buffer) -> Result<AppendInfo, ErrorCode> {
        log::append(&tp(t), records)
            .map(|a| AppendInfo { base_offset: a.base_offset, log_start_offset: a.log_start_offset })
    }
    fn read(
        &self,
        t: &TopicPartition,
        offset: i64,
        max_bytes: u32,
        min_one: bool,
    ) -> Result<Fetched<Self::Buffer>, ErrorCode> {
        log::read(&tp(t), offset, max_bytes, min_one).map(|f| Fetched {
            high_watermark: f.high_watermark,
            last_stable_offset: f.last_stable_offset,
            log_start_offset: f.log_start_offset,
            records: f.records,
            records_len: f.records_len,
        })
    }
    fn list_offset(
        &self,
        t: &TopicPartition,
        timestamp: i64,
    ) -> Result<Option<OffsetAndTimestamp>, ErrorCode> {
        log::list_offset(&tp(t), timestamp)
            .map(|o| o.map(|o| OffsetAndTimestamp { offset: o.offset, timestamp: o.timestamp }))
    }
    fn self_broker(&self) -> Broker {
        broker(cluster::self_broker())
    }
    fn brokers(&self) -> Vec<Broker> {
        cluster::brokers().into_iter().map(broker).collect()
    }
    fn settings(&self) -> Settings {
        let s = cluster::get_settings();
        Settings {
            cluster_id: s.cluster_id,
            auto_create_topics: s.auto_create_topics,
            default_partitions: s.default_partitions,
            max_frame_bytes: s.max_frame_bytes,
        }
    }
    fn tenant(&self) -> String {
        connection::tenant()
    }
    fn connection_id(&self) -> u64 {
        connection::id()
    }
    fn log(&self, level: Level, message: &str) {
        let level = match level {
            Level::Trace => logging::Level::Trace,
            Level::Debug => logging::Level::Debug,
            Level::Info => logging::Level::Info,
            Level::Warn => logging::Level::Warn,
            Level::Error => logging::Level::Error,
        };
        logging::log(level, message);
    }
}

fn segments(segs: Vec<Segment<types::Buffer>>) -> Vec<ht::Segment> {
    segs.into_iter()
        .map(|s| match s {
            Segment::Bytes(b) => ht::Segment::Bytes(b),
            Segment::Buffer(b) => ht::Segment::Buffer(b),
        })
        .collect()
}

fn request(frame: &types::Buffer) -> Request<'_, types::Buffer> {
    let bytes = Bytes::from(frame.read(0, frame.len()));
    Request { bytes, frame }
}

pub fn run_handle<H: Handler>(frame: &types::Buffer, final_: bool) -> ht::Outcome {
    let req = request(frame);
    match H::handle(&WasmServices, &req, final_) {
        Outcome::Respond(r) => ht::Outcome::Respond(r.map(segments)),
        Outcome::Wait(w) => ht::Outcome::Wait(ht::Wait {
            wake_on: w
                .wake_on
                .into_iter()
                .map(|WakeSource::Partition(p)| ht::WakeSource::Partition(tp(&p)))
                .collect(),
            deadline_ms: w.deadline_ms,
        }),
        Outcome::Close(reason) => ht::Outcome::Close(reason),
    }
}

pub fn run_error_response<H: Handler>(frame: &types::Buffer, code: i16) -> Option<Vec<ht::Segment>> {
    let req = request(frame);
    H::error_response(&WasmServices, &req, code).map(segments)
}
