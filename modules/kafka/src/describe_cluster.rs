//! DescribeCluster v0–v2: the cluster's id, its brokers and its controller (the AdminClient's
//! `describeCluster`; Kafka Connect reads the cluster id with it). A Guise host is its own
//! controller, as a combined KRaft node is. Asking for the controllers' endpoints (endpoint type
//! 2, which Kafka serves only on its controller listeners) is UNSUPPORTED_ENDPOINT_TYPE, as on a
//! Kafka broker.

use crate::context::{ApiResult, Ctx};
use crate::metadata::str_bytes;
use guise_guest_sdk::{ErrorCode, Services, error};
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

/// Kafka's UNSUPPORTED_ENDPOINT_TYPE.
const UNSUPPORTED_ENDPOINT_TYPE: ErrorCode = 119;
/// DescribeCluster's endpoint types.
const ENDPOINT_BROKERS: i8 = 1;

/// The cluster operations a principal may perform, as Kafka reports them with no authorizer:
/// every operation a cluster supports — CREATE (5), ALTER (7), DESCRIBE (8), CLUSTER_ACTION (9),
/// DESCRIBE_CONFIGS (10), ALTER_CONFIGS (11), IDEMPOTENT_WRITE (12).
const CLUSTER_AUTHORIZED_OPERATIONS: i32 = 1 << 5 | 1 << 7 | 1 << 8 | 1 << 9 | 1 << 10 | 1 << 11 | 1 << 12;
/// "Not computed", in the authorized-operations field.
const OPERATIONS_NOT_REQUESTED: i32 = i32::MIN;

pub fn handle<S: Services>(cx: &Ctx<'_, S>) -> ApiResult<S> {
    let req: DescribeClusterRequest = cx.decode()?;
    let svc = cx.svc;
    let endpoint_type = if cx.version >= 1 { req.endpoint_type } else { ENDPOINT_BROKERS };
    if endpoint_type != ENDPOINT_BROKERS {
        return cx.respond(
            &DescribeClusterResponse::default()
                .with_endpoint_type(endpoint_type)
                .with_error_code(UNSUPPORTED_ENDPOINT_TYPE)
                .with_error_message(Some(str_bytes(
                    "The request was sent to an endpoint of type BROKER, but we wanted an endpoint of type CONTROLLER",
                ))),
        );
    }
    let brokers = svc
        .brokers()
        .into_iter()
        .map(|b| {
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(b.node_id))
                .with_host(str_bytes(b.host))
                .with_port(b.port)
                .with_rack(b.rack.map(str_bytes))
        })
        .collect();
    let operations = if req.include_cluster_authorized_operations {
        CLUSTER_AUTHORIZED_OPERATIONS
    } else {
        OPERATIONS_NOT_REQUESTED
    };
    cx.respond(
        &DescribeClusterResponse::default()
            .with_error_code(error::NONE)
            .with_endpoint_type(endpoint_type)
            .with_cluster_id(str_bytes(svc.settings().cluster_id))
            .with_controller_id(BrokerId(svc.self_broker().node_id))
            .with_brokers(brokers)
            .with_cluster_authorized_operations(operations),
    )
}

pub fn error<S: Services>(cx: &Ctx<'_, S>, code: ErrorCode) -> ApiResult<S> {
    cx.respond(&DescribeClusterResponse::default().with_error_code(code).with_controller_id(BrokerId(-1)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::call;
    use guise_guest_sdk::stub::StubServices;
    use kafka_protocol::messages::ApiKey;

    #[test]
    fn lists_this_host_as_broker_and_controller() {
        let svc = StubServices::new();
        for v in 0..=2 {
            let req = DescribeClusterRequest::default().with_endpoint_type(ENDPOINT_BROKERS);
            let resp: DescribeClusterResponse = call(&svc, ApiKey::DescribeCluster, v, &req);
            assert_eq!(resp.error_code, error::NONE, "v{v}");
            assert_eq!(resp.cluster_id.as_str(), "stub-cluster");
            assert_eq!(resp.controller_id, resp.brokers[0].broker_id);
            assert_eq!(resp.brokers.len(), 1);
            assert_eq!(resp.cluster_authorized_operations, OPERATIONS_NOT_REQUESTED);
        }
        let req = DescribeClusterRequest::default().with_include_cluster_authorized_operations(true);
        let resp: DescribeClusterResponse = call(&svc, ApiKey::DescribeCluster, 0, &req);
        assert_eq!(resp.cluster_authorized_operations, CLUSTER_AUTHORIZED_OPERATIONS);
    }

    #[test]
    fn controller_endpoints_are_not_served_here() {
        let svc = StubServices::new();
        let req = DescribeClusterRequest::default().with_endpoint_type(2);
        let resp: DescribeClusterResponse = call(&svc, ApiKey::DescribeCluster, 1, &req);
        assert_eq!(resp.error_code, UNSUPPORTED_ENDPOINT_TYPE);
        assert!(resp.brokers.is_empty());
    }
}
