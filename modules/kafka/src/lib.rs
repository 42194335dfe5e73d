//! The Kafka translator: a Guise `protocol-handler` guest.
//!
//! It decodes one Kafka request, calls the host's services, and encodes the response. It keeps no
//! state between requests; record bytes stay in host buffers (produce names slices of the request
//! frame, fetch splices stored batches into the response as buffer segments).
//!
//! One file per API; `apis` is the single table of what is implemented, from which dispatch,
//! error responses, the ApiVersions response and the claim check are generated, so the server
//! advertises exactly what it serves.

mod acl_common;
mod add_offsets_to_txn;
mod add_partitions_to_txn;
mod alter_client_quotas;
mod alter_configs;
mod alter_user_scram_credentials;
mod api_versions;
mod apis;
mod claims;
mod context;
mod create_acls;
mod create_partitions;
mod create_topics;
mod delete_acls;
mod delete_groups;
mod delete_records;
mod delete_topics;
mod describe_acls;
mod describe_client_quotas;
mod describe_cluster;
mod describe_configs;
mod describe_groups;
mod describe_log_dirs;
mod describe_producers;
mod describe_topic_partitions;
mod describe_transactions;
mod describe_user_scram_credentials;
mod end_txn;
mod fetch;
mod find_coordinator;
mod group_common;
mod heartbeat;
mod incremental_alter_configs;
mod init_producer_id;
mod join_group;
mod leave_group;
mod list_groups;
mod list_offsets;
mod list_transactions;
mod metadata;
mod offset_commit;
mod offset_delete;
mod offset_fetch;
mod offset_for_leader_epoch;
mod produce;
#[cfg(test)]
mod proptests;
mod sasl_authenticate;
mod sasl_handshake;
mod sync_group;
#[cfg(test)]
mod test_txn;
#[cfg(test)]
mod test_util;
mod txn_common;
mod txn_offset_commit;

pub use apis::SUPPORTED;
pub use context::Ctx;

use guise_guest_sdk::{ErrorCode, Handler, Outcome, Request, Segment, Services};

/// The translator, exported as the module's `protocol-handler`.
pub struct KafkaTranslator;

#[cfg(feature = "export")]
guise_guest_sdk::export_protocol_handler!(KafkaTranslator);

impl Handler for KafkaTranslator {
    fn handle<S: Services>(svc: &S, req: &Request<'_, S::Buffer>, final_: bool) -> Outcome<S::Buffer> {
        let cx = match Ctx::new(svc, req, final_) {
            Ok(cx) => cx,
            Err(early) => return early,
        };
        let result = apis::handle(&cx);
        result.unwrap_or_else(|reason| cx.close(reason))
    }

    fn error_response<S: Services>(
        svc: &S,
        req: &Request<'_, S::Buffer>,
        code: ErrorCode,
    ) -> Option<Vec<Segment<S::Buffer>>> {
        let cx = Ctx::new(svc, req, true).ok()?;
        let result = apis::error(&cx, code)?;
        match result {
            Ok(Outcome::Respond(r)) => r,
            _ => None,
        }
    }
}
