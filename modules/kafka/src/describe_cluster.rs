//! DescribeCluster v0–v2: the cluster's id, its brokers and its controller (the AdminClient's
//! `describeCluster`; Kafka Connect reads the cluster id with it). A Guise host is its own
//! controller, as a combined KRaft node is. Asking for the controllers' endpoints (endpoint type
//! 2, which Kafka serves only on its controller listeners) is UNSUPPORTED_ENDPOINT_TYPE, as on a
//! Kafka broker. The cluster's authorized operations, when asked for, come from the host's
//! authorizer: none without DESCRIBE on the cluster, as Kafka reports.

use crate::acl_common::{CLUSTER_OPERATIONS, OPERATIONS_NOT_REQUESTED, authorized_operations};
use crate::context::{ApiResult, Ctx};
use crate::metadata::str_bytes;
use guise_guest_sdk::{ErrorCode, Services, acl, error};
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

/// Kafka's UNSUPPORTED_ENDPOINT_TYPE.
const UNSUPPORTED_ENDPOINT_TYPE: ErrorCode = 119;
/// DescribeCluster's endpoint types.
const ENDPOINT_BROKERS: i8 = 1;

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
    let operations = if !req.include_cluster_authorized_operations {
        OPERATIONS_NOT_REQUESTED
    } else if svc.authorize(acl::CLUSTER, acl::CLUSTER_NAME, acl::DESCRIBE) {
        authorized_operations(svc, acl::CLUSTER, acl::CLUSTER_NAME, CLUSTER_OPERATIONS)
    } else {
        0
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
        // Without an authorizer, every operation a cluster supports.
        let req = DescribeClusterRequest::default().with_include_cluster_authorized_operations(true);
        let resp: DescribeClusterResponse = call(&svc, ApiKey::DescribeCluster, 0, &req);
        assert_eq!(
            resp.cluster_authorized_operations,
            1 << 5 | 1 << 7 | 1 << 8 | 1 << 9 | 1 << 10 | 1 << 11 | 1 << 12
        );
    }

    #[test]
    fn cluster_operations_follow_the_acls() {
        let svc = StubServices::new();
        svc.deny(acl::CLUSTER, acl::CLUSTER_NAME, acl::ALTER);
        svc.deny(acl::CLUSTER, acl::CLUSTER_NAME, acl::CLUSTER_ACTION);
        let req = DescribeClusterRequest::default().with_include_cluster_authorized_operations(true);
        let resp: DescribeClusterResponse = call(&svc, ApiKey::DescribeCluster, 2, &req);
        assert_eq!(resp.cluster_authorized_operations, 1 << 5 | 1 << 8 | 1 << 10 | 1 << 11 | 1 << 12);
        // Without DESCRIBE on the cluster: none, though the rest is answered.
        svc.deny(acl::CLUSTER, acl::CLUSTER_NAME, acl::DESCRIBE);
        let resp: DescribeClusterResponse = call(&svc, ApiKey::DescribeCluster, 2, &req);
        assert_eq!(resp.cluster_authorized_operations, 0);
        assert_eq!((resp.error_code, resp.brokers.len()), (error::NONE, 1));
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
