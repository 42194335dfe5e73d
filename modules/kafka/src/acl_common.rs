//! What the ACL APIs (DescribeAcls, CreateAcls, DeleteAcls) and the handlers that authorize
//! share: Kafka's names of the ACL codes, its validation of bindings and filters, and the
//! authorized-operations bit fields.
//!
//! The host authorizes its own services; the translator asks `authorize` only where the check
//! depends on the request (Metadata's auto-creation, FindCoordinator, broker configs, ...).

use guise_guest_sdk::{AclBinding, AclFilter, ErrorCode, Services, acl, error};

/// Kafka's ResourceType codes the acl module has no name for.
const DELEGATION_TOKEN: i8 = 6;
const USER: i8 = 7;
/// Kafka's AclOperation codes the acl module has no name for.
const CREATE_TOKENS: i8 = 13;
const DESCRIBE_TOKENS: i8 = 14;
const TWO_PHASE_COMMIT: i8 = 15;

/// The operations Kafka reports for a topic (`AclEntry.supportedOperations(TOPIC)`).
pub(crate) const TOPIC_OPERATIONS: &[i8] = &[
    acl::READ,
    acl::WRITE,
    acl::CREATE,
    acl::DELETE,
    acl::ALTER,
    acl::DESCRIBE,
    acl::DESCRIBE_CONFIGS,
    acl::ALTER_CONFIGS,
];
/// The operations reported for the cluster.
pub(crate) const CLUSTER_OPERATIONS: &[i8] = &[
    acl::CREATE,
    acl::ALTER,
    acl::DESCRIBE,
    acl::CLUSTER_ACTION,
    acl::DESCRIBE_CONFIGS,
    acl::ALTER_CONFIGS,
    acl::IDEMPOTENT_WRITE,
];
/// The operations reported for a group (Guise has no group configs, so not Kafka 4's
/// DESCRIBE_CONFIGS and ALTER_CONFIGS).
pub(crate) const GROUP_OPERATIONS: &[i8] = &[acl::READ, acl::DELETE, acl::DESCRIBE];

/// "Not computed", in the authorized-operations fields.
pub(crate) const OPERATIONS_NOT_REQUESTED: i32 = i32::MIN;

/// The bit field (bit n = operation code n) of the `operations` the principal may do on the
/// named resource, as Kafka's `authorizedOperations` computes it. Without an authorizer the
/// host allows everything, so this is every operation, as Kafka reports then.
pub(crate) fn authorized_operations<S: Services>(
    svc: &S,
    resource_type: i8,
    name: &str,
    operations: &[i8],
) -> i32 {
    acl::operation_bits(operations.iter().copied().filter(|&op| svc.authorize(resource_type, name, op)))
}

/// Kafka's messages for the authorization errors (`Errors`' default messages).
pub(crate) fn authorization_message(code: ErrorCode) -> &'static str {
    match code {
        error::TOPIC_AUTHORIZATION_FAILED => "Topic authorization failed.",
        error::GROUP_AUTHORIZATION_FAILED => "Group authorization failed.",
        error::CLUSTER_AUTHORIZATION_FAILED => "Cluster authorization failed.",
        error::TRANSACTIONAL_ID_AUTHORIZATION_FAILED => "Transactional Id authorization failed.",
        error::SECURITY_DISABLED => "Security features are disabled.",
        _ => "",
    }
}

/// Kafka's name of a ResourceType code (an unknown code is UNKNOWN, as `fromCode` maps it).
pub(crate) fn resource_type_name(code: i8) -> &'static str {
    match code {
        acl::ANY => "ANY",
        acl::TOPIC => "TOPIC",
        acl::GROUP => "GROUP",
        acl::CLUSTER => "CLUSTER",
        acl::TRANSACTIONAL_ID => "TRANSACTIONAL_ID",
        DELEGATION_TOKEN => "DELEGATION_TOKEN",
        USER => "USER",
        _ => "UNKNOWN",
    }
}

/// Kafka's name of a PatternType code.
pub(crate) fn pattern_type_name(code: i8) -> &'static str {
    match code {
        acl::ANY => "ANY",
        acl::MATCH => "MATCH",
        acl::LITERAL => "LITERAL",
        acl::PREFIXED => "PREFIXED",
        _ => "UNKNOWN",
    }
}

/// Kafka's name of an AclOperation code.
pub(crate) fn operation_name(code: i8) -> &'static str {
    match code {
        acl::ANY => "ANY",
        acl::ALL => "ALL",
        acl::READ => "READ",
        acl::WRITE => "WRITE",
        acl::CREATE => "CREATE",
        acl::DELETE => "DELETE",
        acl::ALTER => "ALTER",
        acl::DESCRIBE => "DESCRIBE",
        acl::CLUSTER_ACTION => "CLUSTER_ACTION",
        acl::DESCRIBE_CONFIGS => "DESCRIBE_CONFIGS",
        acl::ALTER_CONFIGS => "ALTER_CONFIGS",
        acl::IDEMPOTENT_WRITE => "IDEMPOTENT_WRITE",
        CREATE_TOKENS => "CREATE_TOKENS",
        DESCRIBE_TOKENS => "DESCRIBE_TOKENS",
        TWO_PHASE_COMMIT => "TWO_PHASE_COMMIT",
        _ => "UNKNOWN",
    }
}

/// Kafka's name of an AclPermissionType code.
pub(crate) fn permission_type_name(code: i8) -> &'static str {
    match code {
        acl::ANY => "ANY",
        acl::DENY => "DENY",
        acl::ALLOW => "ALLOW",
        _ => "UNKNOWN",
    }
}

/// Why a binding to create is invalid, as Kafka refuses it, in Kafka's order: an UNKNOWN code
/// (the request's own validation), then the broker's checks (`AclApis`: the cluster's name is
/// "kafka-cluster", a name is not empty), then the controller's
/// (`AclControlManager.validateNewAcl`: a concrete resource type, a LITERAL or PREFIXED pattern,
/// a concrete operation, ALLOW or DENY), and a principal of the form "type:name"
/// (`SecurityUtils.parseKafkaPrincipal`).
pub(crate) fn binding_problem(b: &AclBinding) -> Option<String> {
    let resource_type = resource_type_name(b.resource_type);
    let pattern_type = pattern_type_name(b.pattern_type);
    let operation = operation_name(b.operation);
    let permission_type = permission_type_name(b.permission_type);
    let unknown = |name: &str| name == "UNKNOWN";
    if unknown(resource_type) || unknown(pattern_type) || unknown(operation) || unknown(permission_type) {
        return Some(format!(
            "Invalid ACL: resourceType {resource_type}, patternType {pattern_type}, operation \
             {operation}, permissionType {permission_type} (UNKNOWN elements)"
        ));
    }
    if b.resource_type == acl::CLUSTER && b.resource_name != acl::CLUSTER_NAME {
        return Some(format!("The only valid name for the CLUSTER resource is {}", acl::CLUSTER_NAME));
    }
    if b.resource_name.is_empty() {
        return Some("Invalid empty resource name".into());
    }
    if resource_type == "ANY" {
        return Some(format!("Invalid resourceType {resource_type}"));
    }
    if !matches!(pattern_type, "LITERAL" | "PREFIXED") {
        return Some(format!("Invalid patternType {pattern_type}"));
    }
    if operation == "ANY" {
        return Some(format!("Invalid operation {operation}"));
    }
    if !matches!(permission_type, "ALLOW" | "DENY") {
        return Some(format!("Invalid permissionType {permission_type}"));
    }
    if !b.principal.contains(':') {
        return Some(format!(
            "expected a string in format principalType:principalName but got {}",
            b.principal
        ));
    }
    None
}

/// Why a DescribeAcls or DeleteAcls filter is invalid: an UNKNOWN (or unknown) code in any of
/// its four codes, as Kafka's request validation and `AclControlManager.validateFilter` refuse.
pub(crate) fn filter_problem(f: &AclFilter) -> Option<String> {
    if resource_type_name(f.resource_type) == "UNKNOWN" || pattern_type_name(f.pattern_type) == "UNKNOWN" {
        return Some("Unknown patternFilter.".into());
    }
    if operation_name(f.operation) == "UNKNOWN" || permission_type_name(f.permission_type) == "UNKNOWN" {
        return Some("Unknown entryFilter.".into());
    }
    None
}

/// One entry's outcome in CreateAcls or DeleteAcls: done (with what it did), or an error.
pub(crate) type Outcome<R> = Result<R, (ErrorCode, String)>;

/// The outcome of each entry of a CreateAcls or DeleteAcls: INVALID_REQUEST with its `problem`,
/// or what the host answered for it (`host` is called once, with the valid entries in order).
/// When the host refused the request as a whole (no authorizer, no permission on the cluster),
/// the invalid entries get that answer too, as Kafka checks those first.
pub(crate) fn outcomes<T: Clone, R>(
    entries: &[T],
    problem: impl Fn(&T) -> Option<String>,
    host: impl FnOnce(&[T]) -> Vec<Outcome<R>>,
) -> Vec<Outcome<R>> {
    let problems: Vec<Option<String>> = entries.iter().map(problem).collect();
    let valid: Vec<T> =
        entries.iter().zip(&problems).filter(|(_, p)| p.is_none()).map(|(e, _)| e.clone()).collect();
    let mut answered = if valid.is_empty() { Vec::new() } else { host(&valid) }.into_iter();
    let mut outcomes: Vec<Outcome<R>> = problems
        .into_iter()
        .map(|p| match p {
            Some(why) => Err((error::INVALID_REQUEST, why)),
            None => answered.next().unwrap_or_else(|| {
                Err((error::UNKNOWN_SERVER_ERROR, "The host gave no result for this entry.".into()))
            }),
        })
        .collect();
    let whole = outcomes.iter().find_map(|o| match o {
        Err((code @ (error::SECURITY_DISABLED | error::CLUSTER_AUTHORIZATION_FAILED), why)) => {
            Some((*code, why.clone()))
        }
        _ => None,
    });
    if let Some(whole) = whole {
        for o in &mut outcomes {
            if matches!(o, Err((error::INVALID_REQUEST, _))) {
                *o = Err(whole.clone());
            }
        }
    }
    outcomes
}
