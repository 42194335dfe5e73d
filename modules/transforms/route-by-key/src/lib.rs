//! Routes records whose key starts with a prefix to another topic of the same tenant; other
//! records stay on the input topic. Configuration: `prefix` (default `vip-`) and `topic` (default
//! the input topic followed by `-vip`).

use guise_guest_sdk::transform::{self, Output, Record, Result};

/// The key prefix routed when the configuration names none.
pub const DEFAULT_PREFIX: &str = "vip-";

pub fn route_by_key(record: Record, out: &mut Output) -> Result<()> {
    let prefix = transform::config("prefix").unwrap_or_else(|| DEFAULT_PREFIX.to_string());
    if record.key.as_deref().is_some_and(|k| k.starts_with(prefix.as_bytes())) {
        let topic = transform::config("topic").unwrap_or_else(|| format!("{}-vip", out.input_topic()));
        out.emit_to(&topic, record);
    } else {
        out.emit(record);
    }
    Ok(())
}

guise_guest_sdk::export_transform!(route_by_key);

#[cfg(test)]
mod tests {
    use super::*;
    use guise_guest_sdk::transform::test;

    fn rec(key: Option<&str>) -> Record {
        Record::new(key.map(|k| k.as_bytes().to_vec()), Some(b"v".to_vec()))
    }

    fn routes(out: Vec<(Option<String>, Record)>) -> Vec<(Option<String>, Option<String>)> {
        out.into_iter().map(|(t, r)| (t, r.key.map(|k| String::from_utf8(k).unwrap()))).collect()
    }

    #[test]
    fn vip_keys_go_to_the_vip_topic() {
        let out = test::run(
            route_by_key,
            "orders",
            vec![rec(Some("vip-1")), rec(Some("regular")), rec(None), rec(Some("VIP-2")), rec(Some("vip-"))],
        )
        .unwrap();
        let s = |v: &str| Some(v.to_string());
        assert_eq!(
            routes(out),
            [
                (s("orders-vip"), s("vip-1")),
                (None, s("regular")),
                (None, None),
                (None, s("VIP-2")),
                (s("orders-vip"), s("vip-")),
            ]
        );
    }

    #[test]
    fn prefix_and_topic_are_configurable() {
        let out = test::run_with_config(
            route_by_key,
            "orders",
            vec![rec(Some("gold:7")), rec(Some("vip-1"))],
            &[("prefix", "gold:"), ("topic", "priority")],
        )
        .unwrap();
        let s = |v: &str| Some(v.to_string());
        assert_eq!(routes(out), [(s("priority"), s("gold:7")), (None, s("vip-1"))]);
    }

    #[test]
    fn records_keep_their_fields_when_routed() {
        let r = rec(Some("vip-1")).with_header("h", Some(b"x".to_vec()));
        let out = test::run(route_by_key, "t", vec![r.clone()]).unwrap();
        assert_eq!(out[0].1, r);
    }
}
