//! Drops records whose value is not a JSON object holding every required field (present and
//! not null). Configuration: `required`, comma-separated field names (spaces around names are
//! ignored); with none configured, any JSON object passes.

use guise_guest_sdk::transform::{self, Record};
use serde_json::Value;

pub fn is_valid(record: &Record) -> bool {
    let Some(Ok(Value::Object(obj))) = record.value.as_deref().map(serde_json::from_slice::<Value>) else {
        return false;
    };
    let required = transform::config("required").unwrap_or_default();
    required
        .split(',')
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .all(|f| obj.get(f).is_some_and(|v| !v.is_null()))
}

guise_guest_sdk::export_filter!(is_valid);

#[cfg(test)]
mod tests {
    use super::*;
    use guise_guest_sdk::transform::test;

    fn rec(v: Option<&str>) -> Record {
        Record::new(None, v.map(|v| v.as_bytes().to_vec()))
    }

    fn kept(inputs: &[Option<&str>], config: &[(&str, &str)]) -> Vec<Option<String>> {
        let records = inputs.iter().map(|v| rec(*v)).collect();
        test::run_with_config(transform::filter(is_valid), "t", records, config)
            .unwrap()
            .into_iter()
            .map(|(topic, r)| {
                assert_eq!(topic, None);
                r.value_str().map(str::to_string)
            })
            .collect()
    }

    #[test]
    fn only_objects_pass() {
        let out = kept(&[Some("{}"), Some("[1]"), Some("3"), Some("{bad"), None, Some(r#"{"a":1}"#)], &[]);
        assert_eq!(out, [Some("{}".to_string()), Some(r#"{"a":1}"#.to_string())]);
    }

    #[test]
    fn required_fields_must_be_present_and_not_null() {
        let out = kept(
            &[
                Some(r#"{"id":1,"name":"a","extra":true}"#),
                Some(r#"{"id":2}"#),
                Some(r#"{"id":3,"name":null}"#),
                Some(r#"{"nested":{"id":4,"name":"b"}}"#),
            ],
            &[("required", " id , name ,")],
        );
        assert_eq!(out, [Some(r#"{"id":1,"name":"a","extra":true}"#.to_string())]);
    }

    #[test]
    fn values_pass_byte_for_byte() {
        let v = r#"{ "id" : 1 }"#;
        assert_eq!(kept(&[Some(v)], &[("required", "id")]), [Some(v.to_string())]);
    }
}
