//! Kafka's client quotas (KIP-13, KIP-55, KIP-124, KIP-546): the entities they are set on, the
//! rules DescribeClientQuotas and AlterClientQuotas check, and which entity's quota a client
//! falls under. Pure: the host's `quota` room and the native stub both run it, so the
//! translator's tests and the host decide alike.
//!
//! An entity names a user, a client id, or both; each name is a value or the default (`None`,
//! Kafka's `<default>`). A client (user U, client id C) is governed, for each kind of quota
//! separately, by the first of these entities that sets it (Kafka's order):
//! `U/C`, `U/<default>`, `U`, `<default>/C`, `<default>/<default>`, `<default>`, `C`,
//! `<default client>`. Clients governed by the same entity share one rate where the entity
//! names them together: a `U` quota is shared by all of U's client ids, a `<default>` user
//! quota gives each user its own.

use crate::ErrorCode;
use crate::error::{INVALID_REQUEST, UNSUPPORTED_VERSION};
use std::collections::BTreeMap;

/// Kafka's entity types.
pub const USER: &str = "user";
pub const CLIENT_ID: &str = "client-id";
pub const IP: &str = "ip";

/// Kafka's quota keys for users and client ids, and whether each is a whole number (LONG).
pub const PRODUCER_BYTE_RATE: &str = "producer_byte_rate";
pub const CONSUMER_BYTE_RATE: &str = "consumer_byte_rate";
pub const REQUEST_PERCENTAGE: &str = "request_percentage";
pub const CONTROLLER_MUTATION_RATE: &str = "controller_mutation_rate";
const KEYS: &[(&str, bool)] = &[
    (PRODUCER_BYTE_RATE, true),
    (CONSUMER_BYTE_RATE, true),
    (REQUEST_PERCENTAGE, false),
    (CONTROLLER_MUTATION_RATE, false),
];

/// Match types of a DescribeClientQuotas filter component.
pub const MATCH_EXACT: i8 = 0;
pub const MATCH_DEFAULT: i8 = 1;
pub const MATCH_ANY: i8 = 2;

/// One part of an entity as the APIs carry it: a type and a name (None: the default entity).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntityPart {
    pub entity_type: String,
    pub name: Option<String>,
}

/// One component of a DescribeClientQuotas filter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterPart {
    pub entity_type: String,
    pub match_type: i8,
    pub name: Option<String>,
}

/// An entity and the quotas set on it.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub entity: Vec<EntityPart>,
    pub values: Vec<(String, f64)>,
}

/// One change of an AlterClientQuotas entry: set `key` to `value`, or remove it.
#[derive(Clone, Debug, PartialEq)]
pub struct Op {
    pub key: String,
    pub value: f64,
    pub remove: bool,
}

/// One entry of AlterClientQuotas.
#[derive(Clone, Debug, PartialEq)]
pub struct Alteration {
    pub entity: Vec<EntityPart>,
    pub ops: Vec<Op>,
}

/// A validated entity: the user part and the client-id part, each absent, the default
/// (`Some(None)`) or named. Ordered, so stores keep entities sorted.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Entity {
    pub user: Option<Option<String>>,
    pub client_id: Option<Option<String>>,
}

/// An error with Kafka's code and message.
pub type ApiError = (ErrorCode, String);

fn invalid(message: impl Into<String>) -> ApiError {
    (INVALID_REQUEST, message.into())
}

impl Entity {
    /// Check an entity as AlterClientQuotas does. IP entities (connection-rate quotas) are not
    /// enforced by Guise and are refused with a message saying so.
    pub fn parse(parts: &[EntityPart]) -> Result<Entity, ApiError> {
        if parts.is_empty() {
            return Err(invalid("Invalid empty client quota entity"));
        }
        let mut entity = Entity::default();
        let mut ip = false;
        let mut types: Vec<&str> = Vec::with_capacity(parts.len());
        for part in parts {
            if types.contains(&part.entity_type.as_str()) {
                return Err(invalid(format!(
                    "Invalid empty client quota entity, duplicate entity entry {}",
                    part.entity_type
                )));
            }
            types.push(&part.entity_type);
            match part.entity_type.as_str() {
                USER => entity.user = Some(part.name.clone()),
                CLIENT_ID => entity.client_id = Some(part.name.clone()),
                IP => ip = true,
                other => return Err(invalid(format!("Unhandled client quota entity type: {other}"))),
            }
            if part.name.as_deref() == Some("") {
                return Err(invalid(format!("Empty {} not supported", part.entity_type)));
            }
        }
        if ip {
            if entity != Entity::default() {
                return Err(invalid("Invalid empty client quota entity"));
            }
            return Err(invalid("IP quotas (connection_creation_rate) are not supported by Guise"));
        }
        Ok(entity)
    }

    /// The entity as the APIs carry it (user first).
    pub fn parts(&self) -> Vec<EntityPart> {
        let mut parts = Vec::with_capacity(2);
        if let Some(name) = &self.user {
            parts.push(EntityPart { entity_type: USER.into(), name: name.clone() });
        }
        if let Some(name) = &self.client_id {
            parts.push(EntityPart { entity_type: CLIENT_ID.into(), name: name.clone() });
        }
        parts
    }

    /// Kafka's text for the entity ("user=alice, client-id=<default>"), for messages and logs.
    pub fn describe(&self) -> String {
        let show = |n: &Option<String>| n.clone().unwrap_or_else(|| "<default>".into());
        let mut out = Vec::new();
        if let Some(u) = &self.user {
            out.push(format!("user={}", show(u)));
        }
        if let Some(c) = &self.client_id {
            out.push(format!("client-id={}", show(c)));
        }
        out.join(", ")
    }
}

/// Check one AlterClientQuotas change of a key, as Kafka's controller does: a known key, and a
/// whole number for the byte rates. Removing needs no value.
pub fn check_op(op: &Op) -> Result<(), ApiError> {
    if op.remove {
        // Kafka's controller ignores the removal of a key that is not set, known or not.
        return Ok(());
    }
    let Some(&(_, whole)) = KEYS.iter().find(|(k, _)| *k == op.key) else {
        return Err(invalid(format!("Invalid configuration key {}", op.key)));
    };
    if op.key == CONTROLLER_MUTATION_RATE {
        // Guise has no controller to protect; storing it would promise a limit never enforced.
        return Err(invalid(format!("{CONTROLLER_MUTATION_RATE} is not enforced by Guise")));
    }
    if whole {
        let epsilon = 1e-6;
        let long = (op.value + epsilon).trunc();
        if !op.value.is_finite() || (long - op.value).abs() > epsilon {
            return Err(invalid(format!("Configuration {} must be a Long value", op.key)));
        }
    }
    if op.value.is_nan() || op.value <= 0.0 || op.value.is_infinite() {
        // As Kafka's controller refuses them.
        return Err(invalid(format!("Configuration {} must be greater than 0, not {}", op.key, op.value)));
    }
    Ok(())
}

/// Apply one AlterClientQuotas entry to `quotas` (the tenant's entities and their keys),
/// all of its changes or none; `validate_only` checks without changing anything. Returns the
/// validated entity and its keys after the change (empty: the entity is gone).
pub fn alter(
    quotas: &mut BTreeMap<Entity, BTreeMap<String, f64>>,
    alteration: &Alteration,
    validate_only: bool,
) -> Result<(Entity, BTreeMap<String, f64>), ApiError> {
    let entity = Entity::parse(&alteration.entity)?;
    let mut seen = Vec::new();
    for op in &alteration.ops {
        if seen.contains(&op.key.as_str()) {
            return Err(invalid(format!("Duplicate quota key {} not updating quota for entity", op.key)));
        }
        seen.push(op.key.as_str());
        check_op(op)?;
    }
    let mut values = quotas.get(&entity).cloned().unwrap_or_default();
    for op in &alteration.ops {
        if op.remove {
            values.remove(&op.key);
        } else {
            values.insert(op.key.clone(), op.value);
        }
    }
    if !validate_only {
        if values.is_empty() {
            quotas.remove(&entity);
        } else {
            quotas.insert(entity.clone(), values.clone());
        }
    }
    Ok((entity, values))
}

/// Check a DescribeClientQuotas filter, as Kafka's broker does.
pub fn check_filter(components: &[FilterPart]) -> Result<(), ApiError> {
    let mut types = Vec::new();
    for c in components {
        if types.contains(&c.entity_type.as_str()) {
            return Err(invalid(format!(
                "Entity type {} cannot appear more than once in the filter.",
                c.entity_type
            )));
        }
        types.push(c.entity_type.as_str());
        match c.entity_type.as_str() {
            USER | CLIENT_ID | IP => {}
            "" => return Err(invalid("Invalid empty entity type")),
            // What Kafka's broker answers for a type it does not know.
            other => return Err((UNSUPPORTED_VERSION, format!("Unsupported entity type {other}"))),
        }
        match c.match_type {
            MATCH_EXACT if c.name.is_none() => {
                return Err(invalid(format!(
                    "Request specified exact match for {} but no name",
                    c.entity_type
                )));
            }
            MATCH_DEFAULT | MATCH_ANY if c.name.is_some() => {
                return Err(invalid(format!(
                    "Request specified a name for {} with a default or any match",
                    c.entity_type
                )));
            }
            MATCH_EXACT | MATCH_DEFAULT | MATCH_ANY => {}
            other => return Err(invalid(format!("Unknown match type {other}"))),
        }
    }
    if types.contains(&IP) && types.len() > 1 {
        return Err(invalid(
            "Invalid entity filter component combination, IP filter component should not be used with user or clientId filter component.",
        ));
    }
    Ok(())
}

/// Whether `entity` matches the filter: each component matches the entity's part of that type
/// (exact: that name; default: the default entity; any: any name), and with `strict` the entity
/// has no other parts.
pub fn matches(entity: &Entity, components: &[FilterPart], strict: bool) -> bool {
    let part = |t: &str| match t {
        USER => entity.user.as_ref(),
        CLIENT_ID => entity.client_id.as_ref(),
        _ => None,
    };
    let all = components.iter().all(|c| match (part(&c.entity_type), c.match_type) {
        (None, _) => false,
        (Some(name), MATCH_EXACT) => name.is_some() && *name == c.name,
        (Some(name), MATCH_DEFAULT) => name.is_none(),
        (Some(_), _) => true,
    });
    let parts = usize::from(entity.user.is_some()) + usize::from(entity.client_id.is_some());
    all && (!strict || parts == components.len())
}

/// DescribeClientQuotas over `quotas`: the matching entities and their keys.
pub fn describe(
    quotas: &BTreeMap<Entity, BTreeMap<String, f64>>,
    components: &[FilterPart],
    strict: bool,
) -> Result<Vec<Entry>, ApiError> {
    check_filter(components)?;
    Ok(quotas
        .iter()
        .filter(|(e, values)| !values.is_empty() && matches(e, components, strict))
        .map(|(e, values)| Entry {
            entity: e.parts(),
            values: values.iter().map(|(k, v)| (k.clone(), *v)).collect(),
        })
        .collect())
}

/// The quota of `key` that governs client id `client_id` of `user`, and the rate it is
/// measured by: Kafka's (user, client id) tags, "" where the governing entity does not name
/// that part. None: no entity sets `key` for this client.
pub fn governing(
    quotas: &BTreeMap<Entity, BTreeMap<String, f64>>,
    key: &str,
    user: &str,
    client_id: &str,
) -> Option<(f64, (String, String))> {
    let named = |s: &str| Some(Some(s.to_string()));
    let default = Some(None);
    let (u, c) = (user.to_string(), client_id.to_string());
    let levels: [(Entity, (String, String)); 8] = [
        (Entity { user: named(user), client_id: named(client_id) }, (u.clone(), c.clone())),
        (Entity { user: named(user), client_id: default.clone() }, (u.clone(), c.clone())),
        (Entity { user: named(user), client_id: None }, (u.clone(), String::new())),
        (Entity { user: default.clone(), client_id: named(client_id) }, (u.clone(), c.clone())),
        (Entity { user: default.clone(), client_id: default.clone() }, (u.clone(), c.clone())),
        (Entity { user: default.clone(), client_id: None }, (u, String::new())),
        (Entity { user: None, client_id: named(client_id) }, (String::new(), c.clone())),
        (Entity { user: None, client_id: default }, (String::new(), c)),
    ];
    levels.into_iter().find_map(|(entity, tags)| quotas.get(&entity)?.get(key).map(|v| (*v, tags)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(t: &str, n: Option<&str>) -> EntityPart {
        EntityPart { entity_type: t.into(), name: n.map(str::to_string) }
    }

    fn set(
        quotas: &mut BTreeMap<Entity, BTreeMap<String, f64>>,
        entity: &[EntityPart],
        key: &str,
        value: f64,
    ) {
        let a =
            Alteration { entity: entity.to_vec(), ops: vec![Op { key: key.into(), value, remove: false }] };
        alter(quotas, &a, false).unwrap();
    }

    #[test]
    fn entities_are_checked_as_kafka_checks_them() {
        let code = |parts: &[EntityPart]| Entity::parse(parts).map_err(|e| e.0);
        assert_eq!(code(&[]), Err(INVALID_REQUEST));
        assert_eq!(code(&[part(USER, Some("a")), part(USER, Some("b"))]), Err(INVALID_REQUEST));
        assert_eq!(code(&[part("group", Some("a"))]), Err(INVALID_REQUEST));
        assert_eq!(code(&[part(USER, Some(""))]), Err(INVALID_REQUEST));
        assert_eq!(code(&[part(IP, Some("1.2.3.4"))]), Err(INVALID_REQUEST));
        assert_eq!(code(&[part(IP, None), part(USER, None)]), Err(INVALID_REQUEST));
        let e = Entity::parse(&[part(CLIENT_ID, None), part(USER, Some("alice"))]).unwrap();
        assert_eq!(e, Entity { user: Some(Some("alice".into())), client_id: Some(None) });
        assert_eq!(e.parts(), [part(USER, Some("alice")), part(CLIENT_ID, None)]);
        assert_eq!(e.describe(), "user=alice, client-id=<default>");
    }

    #[test]
    fn values_are_checked_and_changes_apply_together() {
        let mut q = BTreeMap::new();
        let alice = [part(USER, Some("alice"))];
        let op = |key: &str, value: f64| Op { key: key.into(), value, remove: false };
        let bad = Alteration {
            entity: alice.to_vec(),
            ops: vec![op(REQUEST_PERCENTAGE, 50.0), op(PRODUCER_BYTE_RATE, 1.5)],
        };
        assert_eq!(alter(&mut q, &bad, false).unwrap_err().0, INVALID_REQUEST);
        assert!(q.is_empty(), "nothing of a refused entry applies");
        for op in [op("bogus", 1.0), op(CONSUMER_BYTE_RATE, 0.0), op(REQUEST_PERCENTAGE, f64::NAN)] {
            let a = Alteration { entity: alice.to_vec(), ops: vec![op] };
            assert!(alter(&mut q, &a, false).is_err());
        }
        let dup = Alteration {
            entity: alice.to_vec(),
            ops: vec![op(REQUEST_PERCENTAGE, 5.0), op(REQUEST_PERCENTAGE, 6.0)],
        };
        assert!(alter(&mut q, &dup, false).is_err());
        let mutations = Alteration { entity: alice.to_vec(), ops: vec![op(CONTROLLER_MUTATION_RATE, 5.0)] };
        assert!(alter(&mut q, &mutations, false).is_err(), "not enforced, so not stored");
        let unknown = Alteration {
            entity: alice.to_vec(),
            ops: vec![Op { key: "bogus".into(), value: 0.0, remove: true }],
        };
        assert!(alter(&mut q, &unknown, true).is_ok(), "removing a key not set is a no-op, as in Kafka");
        let good = Alteration { entity: alice.to_vec(), ops: vec![op(PRODUCER_BYTE_RATE, 1024.0)] };
        alter(&mut q, &good, true).unwrap();
        assert!(q.is_empty(), "validate_only changes nothing");
        alter(&mut q, &good, false).unwrap();
        assert_eq!(describe(&q, &[], false).unwrap().len(), 1);
        let remove = Alteration {
            entity: alice.to_vec(),
            ops: vec![Op { key: PRODUCER_BYTE_RATE.into(), value: 0.0, remove: true }],
        };
        let (_, left) = alter(&mut q, &remove, false).unwrap();
        assert!(left.is_empty() && q.is_empty(), "an entity without keys is gone");
    }

    #[test]
    fn filters_match_as_kafka_matches_them() {
        let mut q = BTreeMap::new();
        set(&mut q, &[part(USER, Some("alice"))], PRODUCER_BYTE_RATE, 1.0);
        set(&mut q, &[part(USER, None)], PRODUCER_BYTE_RATE, 2.0);
        set(&mut q, &[part(USER, Some("alice")), part(CLIENT_ID, Some("app"))], PRODUCER_BYTE_RATE, 3.0);
        set(&mut q, &[part(CLIENT_ID, None)], REQUEST_PERCENTAGE, 4.0);
        let f = |t: &str, m: i8, n: Option<&str>| FilterPart {
            entity_type: t.into(),
            match_type: m,
            name: n.map(Into::into),
        };
        let count = |c: &[FilterPart], strict| describe(&q, c, strict).unwrap().len();
        assert_eq!(count(&[], false), 4);
        assert_eq!(count(&[], true), 0);
        assert_eq!(count(&[f(USER, MATCH_EXACT, Some("alice"))], false), 2);
        assert_eq!(count(&[f(USER, MATCH_EXACT, Some("alice"))], true), 1);
        assert_eq!(count(&[f(USER, MATCH_DEFAULT, None)], false), 1);
        assert_eq!(count(&[f(USER, MATCH_ANY, None)], false), 3);
        assert_eq!(count(&[f(USER, MATCH_ANY, None), f(CLIENT_ID, MATCH_ANY, None)], true), 1);
        assert_eq!(count(&[f(CLIENT_ID, MATCH_DEFAULT, None)], true), 1);
        for bad in [
            vec![f(USER, MATCH_ANY, None), f(USER, MATCH_ANY, None)],
            vec![f(USER, MATCH_EXACT, None)],
            vec![f(USER, 7, None)],
            vec![f(IP, MATCH_ANY, None), f(USER, MATCH_ANY, None)],
            vec![f(USER, MATCH_DEFAULT, Some("alice"))],
            vec![f("", MATCH_ANY, None)],
        ] {
            assert_eq!(describe(&q, &bad, false).unwrap_err().0, INVALID_REQUEST, "{bad:?}");
        }
        let unknown = [f("group", MATCH_ANY, None)];
        assert_eq!(describe(&q, &unknown, false).unwrap_err().0, UNSUPPORTED_VERSION);
    }

    #[test]
    fn the_most_specific_entity_setting_a_key_governs() {
        let mut q = BTreeMap::new();
        let tags = |u: &str, c: &str| (u.to_string(), c.to_string());
        assert_eq!(governing(&q, PRODUCER_BYTE_RATE, "alice", "app"), None);
        set(&mut q, &[part(CLIENT_ID, None)], PRODUCER_BYTE_RATE, 8.0);
        assert_eq!(governing(&q, PRODUCER_BYTE_RATE, "alice", "app"), Some((8.0, tags("", "app"))));
        set(&mut q, &[part(CLIENT_ID, Some("app"))], PRODUCER_BYTE_RATE, 7.0);
        assert_eq!(governing(&q, PRODUCER_BYTE_RATE, "alice", "app"), Some((7.0, tags("", "app"))));
        set(&mut q, &[part(USER, None)], PRODUCER_BYTE_RATE, 6.0);
        assert_eq!(governing(&q, PRODUCER_BYTE_RATE, "alice", "app"), Some((6.0, tags("alice", ""))));
        set(&mut q, &[part(USER, None), part(CLIENT_ID, None)], PRODUCER_BYTE_RATE, 5.0);
        assert_eq!(governing(&q, PRODUCER_BYTE_RATE, "alice", "app"), Some((5.0, tags("alice", "app"))));
        set(&mut q, &[part(USER, Some("alice"))], PRODUCER_BYTE_RATE, 3.0);
        assert_eq!(governing(&q, PRODUCER_BYTE_RATE, "alice", "app"), Some((3.0, tags("alice", ""))));
        assert_eq!(governing(&q, PRODUCER_BYTE_RATE, "bob", "app"), Some((5.0, tags("bob", "app"))));
        set(&mut q, &[part(USER, Some("alice")), part(CLIENT_ID, Some("app"))], PRODUCER_BYTE_RATE, 1.0);
        assert_eq!(governing(&q, PRODUCER_BYTE_RATE, "alice", "app"), Some((1.0, tags("alice", "app"))));
        assert_eq!(governing(&q, PRODUCER_BYTE_RATE, "alice", "other"), Some((3.0, tags("alice", ""))));
        // Each key on its own: nothing sets the fetch rate.
        assert_eq!(governing(&q, CONSUMER_BYTE_RATE, "alice", "app"), None);
    }
}
