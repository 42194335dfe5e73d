//! The one table of the APIs this translator implements: for each, its key, its versions, the
//! first flexible version, its module (whose `handle` and `error` serve it) and its claim walker
//! (`claims`). Dispatch, the error responses, ApiVersions and the claim check are all generated
//! from it, so the server advertises exactly what it serves and no API can be half added. A
//! request outside the table closes the connection, as Kafka's broker does.

use crate::claims::{self, Step, Walk};
use crate::context::{ApiResult, Ctx};
use guise_guest_sdk::{ErrorCode, Services};

macro_rules! apis {
    ($( $key:literal $name:literal $min:literal ..= $max:literal, flexible $flex:expr => $module:ident; )*) => {
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

        /// The first flexible version and the claim walker of `api_key`'s request.
        pub(crate) fn walker(api_key: i16) -> Option<(i16, fn(&mut Walk<'_>, i16) -> Step)> {
            match api_key {
                $($key => Some(($flex, claims::$module as fn(&mut Walk<'_>, i16) -> Step)),)*
                _ => None,
            }
        }
    };
}

apis! {
    0 "Produce" 3..=9, flexible 9 => produce;
    1 "Fetch" 4..=12, flexible 12 => fetch;
    2 "ListOffsets" 1..=7, flexible 6 => list_offsets;
    3 "Metadata" 1..=12, flexible 9 => metadata;
    8 "OffsetCommit" 2..=8, flexible 8 => offset_commit;
    9 "OffsetFetch" 1..=8, flexible 6 => offset_fetch;
    10 "FindCoordinator" 0..=4, flexible 3 => find_coordinator;
    11 "JoinGroup" 0..=9, flexible 6 => join_group;
    12 "Heartbeat" 0..=4, flexible 4 => heartbeat;
    13 "LeaveGroup" 0..=5, flexible 4 => leave_group;
    14 "SyncGroup" 0..=5, flexible 4 => sync_group;
    15 "DescribeGroups" 0..=5, flexible 5 => describe_groups;
    16 "ListGroups" 0..=4, flexible 3 => list_groups;
    18 "ApiVersions" 0..=4, flexible 3 => api_versions;
    19 "CreateTopics" 2..=7, flexible 5 => create_topics;
    20 "DeleteTopics" 1..=6, flexible 4 => delete_topics;
    22 "InitProducerId" 0..=4, flexible 2 => init_producer_id;
    32 "DescribeConfigs" 1..=4, flexible 4 => describe_configs;
    37 "CreatePartitions" 0..=3, flexible 2 => create_partitions;
    42 "DeleteGroups" 0..=2, flexible 2 => delete_groups;
    // OffsetDelete has no flexible version.
    47 "OffsetDelete" 0..=0, flexible i16::MAX => offset_delete;
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
            let flex = walker(key).unwrap().0;
            // The first flexible version, as the codec's request header says it.
            let first = (min..=max).find(|&v| api.request_header_version(v) >= 2).unwrap_or(i16::MAX);
            assert!(
                flex == first || (first == i16::MAX && flex > max),
                "{key}: flexible from {flex}, codec says {first}"
            );
        }
        assert!(SUPPORTED.windows(2).all(|w| w[0].0 < w[1].0), "in key order");
    }
}
