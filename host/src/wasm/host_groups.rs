//! The host side of the `groups` WIT interface: the translator's calls on the group coordinator
//! (`crate::coord`), for the connection's tenant. A join or sync that must wait answers
//! `pending` and records the group's change counter as the coordinator decided it, so the
//! parked request is re-run as soon as the group changes after that decision.

use super::bindings::{groups, types};
use super::state::{GuestState, Observed, WakeKey};
use crate::acl::codes as acl;
use crate::coord::{self, Step};
use guise_guest_sdk::error::{GROUP_AUTHORIZATION_FAILED, TOPIC_AUTHORIZATION_FAILED};
use std::collections::HashMap;
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

    /// For each entry, whether the principal may do `operation` on its topic (one check per
    /// topic).
    pub(super) async fn topics_allowed<'a>(
        &mut self,
        topics: impl Iterator<Item = &'a str>,
        operation: i8,
    ) -> Vec<bool> {
        let mut seen: HashMap<&str, bool> = HashMap::new();
        let mut out = Vec::new();
        for t in topics {
            let ok = match seen.get(t) {
                Some(ok) => *ok,
                None => {
                    let ok = self.allowed(acl::TOPIC, t, operation).await;
                    seen.insert(t, ok);
                    ok
                }
            };
            out.push(ok);
        }
        out
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
        let refused = if self.group_allowed(&req.group_id, acl::READ).await.is_err() {
            Some(GROUP_AUTHORIZATION_FAILED)
        } else if req.protocols.len() > MAX_PROTOCOLS {
            tracing::info!(conn = self.conn.id, group = %req.group_id, offered = req.protocols.len(), "join refused: too many protocols");
            Some(INCONSISTENT_GROUP_PROTOCOL)
        } else {
            None
        };
        if let Some(error) = refused {
            return groups::JoinOutcome::Done(groups::JoinResult {
                error,
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
        if let Err(error) = self.group_allowed(&req.group_id, acl::READ).await {
            return groups::SyncOutcome::Done(groups::SyncResult {
                error,
                protocol_type: None,
                protocol_name: None,
                assignment: Vec::new(),
            });
        }
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
        if let Err(error) = self.group_allowed(&group_id, acl::READ).await {
            return error;
        }
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
        if let Err(error) = self.group_allowed(&group_id, acl::READ).await {
            return groups::LeaveResult { error, members: vec![error; members.len()] };
        }
        let leaving: Vec<(String, Option<String>)> =
            members.into_iter().map(|m| (m.member_id, m.group_instance_id)).collect();
        let (coord, tenant) = self.coord();
        let r = self.awaiting(coord.leave(&tenant, &group_id, &leaving, Instant::now())).await;
        groups::LeaveResult { error: r.error, members: r.members }
    }

    async fn describe(&mut self, group_id: String) -> groups::GroupDescription {
        if let Err(error) = self.group_allowed(&group_id, acl::DESCRIBE).await {
            return groups::GroupDescription {
                error,
                group_id,
                state: String::new(),
                protocol_type: String::new(),
                protocol_name: String::new(),
                members: Vec::new(),
            };
        }
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
        let listed = self.awaiting(coord.list(&tenant, &states)).await.unwrap_or_default();
        // As Kafka: every group with DESCRIBE on the cluster, else those it may describe.
        let all = self.cluster_allowed(acl::DESCRIBE).await;
        let mut out = Vec::with_capacity(listed.len());
        for g in listed {
            if all || self.allowed(acl::GROUP, &g.group_id, acl::DESCRIBE).await {
                out.push(groups::GroupListing {
                    group_id: g.group_id,
                    protocol_type: g.protocol_type,
                    state: g.state,
                });
            }
        }
        out
    }

    async fn delete(&mut self, group_id: String) -> i16 {
        if let Err(error) = self.group_allowed(&group_id, acl::DELETE).await {
            return error;
        }
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
        if let Err(error) = self.group_allowed(&group_id, acl::READ).await {
            return vec![error; offsets.len()];
        }
        let allowed = self.topics_allowed(offsets.iter().map(|o| o.topic.as_str()), acl::READ).await;
        let offsets: Vec<coord::OffsetCommit> = offsets
            .into_iter()
            .zip(&allowed)
            .filter(|(_, ok)| **ok)
            .map(|(o, _)| o)
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
        let mut committed = self.awaiting(commit).await.into_iter();
        // The refused partitions back in their places.
        allowed
            .into_iter()
            .map(|ok| {
                if ok {
                    committed.next().unwrap_or(TOPIC_AUTHORIZATION_FAILED)
                } else {
                    TOPIC_AUTHORIZATION_FAILED
                }
            })
            .collect()
    }

    async fn fetch_offsets(
        &mut self,
        group_id: String,
        partitions: Option<Vec<types::TopicPartition>>,
    ) -> Result<Vec<groups::CommittedOffset>, i16> {
        self.group_allowed(&group_id, acl::DESCRIBE).await?;
        let explicit = partitions.is_some();
        let partitions: Option<Vec<(String, i32)>> =
            partitions.map(|ps| ps.into_iter().map(|tp| (tp.topic, tp.partition)).collect());
        let (coord, tenant) = self.coord();
        let offsets = self.awaiting(coord.fetch_offsets(&tenant, &group_id, partitions.as_deref())).await?;
        // As Kafka: a named partition of a topic the principal may not describe gets
        // TOPIC_AUTHORIZATION_FAILED; when all are asked for, such topics are left out.
        let allowed = self.topics_allowed(offsets.iter().map(|c| c.topic.as_str()), acl::DESCRIBE).await;
        Ok(offsets
            .into_iter()
            .zip(allowed)
            .filter(|(_, ok)| *ok || explicit)
            .map(|(c, ok)| groups::CommittedOffset {
                topic: c.topic,
                partition: c.partition,
                offset: if ok { c.offset } else { -1 },
                leader_epoch: if ok { c.leader_epoch } else { -1 },
                metadata: if ok { c.metadata } else { None },
                error: if ok { c.error } else { TOPIC_AUTHORIZATION_FAILED },
            })
            .collect())
    }

    async fn delete_offsets(
        &mut self,
        group_id: String,
        partitions: Vec<types::TopicPartition>,
    ) -> Result<Vec<i16>, i16> {
        self.group_allowed(&group_id, acl::DELETE).await?;
        let allowed = self.topics_allowed(partitions.iter().map(|tp| tp.topic.as_str()), acl::READ).await;
        let partitions: Vec<(String, i32)> = partitions
            .into_iter()
            .zip(&allowed)
            .filter(|(_, ok)| **ok)
            .map(|(tp, _)| (tp.topic, tp.partition))
            .collect();
        let (coord, tenant) = self.coord();
        let deleted =
            self.awaiting(coord.delete_offsets(&tenant, &group_id, &partitions, Instant::now())).await?;
        let mut deleted = deleted.into_iter();
        Ok(allowed
            .into_iter()
            .map(|ok| {
                if ok {
                    deleted.next().unwrap_or(TOPIC_AUTHORIZATION_FAILED)
                } else {
                    TOPIC_AUTHORIZATION_FAILED
                }
            })
            .collect())
    }
}
