//! The host side of the `groups` WIT interface: the translator's calls on the group coordinator
//! (`crate::coord`), for the connection's tenant. A join or sync that must wait answers
//! `pending` and records the group's change counter as the coordinator decided it, so the
//! parked request is re-run as soon as the group changes after that decision.

use super::bindings::{groups, types};
use super::state::{GuestState, Observed, WakeKey};
use crate::coord::{self, Step};
use std::time::Instant;

impl GuestState {
    fn observe_group(&mut self, group: &str, seq: i64) {
        let key = WakeKey::Group { tenant: self.conn.tenant.clone(), group: group.to_string() };
        self.observed.retain(|o| o.key != key);
        self.observed.push(Observed { key, value: seq });
    }

    /// The coordinator and this connection's tenant, to await a call on (clones, so the call
    /// does not borrow the state it reports its time to).
    fn coord(&self) -> (std::sync::Arc<crate::coord::Coordinator>, String) {
        (self.ctx.coord.clone(), self.conn.tenant.clone())
    }

    fn client_host_string(&self) -> String {
        // As Kafka reports it: the address without the port, with a leading slash.
        let peer = self.conn.peer.as_str();
        let ip = peer.rsplit_once(':').map_or(peer, |(ip, _)| ip);
        format!("/{}", ip.trim_start_matches('[').trim_end_matches(']'))
    }
}

/// Protocols (assignors) one member may offer in a JoinGroup.
const MAX_PROTOCOLS: usize = 64;
use guise_guest_sdk::error::INCONSISTENT_GROUP_PROTOCOL;

fn join_result(r: coord::JoinResult) -> groups::JoinResult {
    groups::JoinResult {
        error: r.error,
        generation_id: r.generation_id,
        protocol_type: r.protocol_type,
        protocol_name: r.protocol_name,
        leader: r.leader,
        member_id: r.member_id,
        members: r
            .members
            .into_iter()
            .map(|m| groups::Member {
                member_id: m.member_id,
                group_instance_id: m.group_instance_id,
                metadata: m.metadata,
            })
            .collect(),
        skip_assignment: r.skip_assignment,
    }
}

fn sync_result(r: coord::SyncResult) -> groups::SyncResult {
    groups::SyncResult {
        error: r.error,
        protocol_type: r.protocol_type,
        protocol_name: r.protocol_name,
        assignment: r.assignment,
    }
}

impl groups::Host for GuestState {
    async fn join(&mut self, req: groups::JoinRequest) -> groups::JoinOutcome {
        // Choosing the group's protocol compares every member's list with every other's: bound
        // what one member may offer (clients offer one to three assignors).
        if req.protocols.len() > MAX_PROTOCOLS {
            tracing::info!(conn = self.conn.id, group = %req.group_id, offered = req.protocols.len(), "join refused: too many protocols");
            return groups::JoinOutcome::Done(groups::JoinResult {
                error: INCONSISTENT_GROUP_PROTOCOL,
                generation_id: -1,
                protocol_type: None,
                protocol_name: None,
                leader: String::new(),
                member_id: req.member_id,
                members: Vec::new(),
                skip_assignment: false,
            });
        }
        let request = coord::JoinRequest {
            group_id: req.group_id,
            member_id: req.member_id,
            group_instance_id: req.group_instance_id,
            client_id: req.client_id,
            client_host: self.client_host_string(),
            session_timeout_ms: req.session_timeout_ms,
            rebalance_timeout_ms: req.rebalance_timeout_ms,
            protocol_type: req.protocol_type,
            protocols: req
                .protocols
                .into_iter()
                .map(|p| coord::Protocol { name: p.name, metadata: p.metadata })
                .collect(),
            require_known_member: req.require_known_member,
            reason: req.reason,
            conn_id: self.conn.id,
        };
        let (coord, tenant) = self.coord();
        match self.awaiting(coord.join(&tenant, &request, Instant::now())).await {
            Step::Done(r) => groups::JoinOutcome::Done(join_result(r)),
            Step::Pending { seq } => {
                self.observe_group(&request.group_id, seq);
                groups::JoinOutcome::Pending
            }
        }
    }

    async fn sync(&mut self, req: groups::SyncRequest) -> groups::SyncOutcome {
        let request = coord::SyncRequest {
            group_id: req.group_id,
            generation_id: req.generation_id,
            member_id: req.member_id,
            group_instance_id: req.group_instance_id,
            protocol_type: req.protocol_type,
            protocol_name: req.protocol_name,
            assignments: req.assignments.into_iter().map(|a| (a.member_id, a.assignment)).collect(),
        };
        let (coord, tenant) = self.coord();
        match self.awaiting(coord.sync(&tenant, &request, Instant::now())).await {
            Step::Done(r) => groups::SyncOutcome::Done(sync_result(r)),
            Step::Pending { seq } => {
                self.observe_group(&request.group_id, seq);
                groups::SyncOutcome::Pending
            }
        }
    }

    async fn heartbeat(
        &mut self,
        group_id: String,
        generation_id: i32,
        member_id: String,
        group_instance_id: Option<String>,
    ) -> i16 {
        let (coord, tenant) = self.coord();
        let now = Instant::now();
        self.awaiting(coord.heartbeat(
            &tenant,
            &group_id,
            generation_id,
            &member_id,
            group_instance_id.as_deref(),
            now,
        ))
        .await
    }

    async fn leave(&mut self, group_id: String, members: Vec<groups::Leaving>) -> groups::LeaveResult {
        let leaving: Vec<(String, Option<String>)> =
            members.into_iter().map(|m| (m.member_id, m.group_instance_id)).collect();
        let (coord, tenant) = self.coord();
        let r = self.awaiting(coord.leave(&tenant, &group_id, &leaving, Instant::now())).await;
        groups::LeaveResult { error: r.error, members: r.members }
    }

    async fn describe(&mut self, group_id: String) -> groups::GroupDescription {
        let (coord, tenant) = self.coord();
        let d = self.awaiting(coord.describe(&tenant, &group_id)).await;
        groups::GroupDescription {
            error: d.error,
            group_id: d.group_id,
            state: d.state,
            protocol_type: d.protocol_type,
            protocol_name: d.protocol_name,
            members: d
                .members
                .into_iter()
                .map(|m| groups::MemberDescription {
                    member_id: m.member_id,
                    group_instance_id: m.group_instance_id,
                    client_id: m.client_id,
                    client_host: m.client_host,
                    metadata: m.metadata,
                    assignment: m.assignment,
                })
                .collect(),
        }
    }

    async fn list(&mut self, states: Vec<String>) -> Vec<groups::GroupListing> {
        // The WIT has no error here: a coordinator that cannot load the tenant lists nothing
        // (and has logged why).
        let (coord, tenant) = self.coord();
        self.awaiting(coord.list(&tenant, &states))
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|g| groups::GroupListing {
                group_id: g.group_id,
                protocol_type: g.protocol_type,
                state: g.state,
            })
            .collect()
    }

    async fn delete(&mut self, group_id: String) -> i16 {
        let (coord, tenant) = self.coord();
        self.awaiting(coord.delete(&tenant, &group_id, Instant::now())).await
    }

    async fn commit_offsets(
        &mut self,
        group_id: String,
        generation_id: i32,
        member_id: String,
        group_instance_id: Option<String>,
        offsets: Vec<groups::OffsetCommit>,
    ) -> Vec<i16> {
        let offsets: Vec<coord::OffsetCommit> = offsets
            .into_iter()
            .map(|o| coord::OffsetCommit {
                topic: o.topic,
                partition: o.partition,
                offset: o.offset,
                leader_epoch: o.leader_epoch,
                metadata: o.metadata,
            })
            .collect();
        let (coord, tenant) = self.coord();
        let commit = coord.commit_offsets(
            &tenant,
            &group_id,
            generation_id,
            &member_id,
            group_instance_id.as_deref(),
            &offsets,
            Instant::now(),
        );
        self.awaiting(commit).await
    }

    async fn fetch_offsets(
        &mut self,
        group_id: String,
        partitions: Option<Vec<types::TopicPartition>>,
    ) -> Result<Vec<groups::CommittedOffset>, i16> {
        let partitions: Option<Vec<(String, i32)>> =
            partitions.map(|ps| ps.into_iter().map(|tp| (tp.topic, tp.partition)).collect());
        let (coord, tenant) = self.coord();
        let offsets = self.awaiting(coord.fetch_offsets(&tenant, &group_id, partitions.as_deref())).await?;
        Ok(offsets
            .into_iter()
            .map(|c| groups::CommittedOffset {
                topic: c.topic,
                partition: c.partition,
                offset: c.offset,
                leader_epoch: c.leader_epoch,
                metadata: c.metadata,
                error: c.error,
            })
            .collect())
    }

    async fn delete_offsets(
        &mut self,
        group_id: String,
        partitions: Vec<types::TopicPartition>,
    ) -> Result<Vec<i16>, i16> {
        let partitions: Vec<(String, i32)> =
            partitions.into_iter().map(|tp| (tp.topic, tp.partition)).collect();
        let (coord, tenant) = self.coord();
        self.awaiting(coord.delete_offsets(&tenant, &group_id, &partitions, Instant::now())).await
    }
}
