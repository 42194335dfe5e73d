//! The host side of the `acls` WIT interface, and the checks every other import makes: a guest
//! call is authorized here, for the connection's principal within its tenant, whatever the
//! translator decided (`crate::acl` decides).

use super::bindings::acls;
use super::state::GuestState;
use crate::acl::{AclBinding, AclFilter, Who, codes};
use guise_guest_sdk::error::{GROUP_AUTHORIZATION_FAILED, TOPIC_AUTHORIZATION_FAILED};

type ErrorCode = i16;

impl GuestState {
    /// Whether the connection's principal may do `operation` on the resource.
    pub(super) async fn allowed(&mut self, resource_type: i8, name: &str, operation: i8) -> bool {
        let who = Who { principal: &self.conn.principal, host: &self.conn.client_ip };
        if let Some(allowed) =
            self.ctx.acl.try_authorize(&self.conn.tenant, &who, resource_type, name, operation)
        {
            return allowed;
        }
        // The tenant's first check: its ACLs are read from the log.
        let (acl, tenant, principal, host) = self.who();
        let who = Who { principal: &principal, host: &host };
        self.awaiting(acl.authorize(&tenant, &who, resource_type, name, operation)).await
    }

    /// TOPIC_AUTHORIZATION_FAILED unless the principal may do `operation` on the topic.
    pub(super) async fn topic_allowed(&mut self, topic: &str, operation: i8) -> Result<(), ErrorCode> {
        if self.allowed(codes::TOPIC, topic, operation).await {
            Ok(())
        } else {
            Err(TOPIC_AUTHORIZATION_FAILED)
        }
    }

    /// GROUP_AUTHORIZATION_FAILED unless the principal may do `operation` on the group.
    pub(super) async fn group_allowed(&mut self, group: &str, operation: i8) -> Result<(), ErrorCode> {
        if self.allowed(codes::GROUP, group, operation).await {
            Ok(())
        } else {
            Err(GROUP_AUTHORIZATION_FAILED)
        }
    }

    /// Whether the principal may do `operation` on the cluster.
    pub(super) async fn cluster_allowed(&mut self, operation: i8) -> bool {
        self.allowed(codes::CLUSTER, codes::CLUSTER_NAME, operation).await
    }

    /// Whether the principal may do `operation` on some resource of the type.
    pub(super) async fn allowed_any(&mut self, resource_type: i8, operation: i8) -> bool {
        if !self.ctx.acl.enabled() {
            return true;
        }
        let (acl, tenant, principal, host) = self.who();
        let who = Who { principal: &principal, host: &host };
        self.awaiting(acl.authorize_any(&tenant, &who, resource_type, operation)).await
    }

    /// The authorizer and who asks (clones, so an awaited call does not borrow the state).
    fn who(&self) -> (std::sync::Arc<crate::acl::Authorizer>, String, String, String) {
        (
            self.ctx.acl.clone(),
            self.conn.tenant.clone(),
            self.conn.principal.clone(),
            self.conn.client_ip.clone(),
        )
    }
}

impl acls::Host for GuestState {
    async fn authorize(&mut self, resource_type: i8, name: String, operation: i8) -> bool {
        self.allowed(resource_type, &name, operation).await
    }

    async fn authorize_any(&mut self, resource_type: i8, operation: i8) -> bool {
        self.allowed_any(resource_type, operation).await
    }

    async fn describe(&mut self, f: acls::AclFilter) -> Result<Vec<acls::AclBinding>, (ErrorCode, String)> {
        let (acl, tenant, principal, host) = self.who();
        let who = Who { principal: &principal, host: &host };
        let found =
            self.awaiting(acl.describe(&tenant, &who, &guise_guest_sdk::acl_fields!(f => AclFilter))).await?;
        Ok(found.into_iter().map(|b| guise_guest_sdk::acl_fields!(b => acls::AclBinding)).collect())
    }

    async fn create(&mut self, bindings: Vec<acls::AclBinding>) -> Vec<Result<(), (ErrorCode, String)>> {
        let (acl, tenant, principal, host) = self.who();
        let who = Who { principal: &principal, host: &host };
        let bindings: Vec<AclBinding> =
            bindings.into_iter().map(|b| guise_guest_sdk::acl_fields!(b => AclBinding)).collect();
        self.awaiting(acl.create(&tenant, &who, &bindings)).await
    }

    async fn delete(
        &mut self,
        filters: Vec<acls::AclFilter>,
    ) -> Vec<Result<Vec<acls::AclBinding>, (ErrorCode, String)>> {
        let (acl, tenant, principal, host) = self.who();
        let who = Who { principal: &principal, host: &host };
        let filters: Vec<AclFilter> =
            filters.into_iter().map(|f| guise_guest_sdk::acl_fields!(f => AclFilter)).collect();
        let deleted = self.awaiting(acl.delete(&tenant, &who, &filters)).await;
        deleted
            .into_iter()
            .map(|r| {
                r.map(|bs| {
                    bs.into_iter().map(|b| guise_guest_sdk::acl_fields!(b => acls::AclBinding)).collect()
                })
            })
            .collect()
    }
}
