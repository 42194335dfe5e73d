//! A deliberately broken translator, for testing how the host contains guest failures.
//!
//! It is the Kafka translator, except for Produce requests whose client id is:
//! - `fault:trap` — the guest panics (a trap: `panic = "abort"` in the guest profile);
//! - `fault:loop` — the guest spins forever (stopped by the host's epoch deadline);
//! - `fault:oom` — the guest allocates until its memory cap makes allocation fail.
//!
//! Its `error-response` is the real translator's, so the host can still answer the request.

use guise_guest_sdk::{ErrorCode, Handler, Outcome, Request, Segment, Services};
use guise_kafka::KafkaTranslator;

pub struct Faulty;

guise_guest_sdk::export_protocol_handler!(Faulty);

const PRODUCE: i16 = 0;

/// The client id of a request header v1+ (api key, version, correlation id, then a nullable
/// int16-length string).
fn client_id(frame: &[u8]) -> Option<&str> {
    let len = i16::from_be_bytes([*frame.get(8)?, *frame.get(9)?]);
    let len = usize::try_from(len).ok()?;
    std::str::from_utf8(frame.get(10..10 + len)?).ok()
}

#[inline(never)]
fn spin() -> ! {
    let mut x = 0u64;
    loop {
        x = std::hint::black_box(x.wrapping_add(1));
    }
}

fn exhaust_memory() -> usize {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(vec![1u8; 1 << 20]);
        std::hint::black_box(&hoard);
    }
}

impl Handler for Faulty {
    fn handle<S: Services>(svc: &S, req: &Request<'_, S::Buffer>, final_: bool) -> Outcome<S::Buffer> {
        let api_key = req.bytes.get(..2).map(|b| i16::from_be_bytes([b[0], b[1]]));
        if api_key == Some(PRODUCE) {
            match client_id(&req.bytes) {
                Some("fault:trap") => panic!("deliberate trap"),
                Some("fault:loop") => spin(),
                Some("fault:oom") => {
                    exhaust_memory();
                }
                _ => {}
            }
        }
        KafkaTranslator::handle(svc, req, final_)
    }

    fn error_response<S: Services>(
        svc: &S,
        req: &Request<'_, S::Buffer>,
        code: ErrorCode,
    ) -> Option<Vec<Segment<S::Buffer>>> {
        KafkaTranslator::error_response(svc, req, code)
    }
}

#[cfg(test)]
mod tests {
    use super::client_id;

    #[test]
    fn reads_the_client_id() {
        let frame =
            [0, 0, 0, 9, 0, 0, 0, 1, 0, 10, b'f', b'a', b'u', b'l', b't', b':', b't', b'r', b'a', b'p', 0];
        assert_eq!(client_id(&frame), Some("fault:trap"));
        assert_eq!(client_id(&[0, 0, 0, 9, 0, 0, 0, 1, 0xff, 0xff]), None);
    }
}
