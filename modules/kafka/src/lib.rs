//! The Kafka translator: a Guise `protocol-handler` guest.
//!
//! It decodes one Kafka request, calls the host's services, and encodes the response. It keeps no
//! state between requests; record bytes stay in host buffers (produce names slices of the request
//! frame, fetch splices stored batches into the response as buffer segments).
//!
//! One file per API; `apis` is the single table of what is implemented, used both for dispatch
//! and for the ApiVersions response, so the server advertises exactly what it serves.

mod api_versions;
mod apis;
mod claims;
mod context;
mod create_partitions;
mod create_topics;
mod delete_groups;
mod delete_topics;
mod describe_configs;
mod describe_groups;
mod fetch;
mod find_coordinator;
mod group_common;
mod heartbeat;
mod init_producer_id;
mod join_group;
mod leave_group;
mod list_groups;
mod list_offsets;
mod metadata;
mod offset_commit;
mod offset_delete;
mod offset_fetch;
mod produce;
#[cfg(test)]
mod proptests;
mod sync_group;
#[cfg(test)]
mod test_util;

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
        let result = match cx.api_key {
            0 => produce::handle(&cx),
            1 => fetch::handle(&cx),
            2 => list_offsets::handle(&cx),
            3 => metadata::handle(&cx),
            8 => offset_commit::handle(&cx),
            9 => offset_fetch::handle(&cx),
            10 => find_coordinator::handle(&cx),
            11 => join_group::handle(&cx),
            12 => heartbeat::handle(&cx),
            13 => leave_group::handle(&cx),
            14 => sync_group::handle(&cx),
            15 => describe_groups::handle(&cx),
            16 => list_groups::handle(&cx),
            18 => api_versions::handle(&cx),
            19 => create_topics::handle(&cx),
            20 => delete_topics::handle(&cx),
            22 => init_producer_id::handle(&cx),
            32 => describe_configs::handle(&cx),
            37 => create_partitions::handle(&cx),
            42 => delete_groups::handle(&cx),
            47 => offset_delete::handle(&cx),
            key => Err(format!("api key {key} is in the table but has no handler")),
        };
        result.unwrap_or_else(|reason| cx.close(reason))
    }

    fn error_response<S: Services>(
        svc: &S,
        req: &Request<'_, S::Buffer>,
        code: ErrorCode,
    ) -> Option<Vec<Segment<S::Buffer>>> {
        let cx = Ctx::new(svc, req, true).ok()?;
        let result = match cx.api_key {
            0 => produce::error(&cx, code),
            1 => fetch::error(&cx, code),
            2 => list_offsets::error(&cx, code),
            3 => metadata::error(&cx, code),
            8 => offset_commit::error(&cx, code),
            9 => offset_fetch::error(&cx, code),
            10 => find_coordinator::error(&cx, code),
            11 => join_group::error(&cx, code),
            12 => heartbeat::error(&cx, code),
            13 => leave_group::error(&cx, code),
            14 => sync_group::error(&cx, code),
            15 => describe_groups::error(&cx, code),
            16 => list_groups::error(&cx, code),
            18 => api_versions::error(&cx, code),
            19 => create_topics::error(&cx, code),
            20 => delete_topics::error(&cx, code),
            22 => init_producer_id::error(&cx, code),
            32 => describe_configs::error(&cx, code),
            37 => create_partitions::error(&cx, code),
            42 => delete_groups::error(&cx, code),
            47 => offset_delete::error(&cx, code),
            _ => return None,
        };
        match result {
            Ok(Outcome::Respond(r)) => r,
            _ => None,
        }
    }
}
