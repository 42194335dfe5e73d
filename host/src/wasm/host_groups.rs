//! The host side of the `groups` WIT interface: the translator's calls on the group coordinator.
//! (Placeholder until the coordinator lands: every call answers COORDINATOR_NOT_AVAILABLE.)

use super::bindings::{groups, types};
use super::state::GuestState;

const COORDINATOR_NOT_AVAILABLE: i16 = 15;

impl groups::Host for GuestState {
    fn join(&mut self, req: groups::JoinRequest) -> groups::JoinOutcome {
        groups::JoinOutcome::Done(groups::JoinResult {
            error: COORDINATOR_NOT_AVAILABLE,
            generation_id: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id: req.member_id,
            members: Vec::new(),
            skip_assignment: false,
        })
    }

    fn sync(&mut self, _req: groups::SyncRequest) -> groups::SyncOutcome {
        groups::SyncOutcome::Done(groups::SyncResult {
            error: COORDINATOR_NOT_AVAILABLE,
            protocol_type: None,
            protocol_name: None,
            assignment: Vec::new(),
        })
    }

    fn heartbeat(&mut self, _: String, _: i32, _: String, _: Option<String>) -> i16 {
        COORDINATOR_NOT_AVAILABLE
    }

    fn leave(&mut self, _: String, members: Vec<groups::Leaving>) -> groups::LeaveResult {
        groups::LeaveResult {
            error: COORDINATOR_NOT_AVAILABLE,
            members: vec![COORDINATOR_NOT_AVAILABLE; members.len()],
        }
    }

    fn describe(&mut self, group_id: String) -> groups::GroupDescription {
        groups::GroupDescription {
            error: COORDINATOR_NOT_AVAILABLE,
            group_id,
            state: "Dead".into(),
            protocol_type: String::new(),
            protocol_name: String::new(),
            members: Vec::new(),
        }
    }

    fn list(&mut self, _: Vec<String>) -> Vec<groups::GroupListing> {
        Vec::new()
    }

    fn delete(&mut self, _: String) -> i16 {
        COORDINATOR_NOT_AVAILABLE
    }

    fn commit_offsets(
        &mut self,
        _: String,
        _: i32,
        _: String,
        _: Option<String>,
        offsets: Vec<groups::OffsetCommit>,
    ) -> Vec<i16> {
        vec![COORDINATOR_NOT_AVAILABLE; offsets.len()]
    }

    fn fetch_offsets(
        &mut self,
        _: String,
        _: Option<Vec<types::TopicPartition>>,
    ) -> Result<Vec<groups::CommittedOffset>, i16> {
        Err(COORDINATOR_NOT_AVAILABLE)
    }

    fn delete_offsets(&mut self, _: String, _: Vec<types::TopicPartition>) -> Result<Vec<i16>, i16> {
        Err(COORDINATOR_NOT_AVAILABLE)
    }
}
