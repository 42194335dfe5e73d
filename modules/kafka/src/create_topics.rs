//! CreateTopics v2–v7: create topics of the connection's tenant through the host.
//!
//! Every partition is led and stored by this broker with no Kafka-level replicas (the storage
//! replicates, if anything does), so a replication factor is accepted as long as the cluster
//! has that many brokers, and the topic is reported with replication factor 1, as Metadata
//! describes it. A manual assignment fixes the partition count and may name only this broker.
//! The host validates names, partition counts and configs, and authorizes the creation (CREATE
//! on the cluster or the topic). From v5 a created topic's configs are reported only to a
//! principal that may DESCRIBE_CONFIGS it (else TOPIC_AUTHORIZATION_FAILED as the config error),
//! as Kafka reports them.

use crate::context::{ApiResult, Ctx};
use crate::describe_configs::{DYNAMIC_TOPIC_CONFIG, topic_config_source};
use crate::metadata::{str_bytes, topic_name, topic_uuid};
use guise_guest_sdk::{ErrorCode, Services, TopicInfo, acl, error};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{CreatableTopicConfigs, CreatableTopicResult};
use kafka_protocol::messages::{BrokerId, CreateTopicsRequest, CreateTopicsResponse};

/// INVALID_REPLICA_ASSIGNMENT (not in the SDK's list).
pub(crate) use guise_guest_sdk::error::INVALID_REPLICA_ASSIGNMENT;

/// Check one partition's manual replica assignment: it must be exactly this broker.
pub(crate) fn check_replicas(partition: i32, replicas: &[BrokerId], me: i32) -> Result<(), String> {
    match replicas {
        [only] if only.0 == me => Ok(()),
        [] => Err(format!("Partition {partition} has an empty replica assignment; it must be [{me}].")),
        _ => {
            let ids: Vec<i32> = replicas.iter().map(|b| b.0).collect();
            Err(format!(
                "Partition {partition} is assigned to brokers {ids:?}, but every partition is led and \
                 stored by this broker alone: its assignment must be [{me}]."
            ))
        }
    }
}

/// Items (names, ids) that appear more than once, each once, in order of first appearance.
pub(crate) fn duplicates<T: PartialEq + Copy>(items: impl Iterator<Item = T> + Clone) -> Vec<T> {
    let mut dups: Vec<T> = Vec::new();
    for (i, n) in items.clone().enumerate() {
        if !dups.contains(&n) && items.clone().skip(i + 1).any(|m| m == n) {
            dups.push(n);
        }
    }
    dups
}

/// Why the host refused a topic, in words, for the error message.
pub(crate) fn host_error_message(code: ErrorCode, name: &str) -> String {
    match code {
        error::INVALID_TOPIC_EXCEPTION => format!(
            "Topic name \"{name}\" is illegal: a topic name is 1 to 249 characters of ASCII letters, \
             digits, '.', '_' and '-', and neither \".\" nor \"..\"."
        ),
        error::TOPIC_ALREADY_EXISTS => format!("Topic '{name}' already exists."),
        error::UNKNOWN_TOPIC_OR_PARTITION => "This server does not host this topic.".to_string(),
        error::UNKNOWN_TOPIC_ID => "This server does not host this topic ID.".to_string(),
        error::INVALID_PARTITIONS => "The number of partitions is invalid.".to_string(),
        error::INVALID_CONFIG => "A topic config is unknown here or has an invalid value.".to_string(),
        error::POLICY_VIOLATION => format!("The host's policy does not allow this on topic '{name}'."),
        error::TOPIC_AUTHORIZATION_FAILED | error::CLUSTER_AUTHORIZATION_FAILED => {
            crate::acl_common::authorization_message(code).to_string()
        }
        code => format!("The operation on topic '{name}' failed with error code {code}."),
    }
}

struct Failure(ErrorCode, String);

pub fn handle<S: Services>(cx: &Ctx<'_, S>) -> ApiResult<S> {
    let req: CreateTopicsRequest = cx.decode()?;
    let svc = cx.svc;
    let me = svc.self_broker().node_id;
    let broker_count = svc.brokers().len();
    let dups = duplicates(req.topics.iter().map(|t| t.name.as_str()));
    let mut results = Vec::with_capacity(req.topics.len());
    for name in &dups {
        results.push(failed(name, error::INVALID_REQUEST, "Duplicate topic name.".into()));
    }
    for t in req.topics.iter().filter(|t| !dups.contains(&t.name.as_str())) {
        let name = t.name.as_str();
        let result = plan(cx, t, me, broker_count).and_then(|(partitions, configs)| {
            svc.create_topic(name, partitions, &configs, req.validate_only).map_err(|code| {
                let why = match code {
                    // `plan` refused counts below 1: the host refuses this one (too many).
                    error::INVALID_PARTITIONS => format!("A topic cannot have {partitions} partitions here."),
                    error::INVALID_CONFIG => {
                        let names: Vec<&str> = configs.iter().map(|(k, _)| k.as_str()).collect();
                        format!("One of the topic configs {names:?} is unknown here or has an invalid value.")
                    }
                    code => host_error_message(code, name),
                };
                Failure(code, why)
            })
        });
        results.push(match result {
            Ok(info) => created(cx, &info, t, req.validate_only),
            Err(Failure(code, why)) => failed(name, code, why),
        });
    }
    cx.respond(&CreateTopicsResponse::default().with_topics(results))
}

/// The partition count and configs to create `t` with, or why it cannot be created.
fn plan<S: Services>(
    cx: &Ctx<'_, S>,
    t: &CreatableTopic,
    me: i32,
    broker_count: usize,
) -> Result<(i32, Vec<(String, String)>), Failure> {
    let partitions = if t.assignments.is_empty() {
        // -1 means the broker's default at every version: the schema documents it from v4, but
        // Kafka's broker does not check the version, and some clients send -1 at v3. As in
        // Kafka, the partition count is checked before the replication factor.
        let partitions = match t.num_partitions {
            -1 => cx.svc.settings().default_partitions,
            n if n < 1 => {
                return Err(Failure(
                    error::INVALID_PARTITIONS,
                    format!("Number of partitions was set to an invalid non-positive value ({n})."),
                ));
            }
            n => n,
        };
        let rf = t.replication_factor;
        if rf == 0 || rf < -1 {
            return Err(Failure(
                error::INVALID_REPLICATION_FACTOR,
                "Replication factor must be larger than 0, or -1 to use the default value.".into(),
            ));
        }
        if usize::try_from(rf).is_ok_and(|rf| rf > broker_count) {
            return Err(Failure(
                error::INVALID_REPLICATION_FACTOR,
                format!("Replication factor {rf} is larger than the number of brokers ({broker_count})."),
            ));
        }
        partitions
    } else {
        if t.num_partitions != -1 || t.replication_factor != -1 {
            return Err(Failure(
                error::INVALID_REQUEST,
                "Both numPartitions or replicationFactor and replicasAssignments were set. \
                 Both cannot be used at the same time."
                    .into(),
            ));
        }
        let mut indexes: Vec<i32> = t.assignments.iter().map(|a| a.partition_index).collect();
        indexes.sort_unstable();
        if indexes.iter().enumerate().any(|(i, p)| i64::from(*p) != i as i64) {
            return Err(Failure(
                INVALID_REPLICA_ASSIGNMENT,
                format!("The assigned partitions {indexes:?} are not the sequence 0, 1, 2, ...."),
            ));
        }
        for a in &t.assignments {
            check_replicas(a.partition_index, &a.broker_ids, me)
                .map_err(|why| Failure(INVALID_REPLICA_ASSIGNMENT, why))?;
        }
        i32::try_from(t.assignments.len()).unwrap_or(i32::MAX)
    };
    let mut configs = Vec::with_capacity(t.configs.len());
    for c in &t.configs {
        let Some(value) = &c.value else {
            return Err(Failure(
                error::INVALID_CONFIG,
                format!("Null value not supported for topic config '{}'.", c.name.as_str()),
            ));
        };
        configs.push((c.name.as_str().to_string(), value.as_str().to_string()));
    }
    Ok((partitions, configs))
}

fn created<S: Services>(
    cx: &Ctx<'_, S>,
    info: &TopicInfo,
    t: &CreatableTopic,
    validate_only: bool,
) -> CreatableTopicResult {
    let mut result = CreatableTopicResult::default()
        .with_name(topic_name(info.name.clone()))
        .with_topic_id(topic_uuid(info.id))
        .with_error_code(error::NONE)
        .with_error_message(None)
        .with_num_partitions(info.partitions)
        .with_replication_factor(1);
    if cx.version < 5 {
        return result;
    }
    // As Kafka: the configs are shown only to a principal that may DESCRIBE_CONFIGS the topic.
    if !cx.svc.authorize(acl::TOPIC, &info.name, acl::DESCRIBE_CONFIGS) {
        result.configs = None;
        result.topic_config_error_code = error::TOPIC_AUTHORIZATION_FAILED;
        return result;
    }
    if validate_only {
        // The topic does not exist, so the host cannot describe its configs: report the ones the
        // request sets (they passed the host's validation).
        let configs = t
            .configs
            .iter()
            .map(|c| {
                CreatableTopicConfigs::default()
                    .with_name(c.name.clone())
                    .with_value(c.value.clone())
                    .with_read_only(false)
                    .with_config_source(DYNAMIC_TOPIC_CONFIG)
                    .with_is_sensitive(false)
            })
            .collect();
        return result.with_configs(Some(configs));
    }
    match cx.svc.topic_configs(&info.name) {
        Ok(entries) => {
            let configs = entries
                .into_iter()
                .map(|e| {
                    CreatableTopicConfigs::default()
                        .with_config_source(topic_config_source(&e))
                        .with_name(str_bytes(e.name))
                        .with_value(if e.sensitive { None } else { e.value.map(str_bytes) })
                        .with_read_only(e.read_only)
                        .with_is_sensitive(e.sensitive)
                })
                .collect();
            result.configs = Some(configs);
        }
        // The topic was created; only its configs could not be read.
        Err(code) => {
            result.configs = None;
            result.topic_config_error_code = code;
        }
    }
    result
}

fn failed(name: &str, code: ErrorCode, why: String) -> CreatableTopicResult {
    CreatableTopicResult::default()
        .with_name(topic_name(name))
        .with_error_code(code)
        .with_error_message(Some(str_bytes(why)))
        .with_num_partitions(-1)
        .with_replication_factor(-1)
}

pub fn error<S: Services>(cx: &Ctx<'_, S>, code: ErrorCode) -> ApiResult<S> {
    let req: CreateTopicsRequest = cx.decode()?;
    let results = req
        .topics
        .iter()
        .map(|t| {
            CreatableTopicResult::default()
                .with_name(t.name.clone())
                .with_error_code(code)
                .with_error_message(None)
        })
        .collect();
    cx.respond(&CreateTopicsResponse::default().with_topics(results))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::describe_configs::DEFAULT_CONFIG;
    use crate::test_util::call;
    use guise_guest_sdk::stub::StubServices;
    use kafka_protocol::messages::ApiKey;
    use kafka_protocol::messages::create_topics_request::{CreatableReplicaAssignment, CreatableTopicConfig};

    fn topic(name: &str, partitions: i32, rf: i16) -> CreatableTopic {
        CreatableTopic::default()
            .with_name(topic_name(name))
            .with_num_partitions(partitions)
            .with_replication_factor(rf)
    }

    fn create(
        svc: &StubServices,
        version: i16,
        topics: Vec<CreatableTopic>,
        validate_only: bool,
    ) -> CreateTopicsResponse {
        let req = CreateTopicsRequest::default().with_topics(topics).with_validate_only(validate_only);
        call(svc, ApiKey::CreateTopics, version, &req)
    }

    fn summary(resp: &CreateTopicsResponse) -> Vec<(String, ErrorCode)> {
        resp.topics.iter().map(|t| (t.name.as_str().to_string(), t.error_code)).collect()
    }

    fn config(name: &str, value: Option<&str>) -> CreatableTopicConfig {
        CreatableTopicConfig::default().with_name(str_bytes(name)).with_value(value.map(str_bytes))
    }

    #[test]
    fn creates_topics_at_every_version() {
        for v in 2..=7 {
            let svc = StubServices::new();
            let resp = create(&svc, v, vec![topic("a", 3, 1), topic("b", 1, 1)], false);
            assert_eq!(summary(&resp), [("a".into(), 0), ("b".into(), 0)], "v{v}");
            let a = &resp.topics[0];
            assert_eq!(a.error_message, None, "v{v}");
            let info = svc.describe_topic("a").unwrap();
            assert_eq!(info.partitions, 3);
            if v >= 5 {
                assert_eq!((a.num_partitions, a.replication_factor), (3, 1), "v{v}");
                assert_eq!(a.configs.as_ref().map(Vec::len), Some(3), "v{v}");
            }
            let id = if v >= 7 { info.id } else { 0 };
            assert_eq!(a.topic_id.as_u128(), id, "v{v}");
        }
    }

    #[test]
    fn default_partitions_and_replication_at_every_version() {
        let mut svc = StubServices::new();
        svc.settings.default_partitions = 4;
        let resp = create(&svc, 7, vec![topic("d", -1, -1)], false);
        assert_eq!(summary(&resp), [("d".into(), 0)]);
        assert_eq!(resp.topics[0].num_partitions, 4);
        assert_eq!(svc.describe_topic("d").unwrap().partitions, 4);
        // As Kafka's broker, -1 means the default at v2 and v3 too (the schema says v4+).
        let resp = create(
            &svc,
            3,
            vec![topic("e", -1, 1), topic("f", 1, -1), topic("g", 0, -1), topic("h", 0, 0)],
            false,
        );
        assert_eq!(
            summary(&resp),
            [
                ("e".into(), error::NONE),
                ("f".into(), error::NONE),
                ("g".into(), error::INVALID_PARTITIONS),
                ("h".into(), error::INVALID_PARTITIONS)
            ]
        );
        assert_eq!(svc.describe_topic("e").unwrap().partitions, 4);
    }

    #[test]
    fn replication_factor_beyond_the_cluster_is_refused() {
        let svc = StubServices::new();
        let resp = create(&svc, 5, vec![topic("a", 1, 2), topic("b", 1, 0)], false);
        assert_eq!(
            summary(&resp),
            [
                ("a".into(), error::INVALID_REPLICATION_FACTOR),
                ("b".into(), error::INVALID_REPLICATION_FACTOR)
            ]
        );
        let a = &resp.topics[0];
        assert!(a.error_message.as_deref().is_some_and(|m| m.contains("number of brokers (1)")), "{a:?}");
        assert_eq!((a.num_partitions, a.replication_factor), (-1, -1));
        assert!(svc.list_topics().is_empty());
    }

    #[test]
    fn manual_assignments() {
        let svc = StubServices::new();
        let assign = |p: i32, brokers: &[i32]| {
            CreatableReplicaAssignment::default()
                .with_partition_index(p)
                .with_broker_ids(brokers.iter().map(|b| BrokerId(*b)).collect())
        };
        let ok = topic("ok", -1, -1).with_assignments(vec![assign(1, &[0]), assign(0, &[0])]);
        let other_broker = topic("other", -1, -1).with_assignments(vec![assign(0, &[1])]);
        let two_replicas = topic("two", -1, -1).with_assignments(vec![assign(0, &[0, 0])]);
        let gap = topic("gap", -1, -1).with_assignments(vec![assign(0, &[0]), assign(2, &[0])]);
        let both = topic("both", 2, -1).with_assignments(vec![assign(0, &[0])]);
        let resp = create(&svc, 7, vec![ok, other_broker, two_replicas, gap, both], false);
        assert_eq!(
            summary(&resp),
            [
                ("ok".into(), 0),
                ("other".into(), INVALID_REPLICA_ASSIGNMENT),
                ("two".into(), INVALID_REPLICA_ASSIGNMENT),
                ("gap".into(), INVALID_REPLICA_ASSIGNMENT),
                ("both".into(), error::INVALID_REQUEST),
            ]
        );
        assert_eq!(resp.topics[0].num_partitions, 2);
        assert_eq!(svc.describe_topic("ok").unwrap().partitions, 2);
        assert_eq!(svc.list_topics().len(), 1);
    }

    #[test]
    fn configs_are_passed_and_reported() {
        let svc = StubServices::new();
        let t = topic("c", 1, 1).with_configs(vec![config("max.message.bytes", Some("2048"))]);
        let resp = create(&svc, 6, vec![t], false);
        assert_eq!(summary(&resp), [("c".into(), 0)]);
        let configs = resp.topics[0].configs.as_ref().unwrap();
        let got: Vec<(&str, Option<&str>, i8)> =
            configs.iter().map(|c| (c.name.as_str(), c.value.as_deref(), c.config_source)).collect();
        assert_eq!(
            got,
            [
                ("cleanup.policy", Some("delete"), DEFAULT_CONFIG),
                ("max.message.bytes", Some("2048"), DYNAMIC_TOPIC_CONFIG),
                ("segment.bytes", Some("1073741824"), DEFAULT_CONFIG),
            ]
        );
        assert!(configs[0].read_only);
        let unknown = topic("u", 1, 1).with_configs(vec![config("no.such.config", Some("1"))]);
        let null = topic("n", 1, 1).with_configs(vec![config("segment.bytes", None)]);
        let resp = create(&svc, 6, vec![unknown, null], false);
        assert_eq!(
            summary(&resp),
            [("u".into(), error::INVALID_CONFIG), ("n".into(), error::INVALID_CONFIG)]
        );
        assert!(resp.topics[0].error_message.as_deref().is_some_and(|m| m.contains("no.such.config")));
        assert_eq!(svc.list_topics().len(), 1);
    }

    #[test]
    fn configs_need_describe_configs() {
        let svc = StubServices::new();
        svc.deny(guise_guest_sdk::acl::TOPIC, "*", guise_guest_sdk::acl::DESCRIBE_CONFIGS);
        for validate_only in [true, false] {
            let resp = create(&svc, 7, vec![topic("c", 1, 1)], validate_only);
            let c = &resp.topics[0];
            assert_eq!((c.error_code, c.num_partitions), (0, 1), "{validate_only}");
            assert_eq!(c.topic_config_error_code, error::TOPIC_AUTHORIZATION_FAILED, "{validate_only}");
            assert_eq!(c.configs, None, "{validate_only}");
        }
        assert!(svc.describe_topic("c").is_some());
    }

    #[test]
    fn validate_only_creates_nothing() {
        let svc = StubServices::new();
        let t = topic("v", 2, 1).with_configs(vec![config("segment.bytes", Some("1000000"))]);
        let resp = create(&svc, 7, vec![t, topic("bad/name", 1, 1)], true);
        assert_eq!(summary(&resp), [("v".into(), 0), ("bad/name".into(), error::INVALID_TOPIC_EXCEPTION)]);
        assert_eq!(resp.topics[0].num_partitions, 2);
        let configs = resp.topics[0].configs.as_ref().unwrap();
        assert_eq!(configs.len(), 1);
        assert_eq!(
            (configs[0].name.as_str(), configs[0].value.as_deref()),
            ("segment.bytes", Some("1000000"))
        );
        assert!(resp.topics[1].error_message.as_deref().is_some_and(|m| m.contains("illegal")));
        assert!(svc.list_topics().is_empty());
    }

    #[test]
    fn existing_topic_and_duplicates() {
        let svc = StubServices::new();
        svc.create_topic("exists", 1, &[], false).unwrap();
        let resp = create(
            &svc,
            4,
            vec![topic("exists", 1, 1), topic("d", 1, 1), topic("x", 1, 1), topic("d", 2, 1)],
            false,
        );
        let mut got = summary(&resp);
        got.sort();
        assert_eq!(
            got,
            [
                ("d".into(), error::INVALID_REQUEST),
                ("exists".into(), error::TOPIC_ALREADY_EXISTS),
                ("x".into(), 0)
            ]
        );
        assert!(svc.describe_topic("d").is_none());
        assert!(svc.describe_topic("x").is_some());
    }

    #[test]
    fn error_response_covers_every_topic() {
        let svc = StubServices::new();
        let req = CreateTopicsRequest::default().with_topics(vec![topic("a", 1, 1), topic("b", 1, 1)]);
        let bytes = crate::test_util::frame(ApiKey::CreateTopics, 7, &req);
        let raw = crate::test_util::error_response(&svc, bytes, error::REQUEST_TIMED_OUT);
        let resp: CreateTopicsResponse = crate::test_util::decode_response(ApiKey::CreateTopics, 7, &raw);
        assert_eq!(
            summary(&resp),
            [("a".into(), error::REQUEST_TIMED_OUT), ("b".into(), error::REQUEST_TIMED_OUT)]
        );
    }
}
