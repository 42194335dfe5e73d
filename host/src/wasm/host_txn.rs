//! The host side of the `transactions` WIT interface: the translator's calls on the transaction
//! coordinator (`crate::txn`), for the connection's tenant, with Kafka's ACLs checked here (the
//! enforcement boundary): WRITE on the transactional id for every call of a producer, WRITE on
//! each topic added, READ on a group whose offsets join, DESCRIBE on the ids described or listed.

use super::bindings::{groups, producers, transactions, types};
use super::state::GuestState;
use crate::acl::codes as acl;
use crate::txn::Producer;
use guise_guest_sdk::error::{
    GROUP_AUTHORIZATION_FAILED, OPERATION_NOT_ATTEMPTED, TOPIC_AUTHORIZATION_FAILED,
    TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
};

fn producer(p: producers::ProducerIdAndEpoch) -> Producer {
    Producer { id: p.producer_id, epoch: p.producer_epoch }
}

fn wire(p: Producer) -> producers::ProducerIdAndEpoch {
    producers::ProducerIdAndEpoch { producer_id: p.id, producer_epoch: p.epoch }
}

impl GuestState {
    /// The coordinator and this connection's tenant (clones, to await a call on).
    fn txn(&self) -> (std::sync::Arc<crate::txn::Coordinator>, String) {
        (self.ctx.txn.clone(), self.conn.tenant.clone())
    }

    /// WRITE on the transactional id, and a log that writes markers.
    async fn may_write_txn(&mut self, id: &str) -> Result<(), i16> {
        if !self.ctx.txn.enabled() {
            // As before transactions existed: every client treats this as fatal for the
            // transactional producer and names the transactional id as the problem; a retriable
            // code would keep it retrying forever, UNSUPPORTED_VERSION would send it into version
            // negotiation.
            tracing::warn!(
                conn = self.conn.id,
                transactional_id = id,
                "refused a transactional id: transactions are not served on this storage backend yet \
                 (answered TRANSACTIONAL_ID_AUTHORIZATION_FAILED)"
            );
            return Err(TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
        }
        if self.allowed(acl::TRANSACTIONAL_ID, id, acl::WRITE).await {
            Ok(())
        } else {
            Err(TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
        }
    }
}

impl transactions::Host for GuestState {
    async fn init_producer_id(
        &mut self,
        transactional_id: String,
        transaction_timeout_ms: i32,
        current: Option<producers::ProducerIdAndEpoch>,
    ) -> Result<producers::ProducerIdAndEpoch, i16> {
        self.may_write_txn(&transactional_id).await?;
        let (txn, tenant) = self.txn();
        let current = current.map(producer);
        let p = self
            .awaiting(txn.init_producer_id(&tenant, &transactional_id, transaction_timeout_ms, current))
            .await?;
        Ok(wire(p))
    }

    async fn add_partitions(
        &mut self,
        transactional_id: String,
        p: producers::ProducerIdAndEpoch,
        partitions: Vec<types::TopicPartition>,
    ) -> Vec<i16> {
        if let Err(code) = self.may_write_txn(&transactional_id).await {
            return vec![code; partitions.len()];
        }
        let allowed = self.topics_allowed(partitions.iter().map(|tp| tp.topic.as_str()), acl::WRITE).await;
        let internal: Vec<bool> = partitions
            .iter()
            .map(|tp| self.ctx.internal.lookup(&self.ctx.namespace, &tp.topic).is_some())
            .collect();
        if allowed.iter().zip(&internal).any(|(ok, internal)| !ok || *internal) {
            return allowed
                .iter()
                .zip(&internal)
                .map(|(ok, internal)| match (ok, internal) {
                    (false, _) => TOPIC_AUTHORIZATION_FAILED,
                    (true, true) => guise_guest_sdk::error::INVALID_TOPIC_EXCEPTION,
                    (true, false) => OPERATION_NOT_ATTEMPTED,
                })
                .collect();
        }
        let partitions: Vec<(String, i32)> =
            partitions.into_iter().map(|tp| (tp.topic, tp.partition)).collect();
        let (txn, tenant) = self.txn();
        self.awaiting(txn.add_partitions(&tenant, &transactional_id, producer(p), &partitions)).await
    }

    async fn add_offsets(
        &mut self,
        transactional_id: String,
        p: producers::ProducerIdAndEpoch,
        group_id: String,
    ) -> i16 {
        if let Err(code) = self.may_write_txn(&transactional_id).await {
            return code;
        }
        if !self.allowed(acl::GROUP, &group_id, acl::READ).await {
            return GROUP_AUTHORIZATION_FAILED;
        }
        let (txn, tenant) = self.txn();
        self.awaiting(txn.add_offsets(&tenant, &transactional_id, producer(p), &group_id)).await
    }

    async fn commit_offsets(
        &mut self,
        transactional_id: String,
        p: producers::ProducerIdAndEpoch,
        group_id: String,
        generation_id: i32,
        member_id: String,
        group_instance_id: Option<String>,
        offsets: Vec<groups::OffsetCommit>,
    ) -> Vec<i16> {
        if let Err(code) = self.may_write_txn(&transactional_id).await {
            return vec![code; offsets.len()];
        }
        if !self.allowed(acl::GROUP, &group_id, acl::READ).await {
            return vec![GROUP_AUTHORIZATION_FAILED; offsets.len()];
        }
        let allowed = self.topics_allowed(offsets.iter().map(|o| o.topic.as_str()), acl::READ).await;
        let mut out = vec![TOPIC_AUTHORIZATION_FAILED; offsets.len()];
        let mut ok_at = Vec::new();
        let mut commits = Vec::new();
        for (i, (o, ok)) in offsets.into_iter().zip(allowed).enumerate() {
            if ok {
                ok_at.push(i);
                commits.push(crate::coord::OffsetCommit {
                    topic: o.topic,
                    partition: o.partition,
                    offset: o.offset,
                    leader_epoch: o.leader_epoch,
                    metadata: o.metadata,
                });
            }
        }
        let (txn, tenant) = self.txn();
        let codes = self
            .awaiting(txn.commit_offsets(
                &tenant,
                &transactional_id,
                producer(p),
                &group_id,
                generation_id,
                &member_id,
                group_instance_id.as_deref(),
                &commits,
            ))
            .await;
        for (i, code) in ok_at.into_iter().zip(codes) {
            out[i] = code;
        }
        out
    }

    async fn end(
        &mut self,
        transactional_id: String,
        p: producers::ProducerIdAndEpoch,
        commit: bool,
        bump_epoch: bool,
    ) -> Result<producers::ProducerIdAndEpoch, i16> {
        self.may_write_txn(&transactional_id).await?;
        let (txn, tenant) = self.txn();
        let p = self.awaiting(txn.end(&tenant, &transactional_id, producer(p), commit, bump_epoch)).await?;
        Ok(wire(p))
    }

    async fn pending_offsets(
        &mut self,
        group_id: String,
        partitions: Vec<types::TopicPartition>,
    ) -> Vec<bool> {
        let partitions: Vec<(String, i32)> =
            partitions.into_iter().map(|tp| (tp.topic, tp.partition)).collect();
        let (txn, tenant) = self.txn();
        self.awaiting(txn.pending_offsets(&tenant, &group_id, &partitions)).await
    }

    async fn describe(&mut self, transactional_ids: Vec<String>) -> Vec<transactions::TxnDescription> {
        let (txn, tenant) = self.txn();
        let found = self.awaiting(txn.describe(&tenant, &transactional_ids)).await;
        let mut out = Vec::with_capacity(found.len());
        for d in found {
            let allowed = self.allowed(acl::TRANSACTIONAL_ID, &d.transactional_id, acl::DESCRIBE).await;
            out.push(if allowed {
                transactions::TxnDescription {
                    transactional_id: d.transactional_id,
                    error: d.error,
                    state: d.state.to_string(),
                    timeout_ms: d.timeout_ms,
                    start_ms: d.start_ms,
                    producer_id: d.producer.id,
                    producer_epoch: d.producer.epoch,
                    partitions: d
                        .partitions
                        .into_iter()
                        .map(|(topic, partition)| types::TopicPartition { topic, partition })
                        .collect(),
                }
            } else {
                transactions::TxnDescription {
                    transactional_id: d.transactional_id,
                    error: TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
                    state: String::new(),
                    timeout_ms: 0,
                    start_ms: -1,
                    producer_id: -1,
                    producer_epoch: -1,
                    partitions: Vec::new(),
                }
            });
        }
        out
    }

    async fn list(
        &mut self,
        states: Vec<String>,
        producer_ids: Vec<i64>,
        min_duration_ms: i64,
    ) -> Vec<transactions::TxnListing> {
        let (txn, tenant) = self.txn();
        let found = self.awaiting(txn.list(&tenant, &states, &producer_ids, min_duration_ms)).await;
        let mut out = Vec::with_capacity(found.len());
        for (id, producer_id, state) in found {
            if self.allowed(acl::TRANSACTIONAL_ID, &id, acl::DESCRIBE).await {
                out.push(transactions::TxnListing {
                    transactional_id: id,
                    producer_id,
                    state: state.to_string(),
                });
            }
        }
        out
    }
}
