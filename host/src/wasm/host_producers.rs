//! The host side of the `producers` WIT interface: producer ids for idempotent producers.
//! (Placeholder until producer state lands: InitProducerId answers COORDINATOR_NOT_AVAILABLE.)

use super::bindings::producers;
use super::state::GuestState;

impl producers::Host for GuestState {
    fn init_producer_id(
        &mut self,
        _transactional_id: Option<String>,
        _current: Option<producers::ProducerIdAndEpoch>,
    ) -> Result<producers::ProducerIdAndEpoch, i16> {
        Err(15)
    }
}
