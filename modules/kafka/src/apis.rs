//! The APIs this translator implements, and the versions of each. ApiVersions advertises exactly
//! this table, and a request outside it closes the connection, as Kafka's broker does.

/// (api key, min version, max version).
pub const SUPPORTED: &[(i16, i16, i16)] = &[
    (0, 3, 9),  // Produce
    (1, 4, 12), // Fetch
    (2, 1, 7),  // ListOffsets
    (3, 1, 12), // Metadata
    (18, 0, 4), // ApiVersions
    (19, 2, 7), // CreateTopics
    (20, 1, 6), // DeleteTopics
    (32, 1, 4), // DescribeConfigs
    (37, 0, 3), // CreatePartitions
];

/// The supported version range of `api_key`, if it is implemented.
pub fn range(api_key: i16) -> Option<(i16, i16)> {
    SUPPORTED.iter().find(|(k, _, _)| *k == api_key).map(|&(_, min, max)| (min, max))
}
