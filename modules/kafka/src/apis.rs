//! The one table of the APIs this translator implements: for each, its key, its versions and its
//! module (whose `handle` and `error` serve it). Dispatch, the error responses and ApiVersions are
//! all generated from it, so the server advertises exactly what it serves and no API can be half
//! added; the claim check needs nothing here, its schemas come from Kafka's specs (`claims`). A
//! request outside the table closes the connection, as Kafka's broker does.

use crate::context::{ApiResult, Ctx};
use guise_guest_sdk::{ErrorCode, Services};

macro_rules! apis {
    ($( $key:literal $name:literal $min:literal ..= $max:literal => $module:ident; )*) => {
        /// (api key, min version, max version), in key order.
        pub const SUPPORTED: &[(i16, i16, i16)] = &[$(($key, $min, $max)),*];

        /// The API's name, as Kafka's protocol guide spells it.
        pub fn name(api_key: i16) -> Option<&'static str> {
            match api_key {
                $($key => Some($name),)*
                _ => None,
            }
        }

        /// Run the handler of `cx`'s API.
        pub(crate) fn handle<S: Services>(cx: &Ctx<'_, S>) -> ApiResult<S> {
            match cx.api_key {
                $($key => crate::$module::handle(cx),)*
                key => Err(format!("api key {key} has no handler")),
            }
        }

        /// The error response of `cx`'s API with `code` in every entry; None for an API not in
        /// the table.
        pub(crate) fn error<S: Services>(cx: &Ctx<'_, S>, code: ErrorCode) -> Option<ApiResult<S>> {
            match cx.api_key {
                $($key => Some(crate::$module::error(cx, code)),)*
                _ => None,
            }
        }
    };
}

apis! {
    0 "Produce" 3..=12 => produce;
    1 "Fetch" 4..=12 => fetch;
    2 "ListOffsets" 1..=7 => list_offsets;
    3 "Metadata" 1..=12 => metadata;
    8 "OffsetCommit" 2..=8 => offset_commit;
    9 "OffsetFetch" 1..=8 => offset_fetch;
    10 "FindCoordinator" 0..=4 => find_coordinator;
    11 "JoinGroup" 0..=9 => join_group;
    12 "Heartbeat" 0..=4 => heartbeat;
    13 "LeaveGroup" 0..=5 => leave_group;
    14 "SyncGroup" 0..=5 => sync_group;
    15 "DescribeGroups" 0..=6 => describe_groups;
    16 "ListGroups" 0..=4 => list_groups;
    17 "SaslHandshake" 0..=1 => sasl_handshake;
    18 "ApiVersions" 0..=4 => api_versions;
    19 "CreateTopics" 2..=7 => create_topics;
    20 "DeleteTopics" 1..=6 => delete_topics;
    21 "DeleteRecords" 0..=2 => delete_records;
    22 "InitProducerId" 0..=5 => init_producer_id;
    23 "OffsetForLeaderEpoch" 2..=4 => offset_for_leader_epoch;
    24 "AddPartitionsToTxn" 0..=3 => add_partitions_to_txn;
    25 "AddOffsetsToTxn" 0..=4 => add_offsets_to_txn;
    26 "EndTxn" 0..=5 => end_txn;
    28 "TxnOffsetCommit" 0..=5 => txn_offset_commit;
    29 "DescribeAcls" 1..=3 => describe_acls;
    30 "CreateAcls" 1..=3 => create_acls;
    31 "DeleteAcls" 1..=3 => delete_acls;
    32 "DescribeConfigs" 1..=4 => describe_configs;
    33 "AlterConfigs" 0..=2 => alter_configs;
    35 "DescribeLogDirs" 1..=4 => describe_log_dirs;
    36 "SaslAuthenticate" 0..=2 => sasl_authenticate;
    37 "CreatePartitions" 0..=3 => create_partitions;
    42 "DeleteGroups" 0..=2 => delete_groups;
    44 "IncrementalAlterConfigs" 0..=1 => incremental_alter_configs;
    47 "OffsetDelete" 0..=0 => offset_delete;
    48 "DescribeClientQuotas" 0..=1 => describe_client_quotas;
    49 "AlterClientQuotas" 0..=1 => alter_client_quotas;
    50 "DescribeUserScramCredentials" 0..=0 => describe_user_scram_credentials;
    51 "AlterUserScramCredentials" 0..=0 => alter_user_scram_credentials;
    60 "DescribeCluster" 0..=2 => describe_cluster;
    61 "DescribeProducers" 0..=0 => describe_producers;
    65 "DescribeTransactions" 0..=0 => describe_transactions;
    66 "ListTransactions" 0..=2 => list_transactions;
    75 "DescribeTopicPartitions" 0..=0 => describe_topic_partitions;
}

/// The supported version range of `api_key`, if it is implemented.
pub fn range(api_key: i16) -> Option<(i16, i16)> {
    SUPPORTED.iter().find(|(k, _, _)| *k == api_key).map(|&(_, min, max)| (min, max))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::ApiKey;

    #[test]
    fn the_table_matches_kafka_protocol() {
        for &(key, min, max) in SUPPORTED {
            let api = ApiKey::try_from(key).expect("a known key");
            assert!(min <= max, "{key}");
            assert!(max <= api.valid_versions().max, "{key} v{max} is beyond the codec");
            assert_eq!(name(key).unwrap(), format!("{api:?}"), "{key}");
            // Kafka's spec (the claims schema) defines every served version, and says which are
            // flexible exactly as the codec's request header does.
            let spec = crate::claims::request(key).expect("a request spec");
            for v in min..=max {
                assert!(spec.valid.contains(v), "{key} v{v} is not in Kafka's spec");
                assert_eq!(spec.flexible.contains(v), api.request_header_version(v) >= 2, "{key} v{v}");
            }
        }
        assert!(SUPPORTED.windows(2).all(|w| w[0].0 < w[1].0), "in key order");
    }
}
