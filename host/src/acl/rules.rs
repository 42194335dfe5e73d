//! The pure part of the authorizer: which bindings cover a resource, what a filter matches,
//! what a binding must be to be stored, and the decision.

use super::{ApiError, Who, codes};
use guise_guest_sdk::error::INVALID_REQUEST;
use guise_guest_sdk::{AclBinding, AclFilter};

/// Whether binding `b` (of the same resource type) covers the resource called `name`.
pub fn applies(b: &AclBinding, name: &str) -> bool {
    match b.pattern_type {
        codes::LITERAL => b.resource_name == name || b.resource_name == "*",
        codes::PREFIXED => name.starts_with(&b.resource_name),
        _ => false,
    }
}

fn for_whom(b: &AclBinding, who: &Who<'_>) -> bool {
    (b.principal == who.principal || b.principal == "User:*") && (b.host == "*" || b.host == who.host)
}

/// Whether an ALLOW of `granted` permits `wanted`: the same, ALL, or one that implies it.
fn grants(granted: i8, wanted: i8) -> bool {
    granted == wanted
        || granted == codes::ALL
        || (wanted == codes::DESCRIBE
            && matches!(granted, codes::READ | codes::WRITE | codes::DELETE | codes::ALTER))
        || (wanted == codes::DESCRIBE_CONFIGS && granted == codes::ALTER_CONFIGS)
}

/// Kafka's decision for `who` doing `operation` on resource (`resource_type`, `name`).
pub fn decide<'a>(
    bindings: impl Iterator<Item = &'a AclBinding>,
    who: &Who<'_>,
    resource_type: i8,
    name: &str,
    operation: i8,
    allow_if_none: bool,
) -> bool {
    let mut covered = false;
    let mut allowed = false;
    for b in bindings.filter(|b| b.resource_type == resource_type && applies(b, name)) {
        covered = true;
        if !for_whom(b, who) {
            continue;
        }
        match b.permission_type {
            codes::DENY if b.operation == operation || b.operation == codes::ALL => return false,
            codes::ALLOW if grants(b.operation, operation) => allowed = true,
            _ => {}
        }
    }
    allowed || (!covered && allow_if_none)
}

/// Kafka's `authorizeByResourceType`: whether some resource of this type would be allowed —
/// an ALLOW for `who` that no DENY for `who` covers whole (a deny of the literal `*`, or a
/// deny prefix of the allowed name).
pub fn decide_any<'a>(
    bindings: impl Iterator<Item = &'a AclBinding> + Clone,
    who: &Who<'_>,
    resource_type: i8,
    operation: i8,
    allow_if_none: bool,
) -> bool {
    let mine = bindings
        .clone()
        .filter(|b| b.resource_type == resource_type && for_whom(b, who))
        .filter(|b| b.operation == operation || b.operation == codes::ALL);
    let denies: Vec<&AclBinding> = mine.clone().filter(|b| b.permission_type == codes::DENY).collect();
    if denies.iter().any(|d| d.pattern_type == codes::LITERAL && d.resource_name == "*") {
        return false;
    }
    let denied = |name: &str, prefixed: bool| {
        denies.iter().any(|d| match d.pattern_type {
            codes::LITERAL => !prefixed && d.resource_name == name,
            codes::PREFIXED => name.starts_with(&d.resource_name),
            _ => false,
        })
    };
    if mine
        .filter(|b| b.permission_type == codes::ALLOW)
        .any(|b| !denied(&b.resource_name, b.pattern_type == codes::PREFIXED))
    {
        return true;
    }
    // As Kafka: whether a resource no ACL names would be allowed (its made-up name "hardcode").
    decide(bindings, who, resource_type, "hardcode", operation, allow_if_none)
}

fn code_matches(filter: i8, code: i8) -> bool {
    filter == codes::ANY || filter == code
}

/// Whether DescribeAcls/DeleteAcls filter `f` matches binding `b` (Kafka's
/// `AclBindingFilter.matches`: pattern type MATCH matches the bindings that would apply to the
/// name; ANY matches any pattern type with that exact name).
pub fn matches(f: &AclFilter, b: &AclBinding) -> bool {
    let pattern = match (&f.resource_name, f.pattern_type) {
        (None, codes::ANY | codes::MATCH) => true,
        (None, pt) => pt == b.pattern_type,
        (Some(name), codes::ANY) => *name == b.resource_name,
        (Some(name), codes::MATCH) => applies(b, name),
        (Some(name), pt) => pt == b.pattern_type && *name == b.resource_name,
    };
    code_matches(f.resource_type, b.resource_type)
        && pattern
        && f.principal.as_ref().is_none_or(|p| *p == b.principal)
        && f.host.as_ref().is_none_or(|h| *h == b.host)
        && code_matches(f.operation, b.operation)
        && code_matches(f.permission_type, b.permission_type)
}

fn invalid(why: impl Into<String>) -> ApiError {
    (INVALID_REQUEST, why.into())
}

/// What a binding must be to be stored (Kafka's checks of a new ACL).
pub fn validate(b: &AclBinding) -> Result<(), ApiError> {
    if !matches!(b.resource_type, codes::TOPIC | codes::GROUP | codes::CLUSTER | codes::TRANSACTIONAL_ID) {
        return Err(invalid(format!("Invalid resource type {}", b.resource_type)));
    }
    if !matches!(b.pattern_type, codes::LITERAL | codes::PREFIXED) {
        return Err(invalid(format!("Invalid pattern type {}", b.pattern_type)));
    }
    if b.resource_name.is_empty() {
        return Err(invalid("Resource name should not be empty"));
    }
    if b.resource_type == codes::CLUSTER
        && (b.pattern_type != codes::LITERAL || b.resource_name != codes::CLUSTER_NAME)
    {
        return Err(invalid(format!(
            "The only valid name for the CLUSTER resource is {}",
            codes::CLUSTER_NAME
        )));
    }
    if !(codes::ALL..=codes::IDEMPOTENT_WRITE).contains(&b.operation) {
        return Err(invalid(format!("Invalid operation {}", b.operation)));
    }
    if !matches!(b.permission_type, codes::ALLOW | codes::DENY) {
        return Err(invalid(format!("Invalid permission type {}", b.permission_type)));
    }
    match b.principal.split_once(':') {
        Some((kind, name)) if !kind.is_empty() && !name.is_empty() => {}
        _ => {
            return Err(invalid(format!(
                "Could not parse principal from `{}` (no colon is present)",
                b.principal
            )));
        }
    }
    if b.host.is_empty() {
        return Err(invalid("Invalid empty host"));
    }
    Ok(())
}
