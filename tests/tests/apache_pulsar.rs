//! The Apache Pulsar standalone of the test suite (`guise_tests::apache_pulsar`) starts from
//! Maven artifacts, serves the admin API and the binary protocol, and stops when asked.

use guise_tests::apache_pulsar::{self, ApachePulsar};

#[test]
fn the_shared_standalone_serves_public_default() {
    let pulsar = apache_pulsar::shared();
    let namespaces = pulsar.admin_json("/admin/v2/namespaces/public");
    assert!(namespaces.as_array().unwrap().iter().any(|n| n == "public/default"), "{namespaces}");
    let clusters = pulsar.admin_json("/admin/v2/clusters");
    assert_eq!(clusters, serde_json::json!(["standalone"]));
}

#[test]
fn an_owned_standalone_takes_its_settings_and_stops_when_dropped() {
    let mut pulsar = ApachePulsar::start_owned(&["maxMessageSize=1048576"]);
    let broker = pulsar.broker;
    assert!(std::net::TcpStream::connect(broker).is_ok());
    let (status, body) = pulsar.admin("GET", "/admin/v2/brokers/configuration/runtime", None);
    assert_eq!(status, 200, "{body}");
    let runtime: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(runtime["maxMessageSize"], "1048576", "{runtime}");
    pulsar.halt();
    assert!(std::net::TcpStream::connect(broker).is_err(), "the broker is gone");
}
