//! The host side of the `producers` WIT interface: InitProducerId for idempotent producers.
//!
//! * No `current` (or producer id -1): a new producer id from the log (durable, never repeated),
//!   epoch 0.
//! * `current` = (id, epoch): KIP-360's epoch bump, the same id at epoch + 1, which becomes the
//!   id's latest epoch host-wide, so appends at an older epoch get INVALID_PRODUCER_EPOCH. When
//!   the id cannot be bumped (epoch exhausted at `i16::MAX - 1`, an id the log never handed out,
//!   a client behind the latest epoch) the client gets a new id at epoch 0, which is always safe
//!   for a non-transactional producer (and what Kafka itself answers every non-transactional
//!   InitProducerId with).
//! * A transactional id: the transaction coordinator's InitProducerId (the `transactions`
//!   interface, which the translator calls with the request's transaction timeout; here Kafka's
//!   default timeout of 60 s).

use super::bindings::producers;
use super::state::GuestState;
use crate::storage::StorageError;

impl GuestState {
    async fn new_producer(&mut self) -> Result<producers::ProducerIdAndEpoch, i16> {
        let log = self.log();
        let producer_id =
            self.awaiting(log.allocate_producer_id()).await.map_err(|e| self.producer_error(e))?;
        tracing::debug!(conn = self.conn.id, producer_id, "InitProducerId: new producer id");
        Ok(producers::ProducerIdAndEpoch { producer_id, producer_epoch: 0 })
    }

    fn producer_error(&self, e: StorageError) -> i16 {
        // The log has already logged an I/O failure with its file.
        tracing::debug!(conn = self.conn.id, "InitProducerId failed: {e}");
        e.kafka_code()
    }
}

impl producers::Host for GuestState {
    async fn init_producer_id(
        &mut self,
        transactional_id: Option<String>,
        current: Option<producers::ProducerIdAndEpoch>,
    ) -> Result<producers::ProducerIdAndEpoch, i16> {
        if let Some(tid) = transactional_id.filter(|t| !t.is_empty()) {
            return super::bindings::transactions::Host::init_producer_id(self, tid, 60_000, current).await;
        }
        // As Kafka: IDEMPOTENT_WRITE on the cluster, or WRITE on some topic.
        if !self.cluster_allowed(crate::acl::codes::IDEMPOTENT_WRITE).await
            && !self.allowed_any(crate::acl::codes::TOPIC, crate::acl::codes::WRITE).await
        {
            return Err(guise_guest_sdk::error::CLUSTER_AUTHORIZATION_FAILED);
        }
        let Some(current) = current.filter(|c| c.producer_id >= 0) else {
            return self.new_producer().await;
        };
        let (producer_id, epoch) = (current.producer_id, current.producer_epoch);
        let log = self.log();
        match self.awaiting(log.bump_producer_epoch(producer_id, epoch)).await {
            Ok(Some(producer_epoch)) => {
                tracing::debug!(
                    conn = self.conn.id,
                    producer_id,
                    producer_epoch,
                    "InitProducerId: epoch bumped"
                );
                Ok(producers::ProducerIdAndEpoch { producer_id, producer_epoch })
            }
            Ok(None) => {
                tracing::debug!(
                    conn = self.conn.id,
                    producer_id,
                    epoch,
                    "InitProducerId: cannot bump this producer's epoch; handing out a new id"
                );
                self.new_producer().await
            }
            Err(e) => Err(self.producer_error(e)),
        }
    }
}
