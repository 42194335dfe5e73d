//! Metadata v1–v12: the cluster's brokers, its id and controller, and the tenant's topics.
//!
//! Every partition is led by the broker this connection talks to, with itself as the only replica
//! and in-sync replica (storage replication, if any, is the storage's business), at leader epoch 0.
//! A requested topic that does not exist is created when both the request (v4+; always before v4)
//! and the host (`auto.create.topics.enable`) allow it, and is then returned like any other.
//! From v10 a requested topic may be named by id instead of by name.
//!
//! ACLs, as Kafka's broker applies them: a topic named in the request that the principal may
//! not DESCRIBE gets TOPIC_AUTHORIZATION_FAILED (whether or not it exists); auto-creating a
//! missing topic needs CREATE on the cluster or on the topic, else TOPIC_AUTHORIZATION_FAILED;
//! a request for all topics lists what the host lists (the topics the principal may describe).
//! A topic named by id the principal may not describe is unknown to the host, so it is
//! UNKNOWN_TOPIC_ID here (Kafka answers TOPIC_AUTHORIZATION_FAILED). The authorized-operations
//! fields (v8+, cluster's v8–v10) are computed with the host's authorizer when asked for.

use crate::acl_common::{
    CLUSTER_OPERATIONS, OPERATIONS_NOT_REQUESTED, TOPIC_OPERATIONS, authorized_operations,
};
use crate::context::{ApiResult, Ctx};
use guise_guest_sdk::{ErrorCode, Services, TopicInfo, acl, error};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use std::str::FromStr;

/// A topic id as the codec's UUID type. (`kafka-protocol` does not re-export `uuid`, so the
/// type is reached through `FromStr` and inference; a 32-digit hex string always parses.)
pub(crate) fn topic_uuid<U: FromStr + Default>(id: u128) -> U {
    format!("{id:032x}").parse().unwrap_or_default()
}

/// An owned string as the codec's string type.
pub(crate) fn str_bytes(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

/// The leader epoch of every partition: one host leads everything and never changes, so the
/// epoch stays 0 (the first epoch Kafka gives a partition). Metadata, ListOffsets and
/// OffsetForLeaderEpoch all report it.
pub(crate) const LEADER_EPOCH: i32 = 0;

pub(crate) fn topic_name(s: impl Into<String>) -> TopicName {
    TopicName(str_bytes(s))
}

/// One requested topic: by name, or (v10+) by id.
#[derive(PartialEq)]
enum Wanted {
    Name(String),
    Id(u128),
}

pub fn handle<S: Services>(cx: &Ctx<'_, S>) -> ApiResult<S> {
    let req: MetadataRequest = cx.decode()?;
    let svc = cx.svc;
    let v = cx.version;
    let me = svc.self_broker();
    let settings = svc.settings();
    let may_create = settings.auto_create_topics && (v < 4 || req.allow_auto_topic_creation);
    let with_operations = v >= 8 && req.include_topic_authorized_operations;
    let found = |info: &TopicInfo| {
        let operations = if with_operations {
            authorized_operations(svc, acl::TOPIC, &info.name, TOPIC_OPERATIONS)
        } else {
            OPERATIONS_NOT_REQUESTED
        };
        topic_found(info, me.node_id, operations)
    };

    let topics = match &req.topics {
        None => svc.list_topics().iter().map(found).collect(),
        Some(requested) => {
            let mut wanted: Vec<Wanted> = Vec::with_capacity(requested.len());
            for t in requested {
                let id = t.topic_id.as_u128();
                // Kafka looks topics up by id when an id is given (v10+), else by name; asking for
                // the same topic twice answers it once.
                let w = match &t.name {
                    _ if v >= 10 && id != 0 => Wanted::Id(id),
                    Some(name) => Wanted::Name(name.as_str().to_string()),
                    None => Wanted::Id(id),
                };
                if !wanted.contains(&w) {
                    wanted.push(w);
                }
            }
            wanted
                .iter()
                .map(|w| match w {
                    Wanted::Id(id) => match svc.topic_by_id(*id) {
                        Some(info) => found(&info),
                        None => topic_error(v, None, *id, error::UNKNOWN_TOPIC_ID),
                    },
                    // Not disclosed, whether or not it exists.
                    Wanted::Name(name) if !svc.authorize(acl::TOPIC, name, acl::DESCRIBE) => {
                        topic_error(v, Some(name), 0, error::TOPIC_AUTHORIZATION_FAILED)
                    }
                    Wanted::Name(name) => match svc.describe_topic(name) {
                        Some(info) => found(&info),
                        None => match missing_topic(svc, name, may_create, settings.default_partitions) {
                            Ok(info) => found(&info),
                            Err(code) => topic_error(v, Some(name), 0, code),
                        },
                    },
                })
                .collect()
        }
    };

    // The cluster's operations (v8–v10): none without DESCRIBE on it, as Kafka reports.
    let cluster_operations = if (8..=10).contains(&v) && req.include_cluster_authorized_operations {
        if svc.authorize(acl::CLUSTER, acl::CLUSTER_NAME, acl::DESCRIBE) {
            authorized_operations(svc, acl::CLUSTER, acl::CLUSTER_NAME, CLUSTER_OPERATIONS)
        } else {
            0
        }
    } else {
        OPERATIONS_NOT_REQUESTED
    };
    let brokers = svc
        .brokers()
        .into_iter()
        .map(|b| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(b.node_id))
                .with_host(str_bytes(b.host))
                .with_port(b.port)
                .with_rack(b.rack.map(str_bytes))
        })
        .collect();
    cx.respond(
        &MetadataResponse::default()
            .with_brokers(brokers)
            .with_cluster_id(Some(str_bytes(settings.cluster_id)))
            .with_controller_id(BrokerId(me.node_id))
            .with_topics(topics)
            .with_cluster_authorized_operations(cluster_operations),
    )
}

/// A requested topic that does not exist: create it if allowed (by the request, the host and the
/// principal's ACLs), else say why it is missing.
fn missing_topic<S: Services>(
    svc: &S,
    name: &str,
    may_create: bool,
    partitions: i32,
) -> Result<TopicInfo, ErrorCode> {
    if may_create
        && !svc.authorize(acl::CLUSTER, acl::CLUSTER_NAME, acl::CREATE)
        && !svc.authorize(acl::TOPIC, name, acl::CREATE)
    {
        return Err(error::TOPIC_AUTHORIZATION_FAILED);
    }
    if may_create {
        return match svc.create_topic(name, partitions, &[], false) {
            Ok(info) => Ok(info),
            // Created by someone else in the meantime.
            Err(error::TOPIC_ALREADY_EXISTS) => {
                svc.describe_topic(name).ok_or(error::UNKNOWN_TOPIC_OR_PARTITION)
            }
            Err(code) => Err(code),
        };
    }
    // As Kafka: an illegal name is INVALID_TOPIC_EXCEPTION, a legal one UNKNOWN_TOPIC_OR_PARTITION.
    // The host owns the naming rules; a validate-only creation asks it without side effects.
    match svc.create_topic(name, partitions.max(1), &[], true) {
        Err(error::INVALID_TOPIC_EXCEPTION) => Err(error::INVALID_TOPIC_EXCEPTION),
        _ => Err(error::UNKNOWN_TOPIC_OR_PARTITION),
    }
}

fn topic_found(info: &TopicInfo, node: i32, operations: i32) -> MetadataResponseTopic {
    let partitions = (0..info.partitions.max(0))
        .map(|p| {
            MetadataResponsePartition::default()
                .with_error_code(error::NONE)
                .with_partition_index(p)
                .with_leader_id(BrokerId(node))
                .with_leader_epoch(LEADER_EPOCH)
                .with_replica_nodes(vec![BrokerId(node)])
                .with_isr_nodes(vec![BrokerId(node)])
                .with_offline_replicas(vec![])
        })
        .collect();
    // topic_id is only written from v10; the codec skips it silently below that.
    MetadataResponseTopic::default()
        .with_error_code(error::NONE)
        .with_name(Some(topic_name(info.name.clone())))
        .with_topic_id(topic_uuid(info.id))
        .with_is_internal(info.internal)
        .with_partitions(partitions)
        .with_topic_authorized_operations(operations)
}

/// A topic entry carrying `code`. The name is nullable only from v12 (an unknown id has none);
/// before that it is written as an empty string, as Kafka does.
fn topic_error(version: i16, name: Option<&str>, id: u128, code: ErrorCode) -> MetadataResponseTopic {
    let name = match name {
        Some(n) => Some(topic_name(n)),
        None if version >= 12 => None,
        None => Some(topic_name("")),
    };
    MetadataResponseTopic::default()
        .with_error_code(code)
        .with_name(name)
        .with_topic_id(topic_uuid(id))
        .with_is_internal(false)
        .with_partitions(vec![])
}

/// Kafka's error response for Metadata: every requested topic carries `code` (a request for all
/// topics gets an empty list), with no brokers.
pub fn error<S: Services>(cx: &Ctx<'_, S>, code: ErrorCode) -> ApiResult<S> {
    let req: MetadataRequest = cx.decode()?;
    let topics = req
        .topics
        .unwrap_or_default()
        .iter()
        .map(|t| topic_error(cx.version, t.name.as_ref().map(|n| n.as_str()), t.topic_id.as_u128(), code))
        .collect();
    cx.respond(&MetadataResponse::default().with_topics(topics))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{call, frame, run};
    use guise_guest_sdk::stub::StubServices;
    use guise_guest_sdk::{Outcome, Services};
    use kafka_protocol::messages::ApiKey;
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;

    fn by_name(names: &[&str]) -> Option<Vec<MetadataRequestTopic>> {
        Some(names.iter().map(|n| MetadataRequestTopic::default().with_name(Some(topic_name(*n)))).collect())
    }

    fn metadata(svc: &StubServices, version: i16, req: &MetadataRequest) -> MetadataResponse {
        call(svc, ApiKey::Metadata, version, req)
    }

    fn name_of(t: &MetadataResponseTopic) -> &str {
        t.name.as_ref().map(|n| n.as_str()).unwrap_or("<null>")
    }

    fn svc_with(topics: &[(&str, i32)]) -> StubServices {
        let svc = StubServices::new();
        for (name, partitions) in topics {
            svc.create_topic(name, *partitions, &[], false).unwrap();
        }
        svc
    }

    #[test]
    fn all_topics_with_brokers_and_cluster() {
        let mut svc = svc_with(&[("a", 2), ("b", 1)]);
        svc.broker.node_id = 7;
        svc.broker.rack = Some("r1".into());
        let resp = metadata(&svc, 12, &MetadataRequest::default().with_topics(None));
        assert_eq!(resp.brokers.len(), 1);
        let b = &resp.brokers[0];
        assert_eq!((b.node_id.0, b.host.as_str(), b.port), (7, "127.0.0.1", 9092));
        assert_eq!(b.rack.as_deref(), Some("r1"));
        assert_eq!(resp.cluster_id.as_deref(), Some("stub-cluster"));
        assert_eq!(resp.controller_id.0, 7);
        assert_eq!(resp.cluster_authorized_operations, i32::MIN);
        let names: Vec<_> = resp.topics.iter().map(name_of).collect();
        assert_eq!(names, ["a", "b"]);
        let a = &resp.topics[0];
        assert_eq!(a.error_code, 0);
        assert!(!a.is_internal);
        assert_eq!(a.topic_authorized_operations, i32::MIN);
        assert_eq!(a.partitions.len(), 2);
        for (i, p) in a.partitions.iter().enumerate() {
            assert_eq!(p.error_code, 0);
            assert_eq!(p.partition_index, i as i32);
            assert_eq!(p.leader_id.0, 7);
            assert_eq!(p.leader_epoch, 0);
            assert_eq!(p.replica_nodes, vec![BrokerId(7)]);
            assert_eq!(p.isr_nodes, vec![BrokerId(7)]);
            assert!(p.offline_replicas.is_empty());
        }
        // Nothing was created by asking.
        assert_eq!(svc.list_topics().len(), 2);
    }

    #[test]
    fn empty_list_means_no_topics() {
        let svc = svc_with(&[("a", 1)]);
        for v in [1, 4, 9, 12] {
            let resp = metadata(&svc, v, &MetadataRequest::default().with_topics(Some(vec![])));
            assert!(resp.topics.is_empty(), "v{v}");
            assert_eq!(resp.brokers.len(), 1, "v{v}");
        }
    }

    #[test]
    fn named_topics_in_order_and_deduplicated() {
        let svc = svc_with(&[("a", 1), ("b", 3), ("c", 1)]);
        let resp = metadata(&svc, 9, &MetadataRequest::default().with_topics(by_name(&["b", "a", "b"])));
        let got: Vec<_> =
            resp.topics.iter().map(|t| (name_of(t), t.error_code, t.partitions.len())).collect();
        assert_eq!(got, [("b", 0, 3), ("a", 0, 1)]);
    }

    #[test]
    fn auto_creates_missing_topic_with_default_partitions() {
        let mut svc = StubServices::new();
        svc.settings.default_partitions = 3;
        let resp = metadata(&svc, 12, &MetadataRequest::default().with_topics(by_name(&["new"])));
        assert_eq!(resp.topics.len(), 1);
        assert_eq!(resp.topics[0].error_code, 0);
        assert_eq!(resp.topics[0].partitions.len(), 3);
        assert_eq!(svc.describe_topic("new").map(|t| t.partitions), Some(3));
        // Before v4 there is no allow_auto_topic_creation field: creation is always requested.
        let resp = metadata(&svc, 1, &MetadataRequest::default().with_topics(by_name(&["old-client"])));
        assert_eq!(resp.topics[0].error_code, 0);
        assert!(svc.describe_topic("old-client").is_some());
    }

    #[test]
    fn no_auto_create_when_host_disables_it() {
        let mut svc = StubServices::new();
        svc.settings.auto_create_topics = false;
        for v in [1, 4, 12] {
            let resp = metadata(
                &svc,
                v,
                &MetadataRequest::default().with_topics(by_name(&["missing", "bad name!"])),
            );
            let got: Vec<_> =
                resp.topics.iter().map(|t| (name_of(t), t.error_code, t.partitions.len())).collect();
            assert_eq!(
                got,
                [
                    ("missing", error::UNKNOWN_TOPIC_OR_PARTITION, 0),
                    ("bad name!", error::INVALID_TOPIC_EXCEPTION, 0)
                ],
                "v{v}"
            );
        }
        assert!(svc.list_topics().is_empty());
    }

    #[test]
    fn no_auto_create_when_request_forbids_it() {
        let svc = StubServices::new();
        let req = MetadataRequest::default()
            .with_topics(by_name(&["missing"]))
            .with_allow_auto_topic_creation(false);
        for v in [4, 8, 12] {
            let resp = metadata(&svc, v, &req);
            assert_eq!(resp.topics[0].error_code, error::UNKNOWN_TOPIC_OR_PARTITION, "v{v}");
        }
        assert!(svc.list_topics().is_empty());
    }

    #[test]
    fn auto_create_of_an_invalid_name_fails() {
        let svc = StubServices::new();
        let resp = metadata(&svc, 12, &MetadataRequest::default().with_topics(by_name(&["no/slashes"])));
        assert_eq!(resp.topics[0].error_code, error::INVALID_TOPIC_EXCEPTION);
        assert_eq!(name_of(&resp.topics[0]), "no/slashes");
        assert!(svc.list_topics().is_empty());
    }

    #[test]
    fn topic_ids_are_stable_and_non_zero() {
        let svc = svc_with(&[("a", 1), ("b", 1)]);
        let req = MetadataRequest::default().with_topics(None);
        let first = metadata(&svc, 10, &req);
        let second = metadata(&svc, 12, &req);
        let ids: Vec<u128> = first.topics.iter().map(|t| t.topic_id.as_u128()).collect();
        assert!(ids.iter().all(|id| *id != 0), "{ids:?}");
        assert_ne!(ids[0], ids[1]);
        assert_eq!(ids, second.topics.iter().map(|t| t.topic_id.as_u128()).collect::<Vec<_>>());
        assert_eq!(ids[0], svc.describe_topic("a").unwrap().id);
        // Below v10 there is no topic id on the wire.
        let v9 = metadata(&svc, 9, &req);
        assert!(v9.topics.iter().all(|t| t.topic_id.as_u128() == 0));
    }

    #[test]
    fn topics_by_id() {
        let svc = svc_with(&[("a", 2)]);
        let id = svc.describe_topic("a").unwrap().id;
        let req = MetadataRequest::default().with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(None).with_topic_id(topic_uuid(id)),
            MetadataRequestTopic::default().with_name(None).with_topic_id(topic_uuid(0xdead)),
        ]));
        let resp = metadata(&svc, 12, &req);
        assert_eq!(resp.topics.len(), 2);
        assert_eq!((name_of(&resp.topics[0]), resp.topics[0].error_code), ("a", 0));
        assert_eq!(resp.topics[0].topic_id.as_u128(), id);
        assert_eq!(resp.topics[0].partitions.len(), 2);
        assert_eq!(resp.topics[1].error_code, error::UNKNOWN_TOPIC_ID);
        assert_eq!(resp.topics[1].name, None);
        assert_eq!(resp.topics[1].topic_id.as_u128(), 0xdead);
        // v10 and v11 cannot carry a null name in the response: empty string instead.
        let resp = metadata(&svc, 10, &req);
        assert_eq!(resp.topics[1].error_code, error::UNKNOWN_TOPIC_ID);
        assert_eq!(name_of(&resp.topics[1]), "");
        // An id never auto-creates anything.
        assert_eq!(svc.list_topics().len(), 1);
    }

    #[test]
    fn authorized_operations_when_asked() {
        let svc = svc_with(&[("a", 1)]);
        let req = MetadataRequest::default()
            .with_topics(by_name(&["a"]))
            .with_include_topic_authorized_operations(true)
            .with_include_cluster_authorized_operations(true);
        // Without an authorizer: every operation of a topic, and of the cluster (v8–v10 only).
        for v in 8..=12 {
            // v11 dropped the cluster's flag.
            let req = req.clone().with_include_cluster_authorized_operations(v <= 10);
            let resp = metadata(&svc, v, &req);
            assert_eq!(resp.topics[0].topic_authorized_operations, 0b1101_1111_1000, "v{v}");
            let cluster = if v <= 10 { 0b1_1111_1010_0000 } else { i32::MIN };
            assert_eq!(resp.cluster_authorized_operations, cluster, "v{v}");
        }
        // Not asked: not computed.
        let resp = metadata(&svc, 10, &MetadataRequest::default().with_topics(by_name(&["a"])));
        assert_eq!(resp.topics[0].topic_authorized_operations, i32::MIN);
        assert_eq!(resp.cluster_authorized_operations, i32::MIN);
    }

    #[test]
    fn authorized_operations_follow_the_acls() {
        let svc = svc_with(&[("a", 1)]);
        svc.deny(acl::TOPIC, "a", acl::WRITE);
        svc.deny(acl::TOPIC, "a", acl::ALTER_CONFIGS);
        svc.deny(acl::CLUSTER, acl::CLUSTER_NAME, acl::IDEMPOTENT_WRITE);
        let req = MetadataRequest::default()
            .with_topics(by_name(&["a"]))
            .with_include_topic_authorized_operations(true)
            .with_include_cluster_authorized_operations(true);
        let resp = metadata(&svc, 10, &req);
        assert_eq!(resp.topics[0].topic_authorized_operations, 0b0101_1110_1000);
        assert_eq!(resp.cluster_authorized_operations, 0b0_1111_1010_0000);
        // Without DESCRIBE on the cluster, none of its operations are reported.
        svc.deny(acl::CLUSTER, acl::CLUSTER_NAME, acl::DESCRIBE);
        assert_eq!(metadata(&svc, 9, &req).cluster_authorized_operations, 0);
    }

    #[test]
    fn topics_the_principal_may_not_describe() {
        let svc = svc_with(&[("a", 1), ("secret", 2)]);
        svc.deny(acl::TOPIC, "secret", acl::DESCRIBE);
        svc.deny(acl::TOPIC, "ghost", acl::DESCRIBE);
        for v in [1, 4, 9, 10, 12] {
            // Listing all topics: it is left out (the host does not list it).
            let all = metadata(&svc, v, &MetadataRequest::default().with_topics(None));
            assert_eq!(all.topics.iter().map(name_of).collect::<Vec<_>>(), ["a"], "v{v}");
            // Named: refused with no id or partitions, whether it exists or not, never created.
            let named = metadata(
                &svc,
                v,
                &MetadataRequest::default().with_topics(by_name(&["secret", "ghost", "a"])),
            );
            let got: Vec<_> = named
                .topics
                .iter()
                .map(|t| (name_of(t), t.error_code, t.partitions.len(), t.topic_id.as_u128()))
                .collect();
            let refused = error::TOPIC_AUTHORIZATION_FAILED;
            assert_eq!(got[..2], [("secret", refused, 0, 0), ("ghost", refused, 0, 0)], "v{v}");
            assert_eq!((got[2].0, got[2].1), ("a", 0), "v{v}");
        }
        svc.acls.borrow_mut().take();
        assert!(svc.describe_topic("ghost").is_none());
    }

    #[test]
    fn auto_creation_needs_create_on_the_cluster_or_the_topic() {
        let svc = StubServices::new();
        svc.deny(acl::CLUSTER, acl::CLUSTER_NAME, acl::CREATE);
        svc.deny(acl::TOPIC, "no", acl::CREATE);
        let resp = metadata(&svc, 12, &MetadataRequest::default().with_topics(by_name(&["no", "yes"])));
        let got: Vec<_> =
            resp.topics.iter().map(|t| (name_of(t), t.error_code, t.partitions.len())).collect();
        assert_eq!(got, [("no", error::TOPIC_AUTHORIZATION_FAILED, 0), ("yes", 0, 1)]);
        assert!(svc.describe_topic("no").is_none());
        // Without auto-creation, a missing topic is unknown, as before.
        let req =
            MetadataRequest::default().with_topics(by_name(&["no"])).with_allow_auto_topic_creation(false);
        assert_eq!(metadata(&svc, 12, &req).topics[0].error_code, error::UNKNOWN_TOPIC_OR_PARTITION);
        // CREATE on the cluster is enough.
        let svc = StubServices::new();
        svc.deny(acl::TOPIC, "*", acl::CREATE);
        let resp = metadata(&svc, 12, &MetadataRequest::default().with_topics(by_name(&["made"])));
        assert_eq!(resp.topics[0].error_code, 0);
    }

    #[test]
    fn decodes_at_every_version() {
        let svc = svc_with(&[("a", 2)]);
        for v in 1..=12 {
            let resp = metadata(&svc, v, &MetadataRequest::default().with_topics(by_name(&["a"])));
            assert_eq!(resp.topics.len(), 1, "v{v}");
            assert_eq!(name_of(&resp.topics[0]), "a", "v{v}");
            assert_eq!(resp.topics[0].partitions.len(), 2, "v{v}");
            assert_eq!(resp.brokers[0].port, 9092, "v{v}");
            assert_eq!(resp.controller_id.0, 0, "v{v}");
            let cluster = if v >= 2 { Some("stub-cluster") } else { None };
            assert_eq!(resp.cluster_id.as_deref(), cluster, "v{v}");
            let all = metadata(&svc, v, &MetadataRequest::default().with_topics(None));
            assert_eq!(all.topics.len(), 1, "v{v}");
        }
    }

    #[test]
    fn version_outside_range_closes() {
        let svc = StubServices::new();
        let out = run(&svc, frame(ApiKey::Metadata, 0, &MetadataRequest::default().with_topics(None)));
        assert!(matches!(out, Outcome::Close(_)), "{out:?}");
    }

    #[test]
    fn error_response_names_every_requested_topic() {
        let svc = StubServices::new();
        let bytes =
            frame(ApiKey::Metadata, 12, &MetadataRequest::default().with_topics(by_name(&["x", "y"])));
        let segments = crate::test_util::error_response(&svc, bytes, error::UNKNOWN_SERVER_ERROR);
        let resp: MetadataResponse = crate::test_util::decode_response(ApiKey::Metadata, 12, &segments);
        let got: Vec<_> = resp.topics.iter().map(|t| (name_of(t), t.error_code)).collect();
        assert_eq!(got, [("x", error::UNKNOWN_SERVER_ERROR), ("y", error::UNKNOWN_SERVER_ERROR)]);
    }
}
