//! DescribeConfigs v1–v4: the configs of a topic or of this broker, as the host reports them
//! (only configs that exist and take effect here).
//!
//! A BROKER resource named with this broker's node id gets the host's broker configs; named with
//! the empty string it means, as in Kafka, the cluster-wide dynamic defaults, of which Guise has
//! none (an empty list). Other resource types (broker loggers, groups, client metrics) are
//! INVALID_REQUEST.
//!
//! A BROKER resource needs DESCRIBE_CONFIGS on the cluster, else CLUSTER_AUTHORIZATION_FAILED
//! for that resource, as in Kafka; a topic's configs are the host's to authorize
//! (DESCRIBE_CONFIGS on the topic, else TOPIC_AUTHORIZATION_FAILED).

use crate::acl_common::authorization_message;
use crate::context::{ApiResult, Ctx};
use crate::create_topics::host_error_message;
use crate::metadata::str_bytes;
use guise_guest_sdk::{ConfigEntry, ErrorCode, Services, acl, error};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};

/// Kafka's ConfigResource.Type codes.
pub(crate) const RESOURCE_TOPIC: i8 = 2;
pub(crate) const RESOURCE_BROKER: i8 = 4;

/// Kafka's DescribeConfigsResponse.ConfigSource codes.
pub(crate) const DYNAMIC_TOPIC_CONFIG: i8 = 1;
pub(crate) const STATIC_BROKER_CONFIG: i8 = 4;
pub(crate) const DEFAULT_CONFIG: i8 = 5;

/// Kafka's DescribeConfigsResponse.ConfigType codes.
mod ty {
    pub const UNKNOWN: i8 = 0;
    pub const BOOLEAN: i8 = 1;
    pub const STRING: i8 = 2;
    pub const INT: i8 = 3;
    pub const SHORT: i8 = 4;
    pub const LONG: i8 = 5;
    pub const DOUBLE: i8 = 6;
    pub const LIST: i8 = 7;
    pub const PASSWORD: i8 = 9;
}

/// Where a topic config's value comes from: set on the topic, or the default.
pub(crate) fn topic_config_source(e: &ConfigEntry) -> i8 {
    if e.is_default { DEFAULT_CONFIG } else { DYNAMIC_TOPIC_CONFIG }
}

/// Where a broker config's value comes from: the host's configuration, or the default.
fn broker_config_source(e: &ConfigEntry) -> i8 {
    if e.is_default { DEFAULT_CONFIG } else { STATIC_BROKER_CONFIG }
}

/// The topic configs, Kafka's and Guise's own: (name, type, the broker config that supplies its
/// default, doc).
#[rustfmt::skip]
const TOPIC_CONFIGS: &[(&str, i8, Option<&str>, &str)] = &[
    ("cleanup.policy", ty::LIST, Some("log.cleanup.policy"), "How old log segments are retired: delete, compact, or both."),
    ("compression.type", ty::STRING, Some("compression.type"), "Compression of the topic's stored batches; producer keeps the producer's."),
    ("compression.gzip.level", ty::INT, Some("compression.gzip.level"), "Compression level when compression.type is gzip."),
    ("compression.lz4.level", ty::INT, Some("compression.lz4.level"), "Compression level when compression.type is lz4."),
    ("compression.zstd.level", ty::INT, Some("compression.zstd.level"), "Compression level when compression.type is zstd."),
    ("delete.retention.ms", ty::LONG, Some("log.cleaner.delete.retention.ms"), "How long delete tombstones are kept on compacted topics."),
    ("errors.deadletterqueue.group.enable", ty::BOOLEAN, Some("errors.deadletterqueue.group.enable"), "Whether share groups may send records they cannot deliver to a dead-letter queue."),
    ("file.delete.delay.ms", ty::LONG, Some("log.segment.delete.delay.ms"), "Delay before a retired segment file is deleted."),
    ("flush.messages", ty::LONG, Some("log.flush.interval.messages"), "Records written between forced flushes to disk."),
    ("flush.ms", ty::LONG, Some("log.flush.interval.ms"), "Maximum time between forced flushes to disk."),
    ("follower.replication.throttled.replicas", ty::LIST, None, "Replicas whose replication is throttled on followers."),
    ("guise.entry.format", ty::STRING, None, "On the pulsar storage backend, what one Pulsar message holds: kafka (a record batch) or pulsar (a record)."),
    ("guise.pulsar.ingress", ty::BOOLEAN, None, "On the pulsar storage backend, whether Pulsar applications may write to the topic through its ingress topic (TOPIC:ingress)."),
    ("index.interval.bytes", ty::INT, Some("log.index.interval.bytes"), "Bytes between offset index entries."),
    ("leader.replication.throttled.replicas", ty::LIST, None, "Replicas whose replication is throttled on the leader."),
    ("local.retention.bytes", ty::LONG, Some("log.local.retention.bytes"), "Bytes kept locally when tiered storage is on."),
    ("local.retention.ms", ty::LONG, Some("log.local.retention.ms"), "Time kept locally when tiered storage is on."),
    ("max.compaction.lag.ms", ty::LONG, Some("log.cleaner.max.compaction.lag.ms"), "Maximum time a record stays uncompacted."),
    ("max.decompressed.message.bytes", ty::INT, None, "Largest decompressed size of a record batch."),
    ("max.message.bytes", ty::INT, Some("message.max.bytes"), "Largest record batch size allowed."),
    ("message.timestamp.after.max.ms", ty::LONG, Some("log.message.timestamp.after.max.ms"), "How far after the broker's time a record timestamp may be."),
    ("message.timestamp.before.max.ms", ty::LONG, Some("log.message.timestamp.before.max.ms"), "How far before the broker's time a record timestamp may be."),
    ("message.timestamp.type", ty::STRING, Some("log.message.timestamp.type"), "CreateTime or LogAppendTime."),
    ("min.cleanable.dirty.ratio", ty::DOUBLE, Some("log.cleaner.min.cleanable.ratio"), "Dirty ratio that triggers compaction."),
    ("min.compaction.lag.ms", ty::LONG, Some("log.cleaner.min.compaction.lag.ms"), "Minimum time a record stays uncompacted."),
    ("min.insync.replicas", ty::INT, Some("min.insync.replicas"), "In-sync replicas required for acks=all."),
    ("preallocate", ty::BOOLEAN, Some("log.preallocate"), "Preallocate segment files."),
    ("remote.copy.lag.bytes", ty::LONG, None, "Bytes a topic may lag behind before tiered storage copies it."),
    ("remote.copy.lag.ms", ty::LONG, None, "Time a topic may lag behind before tiered storage copies it."),
    ("remote.log.copy.disable", ty::BOOLEAN, None, "Stop copying this topic to tiered storage."),
    ("remote.log.delete.on.disable", ty::BOOLEAN, None, "Delete the tiered copy when tiered storage is turned off."),
    ("remote.storage.enable", ty::BOOLEAN, None, "Tiered storage for this topic."),
    ("retention.bytes", ty::LONG, Some("log.retention.bytes"), "Maximum size of a partition before old segments are retired; -1 for none."),
    ("retention.ms", ty::LONG, Some("log.retention.ms"), "How long records are kept; -1 for ever."),
    ("segment.bytes", ty::INT, Some("log.segment.bytes"), "Size of a log segment file."),
    ("segment.index.bytes", ty::INT, Some("log.index.size.max.bytes"), "Size of a segment's offset index."),
    ("segment.jitter.ms", ty::LONG, Some("log.roll.jitter.ms"), "Random jitter subtracted from segment.ms."),
    ("segment.ms", ty::LONG, Some("log.roll.ms"), "Time after which a segment is rolled."),
    ("unclean.leader.election.enable", ty::BOOLEAN, Some("unclean.leader.election.enable"), "Let out-of-sync replicas become leader."),
];

/// Broker configs a host may report that are not a topic config's synonym: (name, type, doc).
#[rustfmt::skip]
const BROKER_CONFIGS: &[(&str, i8, &str)] = &[
    ("advertised.listeners", ty::STRING, "Addresses clients are told to connect to."),
    ("auto.create.topics.enable", ty::BOOLEAN, "Create a topic when a client asks for metadata of a missing one."),
    ("broker.id", ty::INT, "This broker's node id."),
    ("default.replication.factor", ty::INT, "Replication factor of auto-created topics."),
    ("delete.topic.enable", ty::BOOLEAN, "Allow deleting topics."),
    ("group.initial.rebalance.delay.ms", ty::INT, "Delay of a new group's first rebalance."),
    ("group.max.session.timeout.ms", ty::INT, "Largest session timeout a consumer may ask for."),
    ("group.min.session.timeout.ms", ty::INT, "Smallest session timeout a consumer may ask for."),
    ("listeners", ty::STRING, "Addresses the broker listens on."),
    ("log.dir", ty::STRING, "Directory of the log data."),
    ("log.dirs", ty::STRING, "Directories of the log data."),
    ("log.retention.hours", ty::INT, "How long records are kept, in hours."),
    ("log.retention.minutes", ty::INT, "How long records are kept, in minutes."),
    ("log.roll.hours", ty::INT, "Time after which a segment is rolled, in hours."),
    ("node.id", ty::INT, "This broker's node id."),
    ("num.partitions", ty::INT, "Partitions of an auto-created topic."),
    ("offsets.retention.minutes", ty::INT, "How long committed offsets of an empty group are kept."),
    ("offsets.topic.replication.factor", ty::SHORT, "Replication factor of the offsets topic."),
    ("sasl.enabled.mechanisms", ty::LIST, "SASL mechanisms the broker accepts."),
    ("socket.request.max.bytes", ty::INT, "Largest request the broker accepts."),
    ("ssl.key.password", ty::PASSWORD, "Password of the TLS private key."),
    ("ssl.keystore.password", ty::PASSWORD, "Password of the TLS key store."),
    ("transactional.id.expiration.ms", ty::INT, "Idle time after which a transactional id expires."),
];

/// The type and documentation of a config the translator knows.
fn known(name: &str) -> Option<(i8, &'static str)> {
    TOPIC_CONFIGS
        .iter()
        .find(|c| c.0 == name || c.2 == Some(name))
        .map(|c| (c.1, c.3))
        .or_else(|| BROKER_CONFIGS.iter().find(|c| c.0 == name).map(|c| (c.1, c.2)))
}

/// The broker config whose value a topic config takes by default.
fn broker_synonym(topic_config: &str) -> Option<&'static str> {
    TOPIC_CONFIGS.iter().find(|c| c.0 == topic_config).and_then(|c| c.2)
}

pub fn handle<S: Services>(cx: &Ctx<'_, S>) -> ApiResult<S> {
    let req: DescribeConfigsRequest = cx.decode()?;
    let svc = cx.svc;
    let me = svc.self_broker().node_id;
    let options = Options {
        synonyms: req.include_synonyms,
        documentation: cx.version >= 3 && req.include_documentation,
    };
    // Broker configs, read once and only if needed (topic synonyms name them too).
    let mut broker: Option<Vec<ConfigEntry>> = None;
    let mut broker_configs = || broker.get_or_insert_with(|| svc.broker_configs()).clone();
    let results = req
        .resources
        .iter()
        .map(|r| {
            let result = DescribeConfigsResult::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone());
            match describe(svc, r, me, options, &mut broker_configs) {
                Ok(configs) => {
                    result.with_error_code(error::NONE).with_error_message(None).with_configs(configs)
                }
                Err((code, why)) => result.with_error_code(code).with_error_message(Some(str_bytes(why))),
            }
        })
        .collect();
    cx.respond(&DescribeConfigsResponse::default().with_results(results))
}

#[derive(Clone, Copy)]
struct Options {
    synonyms: bool,
    documentation: bool,
}

/// The configs of one resource, or why it cannot be described.
fn describe<S: Services>(
    svc: &S,
    r: &DescribeConfigsResource,
    me: i32,
    options: Options,
    broker_configs: &mut impl FnMut() -> Vec<ConfigEntry>,
) -> Result<Vec<DescribeConfigsResourceResult>, (ErrorCode, String)> {
    let name = r.resource_name.as_str();
    match r.resource_type {
        RESOURCE_TOPIC => {
            let entries = svc.topic_configs(name).map_err(|code| (code, host_error_message(code, name)))?;
            let defaults = if options.synonyms { broker_configs() } else { Vec::new() };
            Ok(selected(r, entries)
                .map(|e| {
                    let synonyms = if options.synonyms { topic_synonyms(&e, &defaults) } else { vec![] };
                    config(e, topic_config_source, synonyms, options.documentation)
                })
                .collect())
        }
        RESOURCE_BROKER if !svc.authorize(acl::CLUSTER, acl::CLUSTER_NAME, acl::DESCRIBE_CONFIGS) => {
            let code = error::CLUSTER_AUTHORIZATION_FAILED;
            Err((code, authorization_message(code).to_string()))
        }
        RESOURCE_BROKER if name.is_empty() => Ok(Vec::new()),
        RESOURCE_BROKER => match name.parse::<i32>() {
            Ok(id) if id == me => Ok(selected(r, broker_configs())
                .map(|e| {
                    let synonyms = if options.synonyms {
                        vec![synonym(&e.name, &e, broker_config_source(&e))]
                    } else {
                        vec![]
                    };
                    config(e, broker_config_source, synonyms, options.documentation)
                })
                .collect()),
            Ok(_) => Err((
                error::INVALID_REQUEST,
                format!("Unexpected broker id, expected {me} or empty string, but received {name}."),
            )),
            Err(_) => {
                Err((error::INVALID_REQUEST, format!("Broker id must be an integer, but it is: {name}.")))
            }
        },
        other => Err((
            error::INVALID_REQUEST,
            format!("Unsupported resource type {other}: only topics (2) and brokers (4) are described here."),
        )),
    }
}

/// The entries the resource asks for: all when no keys (null or, as in Kafka, empty) are named.
fn selected(r: &DescribeConfigsResource, entries: Vec<ConfigEntry>) -> impl Iterator<Item = ConfigEntry> {
    let keys: Vec<String> = match &r.configuration_keys {
        Some(keys) => keys.iter().map(|k| k.as_str().to_string()).collect(),
        None => Vec::new(),
    };
    entries.into_iter().filter(move |e| keys.is_empty() || keys.contains(&e.name))
}

fn synonym(name: &str, e: &ConfigEntry, source: i8) -> DescribeConfigsSynonym {
    DescribeConfigsSynonym::default()
        .with_name(str_bytes(name))
        .with_value(if e.sensitive { None } else { e.value.clone().map(str_bytes) })
        .with_source(source)
}

/// As Kafka lists them, most specific first: the topic's own value if set, then the broker
/// config that supplies the default (with the host's value for it if the host reports it, else
/// the topic's value when that is the default).
fn topic_synonyms(e: &ConfigEntry, broker: &[ConfigEntry]) -> Vec<DescribeConfigsSynonym> {
    let mut out = Vec::new();
    if !e.is_default {
        out.push(synonym(&e.name, e, DYNAMIC_TOPIC_CONFIG));
    }
    if let Some(name) = broker_synonym(&e.name) {
        if let Some(b) = broker.iter().find(|b| b.name == name) {
            out.push(synonym(name, b, broker_config_source(b)));
        } else if e.is_default {
            out.push(synonym(name, e, DEFAULT_CONFIG));
        }
    }
    out
}

fn config(
    e: ConfigEntry,
    source: fn(&ConfigEntry) -> i8,
    synonyms: Vec<DescribeConfigsSynonym>,
    documentation: bool,
) -> DescribeConfigsResourceResult {
    let (config_type, doc) = known(&e.name).unwrap_or((ty::UNKNOWN, ""));
    DescribeConfigsResourceResult::default()
        .with_config_source(source(&e))
        .with_read_only(e.read_only)
        .with_is_sensitive(e.sensitive)
        .with_value(if e.sensitive { None } else { e.value.map(str_bytes) })
        .with_synonyms(synonyms)
        .with_config_type(config_type)
        .with_documentation((documentation && !doc.is_empty()).then(|| str_bytes(doc)))
        .with_name(str_bytes(e.name))
}

pub fn error<S: Services>(cx: &Ctx<'_, S>, code: ErrorCode) -> ApiResult<S> {
    let req: DescribeConfigsRequest = cx.decode()?;
    let results = req
        .resources
        .iter()
        .map(|r| {
            DescribeConfigsResult::default()
                .with_error_code(code)
                .with_error_message(None)
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone())
        })
        .collect();
    cx.respond(&DescribeConfigsResponse::default().with_results(results))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::call;
    use guise_guest_sdk::stub::StubServices;
    use kafka_protocol::messages::ApiKey;
    use kafka_protocol::protocol::StrBytes;

    fn resource(kind: i8, name: &str, keys: Option<&[&str]>) -> DescribeConfigsResource {
        DescribeConfigsResource::default()
            .with_resource_type(kind)
            .with_resource_name(str_bytes(name))
            .with_configuration_keys(keys.map(|k| k.iter().map(|k| str_bytes(*k)).collect::<Vec<StrBytes>>()))
    }

    fn describe(svc: &StubServices, version: i16, req: DescribeConfigsRequest) -> DescribeConfigsResponse {
        call(svc, ApiKey::DescribeConfigs, version, &req)
    }

    fn stub_with_topic() -> StubServices {
        let svc = StubServices::new();
        svc.create_topic("t", 1, &[("max.message.bytes".into(), "2048".into())], false).unwrap();
        svc
    }

    #[test]
    fn all_topic_configs_at_every_version() {
        let svc = stub_with_topic();
        for v in 1..=4 {
            let resp = describe(
                &svc,
                v,
                DescribeConfigsRequest::default().with_resources(vec![resource(2, "t", None)]),
            );
            assert_eq!(resp.results.len(), 1);
            let r = &resp.results[0];
            assert_eq!((r.error_code, r.resource_type, r.resource_name.as_str()), (0, 2, "t"), "v{v}");
            assert_eq!(r.error_message, None);
            let got: Vec<(&str, Option<&str>, i8, bool)> = r
                .configs
                .iter()
                .map(|c| (c.name.as_str(), c.value.as_deref(), c.config_source, c.read_only))
                .collect();
            assert_eq!(
                got,
                [
                    ("cleanup.policy", Some("delete"), DEFAULT_CONFIG, true),
                    ("max.message.bytes", Some("2048"), DYNAMIC_TOPIC_CONFIG, false),
                    ("segment.bytes", Some("1073741824"), DEFAULT_CONFIG, false),
                ],
                "v{v}"
            );
            assert!(r.configs.iter().all(|c| !c.is_sensitive && c.synonyms.is_empty()));
            // Documentation exists from v3 (the codec decodes it as "" below).
            assert!(v < 3 || r.configs.iter().all(|c| c.documentation.is_none()), "v{v}");
            let types: Vec<i8> = r.configs.iter().map(|c| c.config_type).collect();
            let expected = if v >= 3 { [ty::LIST, ty::INT, ty::INT] } else { [0, 0, 0] };
            assert_eq!(types, expected, "v{v}");
        }
    }

    #[test]
    fn only_the_named_keys() {
        let svc = stub_with_topic();
        let keys: &[&str] = &["segment.bytes", "no.such.key"];
        let resp = describe(
            &svc,
            4,
            DescribeConfigsRequest::default().with_resources(vec![resource(2, "t", Some(keys))]),
        );
        let names: Vec<&str> = resp.results[0].configs.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["segment.bytes"]);
    }

    #[test]
    fn synonyms_and_documentation_when_asked() {
        let svc = stub_with_topic();
        let req = DescribeConfigsRequest::default()
            .with_resources(vec![resource(2, "t", Some(&["max.message.bytes", "cleanup.policy"]))])
            .with_include_synonyms(true)
            .with_include_documentation(true);
        let resp = describe(&svc, 3, req);
        let configs = &resp.results[0].configs;
        let syn = |i: usize| -> Vec<(&str, Option<&str>, i8)> {
            configs[i].synonyms.iter().map(|s| (s.name.as_str(), s.value.as_deref(), s.source)).collect()
        };
        assert_eq!(configs[0].name.as_str(), "cleanup.policy");
        assert_eq!(syn(0), [("log.cleanup.policy", Some("delete"), DEFAULT_CONFIG)]);
        assert_eq!(configs[1].name.as_str(), "max.message.bytes");
        assert_eq!(syn(1), [("max.message.bytes", Some("2048"), DYNAMIC_TOPIC_CONFIG)]);
        assert!(configs.iter().all(|c| c.documentation.as_deref().is_some_and(|d| !d.is_empty())));
    }

    #[test]
    fn guise_entry_format_has_a_type_and_documentation() {
        let (config_type, doc) = known("guise.entry.format").expect("known");
        assert_eq!(config_type, ty::STRING);
        assert!(doc.contains("pulsar"));
        assert_eq!(broker_synonym("guise.entry.format"), None);
    }

    #[test]
    fn unknown_topic() {
        let svc = StubServices::new();
        let resp = describe(
            &svc,
            2,
            DescribeConfigsRequest::default().with_resources(vec![resource(2, "nope", None)]),
        );
        let r = &resp.results[0];
        assert_eq!(r.error_code, error::UNKNOWN_TOPIC_OR_PARTITION);
        assert!(r.configs.is_empty());
        assert!(r.error_message.as_deref().is_some_and(|m| !m.is_empty()));
    }

    #[test]
    fn broker_resources() {
        let mut svc = StubServices::new();
        svc.broker.node_id = 3;
        let req = DescribeConfigsRequest::default()
            .with_resources(vec![
                resource(4, "3", None),
                resource(4, "", None),
                resource(4, "4", None),
                resource(4, "x", None),
                resource(8, "3", None),
                resource(2, "missing", None),
            ])
            .with_include_synonyms(true);
        let resp = describe(&svc, 4, req);
        let codes: Vec<(i8, &str, ErrorCode)> =
            resp.results.iter().map(|r| (r.resource_type, r.resource_name.as_str(), r.error_code)).collect();
        assert_eq!(
            codes,
            [
                (4, "3", 0),
                (4, "", 0),
                (4, "4", error::INVALID_REQUEST),
                (4, "x", error::INVALID_REQUEST),
                (8, "3", error::INVALID_REQUEST),
                (2, "missing", error::UNKNOWN_TOPIC_OR_PARTITION),
            ]
        );
        let c = &resp.results[0].configs;
        assert_eq!(c.len(), 1);
        assert_eq!(
            (c[0].name.as_str(), c[0].value.as_deref(), c[0].config_source, c[0].config_type, c[0].read_only),
            ("auto.create.topics.enable", Some("true"), DEFAULT_CONFIG, ty::BOOLEAN, true)
        );
        assert_eq!(c[0].synonyms.len(), 1);
        assert_eq!(c[0].synonyms[0].source, DEFAULT_CONFIG);
        assert!(resp.results[1].configs.is_empty());
        assert!(resp.results[2].error_message.as_deref().is_some_and(|m| m.contains("expected 3")));
        assert!(
            resp.results[4].error_message.as_deref().is_some_and(|m| m.contains("Unsupported resource type"))
        );
    }

    #[test]
    fn broker_configs_need_cluster_describe_configs() {
        let svc = stub_with_topic();
        svc.deny(acl::CLUSTER, acl::CLUSTER_NAME, acl::DESCRIBE_CONFIGS);
        let req = DescribeConfigsRequest::default().with_resources(vec![
            resource(4, "0", None),
            resource(4, "", None),
            resource(2, "t", Some(&["max.message.bytes"])),
        ]);
        let resp = describe(&svc, 4, req);
        let got: Vec<(ErrorCode, Option<&str>, usize)> = resp
            .results
            .iter()
            .map(|r| (r.error_code, r.error_message.as_deref(), r.configs.len()))
            .collect();
        let refused = (error::CLUSTER_AUTHORIZATION_FAILED, Some("Cluster authorization failed."), 0);
        assert_eq!(got, [refused, refused, (error::NONE, None, 1)]);
    }

    #[test]
    fn error_response_covers_every_resource() {
        let svc = StubServices::new();
        let req = DescribeConfigsRequest::default()
            .with_resources(vec![resource(2, "a", None), resource(4, "0", None)]);
        let bytes = crate::test_util::frame(ApiKey::DescribeConfigs, 4, &req);
        let raw = crate::test_util::error_response(&svc, bytes, error::UNKNOWN_SERVER_ERROR);
        let resp: DescribeConfigsResponse =
            crate::test_util::decode_response(ApiKey::DescribeConfigs, 4, &raw);
        let got: Vec<(i8, &str, ErrorCode)> =
            resp.results.iter().map(|r| (r.resource_type, r.resource_name.as_str(), r.error_code)).collect();
        assert_eq!(got, [(2, "a", -1), (4, "0", -1)]);
    }
}
