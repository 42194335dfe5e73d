//! The host side of the `quotas` WIT interface: DescribeClientQuotas needs DESCRIBE_CONFIGS on
//! the cluster, AlterClientQuotas ALTER_CONFIGS (as in Kafka); then `crate::quota` answers, for
//! the connection's tenant only. `throttle-ms` is what the request's client is throttled by now,
//! counting a fetch's response (the bytes its reads returned) as already sent and the request's
//! transform time as already recorded.

use super::bindings::quotas;
use super::state::{GuestState, RequestInfo};
use crate::acl::codes;
use crate::quota::Kind;
use guise_guest_sdk::error::CLUSTER_AUTHORIZATION_FAILED;
use guise_guest_sdk::quotas as rules;

type Refused = (i16, String);

fn entity(parts: Vec<quotas::EntityPart>) -> Vec<rules::EntityPart> {
    parts.into_iter().map(|p| rules::EntityPart { entity_type: p.entity_type, name: p.name }).collect()
}

impl quotas::Host for GuestState {
    async fn describe(
        &mut self,
        components: Vec<quotas::FilterPart>,
        strict: bool,
    ) -> Result<Vec<quotas::Entry>, Refused> {
        if !self.cluster_allowed(codes::DESCRIBE_CONFIGS).await {
            return Err((
                CLUSTER_AUTHORIZATION_FAILED,
                "describing client quotas needs DESCRIBE_CONFIGS on the cluster".into(),
            ));
        }
        let components: Vec<rules::FilterPart> = components
            .into_iter()
            .map(|c| rules::FilterPart { entity_type: c.entity_type, match_type: c.match_type, name: c.name })
            .collect();
        let (quotas, tenant) = (self.ctx.quotas.clone(), self.conn.tenant.clone());
        let found = self.awaiting(quotas.describe(&tenant, &components, strict)).await?;
        Ok(found
            .into_iter()
            .map(|e| quotas::Entry {
                entity: e
                    .entity
                    .into_iter()
                    .map(|p| quotas::EntityPart { entity_type: p.entity_type, name: p.name })
                    .collect(),
                values: e.values,
            })
            .collect())
    }

    async fn alter(
        &mut self,
        alterations: Vec<quotas::Alteration>,
        validate_only: bool,
    ) -> Vec<Result<(), Refused>> {
        if !self.cluster_allowed(codes::ALTER_CONFIGS).await {
            let why = "altering client quotas needs ALTER_CONFIGS on the cluster";
            return alterations.iter().map(|_| Err((CLUSTER_AUTHORIZATION_FAILED, why.into()))).collect();
        }
        let alterations: Vec<rules::Alteration> = alterations
            .into_iter()
            .map(|a| rules::Alteration {
                entity: entity(a.entity),
                ops: a
                    .ops
                    .into_iter()
                    .map(|o| rules::Op { key: o.key, value: o.value, remove: o.remove })
                    .collect(),
            })
            .collect();
        let (quotas, tenant) = (self.ctx.quotas.clone(), self.conn.tenant.clone());
        self.awaiting(quotas.alter(&tenant, &alterations, validate_only)).await
    }

    async fn throttle_ms(&mut self) -> i32 {
        if self.ctx.quotas.unlimited(&self.conn.tenant) {
            return 0;
        }
        let Some(request) = RequestInfo::of(&self.frame) else { return 0 };
        let client = self.conn.quota_client(&request);
        // A fetch's response is recorded once it is sent, and the request's time once it is
        // done; both count already in what it reports (the time so far: what was charged to it,
        // a transform's calls — the translator's own polls are microseconds).
        let pending = [
            (Kind::Fetch, self.fetched as f64),
            (Kind::Request, crate::quota::request_percent(super::park::charged())),
        ];
        let throttle = self.ctx.quotas.throttle_with(&client, Kind::of_api(request.api_key), &pending);
        let ms = i32::try_from(throttle.as_millis()).unwrap_or(i32::MAX);
        self.reported_throttle_ms = ms;
        ms
    }
}
