//! The one append door: the [`Log`] the front ends hold. A produce (Kafka's through the
//! translator, Pulsar's SEND) goes through the transform bound to its topic; everything else,
//! and the host's own appends (`append_host`: a transform's outputs), go to the raw log as they
//! are. Internal services (the coordinator, the Pulsar cursor store, the module store) are
//! handed the raw log, so nothing they write is transformed.

use super::Transforms;
use crate::record::batch::Counts;
use crate::storage::{Append, AppendInfo, Log, StorageError, TopicName};

use bytes::Bytes;
use std::sync::Arc;

pub(super) struct TransformingLog {
    pub(super) transforms: Arc<Transforms>,
}

impl TransformingLog {
    fn raw(&self) -> &dyn Log {
        &*self.transforms.shared.log
    }
}

crate::storage::delegate_log!(TransformingLog, raw, {
    async fn append_with(
        &self,
        name: &TopicName,
        partition: i32,
        records: Bytes,
        how: Append,
    ) -> Result<AppendInfo, StorageError> {
        match how.counts {
            // A client's produce, or a Pulsar application's through an ingress topic.
            Counts::Exact => self.transforms.append_from(name, partition, records, how.ingress).await,
            // Batches the host built itself are never transformed again.
            Counts::Span => self.raw().append_with(name, partition, records, how).await,
        }
    }
});
