//! The APIs this translator implements, and the versions of each. ApiVersions advertises exactly
//! this table, and a request outside it closes the connection, as Kafka's broker does.

/// (api key, min version, max version).
pub const SUPPORTED: &[(i16, i16, i16)] = &[
    (0, 3, 9),  // Produce
    (1, 4, 12), // Fetch
    (2, 1, 7),  // ListOffsets
    (3, 1, 12), // Metadata
    (8, 2, 8),  // OffsetCommit
    (9, 1, 8),  // OffsetFetch
    (10, 0, 4), // FindCoordinator
    (11, 0, 9), // JoinGroup
    (12, 0, 4), // Heartbeat
    (13, 0, 5), // LeaveGroup
    (14, 0, 5), // SyncGroup
    (15, 0, 5), // DescribeGroups
    (16, 0, 4), // ListGroups
    (18, 0, 4), // ApiVersions
    (19, 2, 7), // CreateTopics
    (20, 1, 6), // DeleteTopics
    (22, 0, 4), // InitProducerId
    (32, 1, 4), // DescribeConfigs
    (37, 0, 3), // CreatePartitions
    (42, 0, 2), // DeleteGroups
    (47, 0, 0), // OffsetDelete
];

/// The supported version range of `api_key`, if it is implemented.
pub fn range(api_key: i16) -> Option<(i16, i16)> {
    SUPPORTED.iter().find(|(k, _, _)| *k == api_key).map(|&(_, min, max)| (min, max))
}
