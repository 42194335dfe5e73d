//! A tenant transform that misbehaves on purpose, for the host's tests and benchmarks. Its
//! configuration key `mode` picks what it does with each record:
//!
//! - `pass` (the default): emit the record unchanged (the pass-through of the benchmarks);
//! - `drop`: emit nothing;
//! - `double`: emit every record twice;
//! - `route`: emit every record to the topic named by the key `topic`;
//! - `tag`: emit every record with a header `guise.tag` set to the key `tag` (which version
//!   processed a record, for hot-swap tests);
//! - `error`: fail the batch with an error message;
//! - `trap`: panic (a Wasm trap);
//! - `loop`: spin forever (stopped by the host's CPU deadline);
//! - `oom`: allocate until the host's memory cap stops it.

use guise_guest_sdk::transform::{self, Output, Record, Result, TransformError};

pub fn chaos(record: Record, out: &mut Output) -> Result<()> {
    let mode = transform::config("mode").unwrap_or_else(|| "pass".to_string());
    match mode.as_str() {
        "pass" => out.emit(record),
        "drop" => {}
        "double" => {
            out.emit(record.clone());
            out.emit(record);
        }
        "route" => {
            let topic =
                transform::config("topic").ok_or_else(|| TransformError::new("mode=route needs topic"))?;
            out.emit_to(&topic, record);
        }
        "tag" => {
            let tag = transform::config("tag").unwrap_or_default();
            out.emit(record.with_header("guise.tag", Some(tag.into_bytes())));
        }
        "error" => return Err(TransformError::new("chaos: mode=error")),
        "trap" => panic!("chaos: mode=trap"),
        "loop" => spin(),
        "oom" => hoard(),
        other => return Err(TransformError::new(format!("chaos: unknown mode {other:?}"))),
    }
    Ok(())
}

/// Never returns; `black_box` keeps the loop from being optimized into a trap.
fn spin() -> ! {
    let mut n = 0u64;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

/// Keeps allocating (and touching) 1 MiB blocks until the allocator fails.
fn hoard() -> ! {
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    loop {
        blocks.push(vec![1u8; 1 << 20]);
        std::hint::black_box(&blocks);
    }
}

guise_guest_sdk::export_transform!(chaos);

#[cfg(test)]
mod tests {
    use super::*;
    use guise_guest_sdk::transform::test;

    fn rec(v: &str) -> Record {
        Record::new(None, Some(v.as_bytes().to_vec()))
    }

    fn run(config: &[(&str, &str)]) -> Result<Vec<(Option<String>, Record)>> {
        test::run_with_config(chaos, "in", vec![rec("a"), rec("b")], config)
    }

    #[test]
    fn well_behaved_modes() {
        assert_eq!(run(&[]).unwrap().len(), 2);
        assert!(run(&[("mode", "drop")]).unwrap().is_empty());
        assert_eq!(run(&[("mode", "double")]).unwrap().len(), 4);
        let tagged = run(&[("mode", "tag"), ("tag", "v7")]).unwrap();
        assert!(
            tagged
                .iter()
                .all(|(_, r)| r.header("guise.tag").and_then(|h| h.value.as_deref()) == Some(&b"v7"[..]))
        );
        let routed = run(&[("mode", "route"), ("topic", "elsewhere")]).unwrap();
        assert!(routed.iter().all(|(t, _)| t.as_deref() == Some("elsewhere")));
    }

    #[test]
    fn failing_modes() {
        assert!(run(&[("mode", "error")]).is_err());
        assert!(run(&[("mode", "route")]).is_err(), "route without a topic");
        assert!(run(&[("mode", "nonsense")]).is_err());
    }
}
