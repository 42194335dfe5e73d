//! Differential tests of the Pulsar endpoint: the same calls of the official Pulsar client
//! (libpulsar, through `tests/python/pulsar_scenarios.py observe`) against Apache Pulsar 4.0
//! itself and against Guise's endpoint must be observed the same way. Message ids, publish
//! times and ledger numbers are left out by the scenario: they differ by nature.

use guise_tests::TestServer;
use guise_tests::apache_pulsar;
use guise_tests::pulsar_py::scenario;

/// Differences kept on purpose: the observation, what Guise answers, and why.
const KNOWN: &[(&str, &str, &str)] = &[(
    "unknown_namespace_consumer",
    "ok",
    "Guise has no namespace registry: a namespace of a served tenant comes into being with its \
     first topic (auto-created here), where Apache Pulsar needs `pulsar-admin namespaces create` \
     first and answers TopicNotFound",
)];

#[test]
fn the_official_client_observes_guise_as_it_observes_apache_pulsar() {
    let prefix = format!("persistent://public/default/diff-{}", std::process::id());
    let apache = scenario("observe", &apache_pulsar::shared().url(), &prefix, &[]);
    let guise_host = TestServer::start_with_pulsar(|_| {});
    let guise = scenario("observe", &guise_host.pulsar_url(), &prefix, &[]);
    let (a, g) = (apache.as_object().unwrap(), guise.as_object().unwrap());
    assert_eq!(a.keys().collect::<Vec<_>>(), g.keys().collect::<Vec<_>>());
    let mut differences = Vec::new();
    for (key, want) in a {
        let got = &g[key];
        if let Some((_, guise_answers, why)) = KNOWN.iter().find(|(k, ..)| k == key) {
            assert_eq!(got, guise_answers, "{key}: the known difference changed ({why})");
            eprintln!("{key}: Apache Pulsar {want}, Guise {got}: {why}");
        } else if got != want {
            differences.push(format!("{key}:\n  Apache Pulsar: {want}\n  Guise:         {got}"));
        }
    }
    assert!(differences.is_empty(), "{} differences:\n{}", differences.len(), differences.join("\n"));
}
