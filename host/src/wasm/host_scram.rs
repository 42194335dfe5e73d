//! The host side of the `scram` WIT interface: DescribeUserScramCredentials needs DESCRIBE on
//! the cluster, AlterUserScramCredentials ALTER (as in Kafka); then `crate::scram` answers, for
//! the connection's tenant only.

use super::bindings::scram;
use super::state::GuestState;
use crate::acl::codes;
use guise_guest_sdk::error::CLUSTER_AUTHORIZATION_FAILED;

type Refused = (i16, String);

impl scram::Host for GuestState {
    async fn describe(&mut self, users: Option<Vec<String>>) -> Result<Vec<scram::UserCredentials>, Refused> {
        if !self.cluster_allowed(codes::DESCRIBE).await {
            return Err((
                CLUSTER_AUTHORIZATION_FAILED,
                "describing SCRAM credentials needs DESCRIBE on the cluster".into(),
            ));
        }
        let found = self.ctx.scram.describe(&self.conn.tenant, users.as_deref());
        Ok(found
            .into_iter()
            .map(|(user, result)| scram::UserCredentials {
                user,
                outcome: result.map(|infos| {
                    infos
                        .into_iter()
                        .map(|(mechanism, iterations)| scram::CredentialInfo { mechanism, iterations })
                        .collect()
                }),
            })
            .collect())
    }

    async fn alter(
        &mut self,
        deletions: Vec<scram::Deletion>,
        upsertions: Vec<scram::Upsertion>,
    ) -> Vec<(String, Result<(), Refused>)> {
        let deletions: Vec<crate::scram::Deletion> = deletions
            .into_iter()
            .map(|d| crate::scram::Deletion { user: d.user, mechanism: d.mechanism })
            .collect();
        let upsertions: Vec<crate::scram::Upsertion> = upsertions
            .into_iter()
            .map(|u| crate::scram::Upsertion {
                user: u.user,
                mechanism: u.mechanism,
                iterations: u.iterations,
                salt: u.salt,
                salted_password: u.salted_password,
            })
            .collect();
        if !self.cluster_allowed(codes::ALTER).await {
            let users = crate::scram::users_named(&deletions, &upsertions);
            let why = "altering SCRAM credentials needs ALTER on the cluster".to_string();
            return users
                .into_iter()
                .map(|u| (u, Err((CLUSTER_AUTHORIZATION_FAILED, why.clone()))))
                .collect();
        }
        let (store, tenant) = (self.ctx.scram.clone(), self.conn.tenant.clone());
        self.awaiting(async move { store.alter(&tenant, &deletions, &upsertions).await }).await
    }
}
