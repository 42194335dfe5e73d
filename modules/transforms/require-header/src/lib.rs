//! Drops records that lack a required header. Configuration: `header` (default `schema`).
//! A header that is present with a null value counts as present.

use guise_guest_sdk::transform::{self, Record};

/// The header required when the configuration names none.
pub const DEFAULT_HEADER: &str = "schema";

pub fn has_required_header(record: &Record) -> bool {
    let header = transform::config("header");
    record.header(header.as_deref().unwrap_or(DEFAULT_HEADER)).is_some()
}

guise_guest_sdk::export_filter!(has_required_header);

#[cfg(test)]
mod tests {
    use super::*;
    use guise_guest_sdk::transform::test;

    fn rec(v: &str) -> Record {
        Record::new(None, Some(v.as_bytes().to_vec()))
    }

    fn values(out: Vec<(Option<String>, Record)>) -> Vec<String> {
        out.into_iter()
            .map(|(topic, r)| {
                assert_eq!(topic, None);
                r.value_str().unwrap().to_string()
            })
            .collect()
    }

    #[test]
    fn keeps_records_with_the_default_header() {
        let out = test::run(
            transform::filter(has_required_header),
            "t",
            vec![
                rec("a").with_header("schema", Some(b"v1".to_vec())),
                rec("b"),
                rec("c").with_header("other", None),
                rec("d").with_header("x", None).with_header("schema", None),
            ],
        )
        .unwrap();
        assert_eq!(values(out), ["a", "d"]);
    }

    #[test]
    fn the_header_is_configurable() {
        let out = test::run_with_config(
            transform::filter(has_required_header),
            "t",
            vec![rec("a").with_header("schema", None), rec("b").with_header("trace-id", Some(b"1".to_vec()))],
            &[("header", "trace-id")],
        )
        .unwrap();
        assert_eq!(values(out), ["b"]);
    }

    #[test]
    fn header_names_are_case_sensitive() {
        let out = test::run(
            transform::filter(has_required_header),
            "t",
            vec![rec("a").with_header("Schema", None)],
        );
        assert!(out.unwrap().is_empty());
    }
}
