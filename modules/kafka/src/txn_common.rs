//! What the transaction APIs share (InitProducerId with a transactional id, AddPartitionsToTxn,
//! AddOffsetsToTxn, TxnOffsetCommit, EndTxn, DescribeTransactions, ListTransactions, and the
//! transactional Produce): the authorization of a transactional id, the error mapping of request
//! versions that predate PRODUCER_FENCED, and Kafka's names of the transaction states.
//!
//! The host runs the tenant's transaction coordinator (transaction versions 1 and 2: KIP-98 with
//! KIP-447's group fields, and KIP-890 part 2's epoch bump per transaction with partitions and
//! groups added by Produce v12+ and TxnOffsetCommit v5+); the translator decides what Kafka's
//! `KafkaApis` decides before it asks the coordinator (the ACL checks whose answer depends on the
//! request, the partitions that cannot be added) and maps the coordinator's answers to the
//! request's version.

use guise_guest_sdk::{ErrorCode, ProducerIdAndEpoch, Services, acl, error};
use kafka_protocol::messages::ProducerId;

/// Kafka's transaction state names (`TransactionState.name`), for ListTransactions' unknown state
/// filters. `Dead` and `PrepareEpochFence` are Kafka's too: they are known names, which a
/// coordinator never lists.
pub(crate) const STATES: &[&str] = &[
    "Empty",
    "Ongoing",
    "PrepareCommit",
    "PrepareAbort",
    "CompleteCommit",
    "CompleteAbort",
    "Dead",
    "PrepareEpochFence",
];

/// Whether the principal may use `transactional_id` (WRITE on the TransactionalId resource), as
/// Kafka requires for InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit,
/// EndTxn and a transactional Produce.
pub(crate) fn may_write<S: Services>(svc: &S, transactional_id: &str) -> bool {
    svc.authorize(acl::TRANSACTIONAL_ID, transactional_id, acl::WRITE)
}

/// The request's producer id and epoch.
pub(crate) fn producer(producer_id: ProducerId, producer_epoch: i16) -> ProducerIdAndEpoch {
    ProducerIdAndEpoch { producer_id: producer_id.0, producer_epoch }
}

/// The coordinator's `code` as a client of request version `version` understands it: before
/// `first` (the version that introduced PRODUCER_FENCED) a fenced producer gets
/// INVALID_PRODUCER_EPOCH, which such clients handle the same way, as Kafka's `KafkaApis` maps it.
pub(crate) fn fenced_before(code: ErrorCode, version: i16, first: i16) -> ErrorCode {
    if code == error::PRODUCER_FENCED && version < first { error::INVALID_PRODUCER_EPOCH } else { code }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn producer_fenced_is_mapped_only_before_its_version() {
        assert_eq!(fenced_before(error::PRODUCER_FENCED, 1, 2), error::INVALID_PRODUCER_EPOCH);
        assert_eq!(fenced_before(error::PRODUCER_FENCED, 2, 2), error::PRODUCER_FENCED);
        assert_eq!(fenced_before(error::CONCURRENT_TRANSACTIONS, 0, 2), error::CONCURRENT_TRANSACTIONS);
        assert_eq!(fenced_before(error::NONE, 0, 4), error::NONE);
    }
}
