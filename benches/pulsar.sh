#!/usr/bin/env bash
# The Pulsar backend (issue 6), measured in one run on this machine:
#   host A: `guise serve --pulsar-addr`, the embedded log, standing in for a Pulsar cluster;
#   host B: `guise serve --storage pulsar://A` (namespace hostb), which stores through the pulsar crate.
# loadgen (librdkafka) produces and fetches (1) on A directly: the embedded log; (2) through B with
# entry format `kafka` (one Pulsar message per Kafka batch); (3) through B with entry format
# `pulsar` (one Pulsar message per record). Prints a markdown table.
# Usage: benches/pulsar.sh. Knobs: RECORDS (default 1000000), RECORDS_PULSAR_FORMAT (200000),
# SIZE (100), LATENCY_RECORDS (2000), KEEP_LOGS=1.
set -euo pipefail

cd "$(dirname "$0")/.."
RECORDS=${RECORDS:-1000000}
RECORDS_PULSAR_FORMAT=${RECORDS_PULSAR_FORMAT:-200000}
SIZE=${SIZE:-100}
LATENCY_RECORDS=${LATENCY_RECORDS:-2000}
A_KAFKA=19192 A_ADMIN=18180 A_PULSAR=16650 B_KAFKA=19194 B_ADMIN=18182

WORK=$(mktemp -d -t guise-pulsar-bench.XXXXXX)
# PIDS, cleanup (on EXIT: stop PIDS, keep $WORK on failure or KEEP_LOGS=1), say,
# wait_health, cpu_secs, and the machine line.
source benches/lib.sh

say "build (release)"
cargo build --release -p guise-host -p guise-benches
GUISE=target/release/guise
LOADGEN=target/release/loadgen

say "host A (embedded log, Pulsar endpoint on $A_PULSAR)"
GUISE_LOG=warn $GUISE serve --data-dir "$WORK/a" --kafka-addr 127.0.0.1:$A_KAFKA --admin-addr 127.0.0.1:$A_ADMIN \
    --pulsar-addr 127.0.0.1:$A_PULSAR >"$WORK/a.log" 2>&1 &
A_PID=$!; PIDS+=("$A_PID")
wait_health $A_ADMIN "$A_PID"

say "host B (storage pulsar://127.0.0.1:$A_PULSAR, namespace hostb)"
GUISE_LOG=warn GUISE_NAMESPACE=hostb $GUISE serve --data-dir "$WORK/b" --kafka-addr 127.0.0.1:$B_KAFKA \
    --admin-addr 127.0.0.1:$B_ADMIN --storage pulsar://127.0.0.1:$A_PULSAR >"$WORK/b.log" 2>&1 &
B_PID=$!; PIDS+=("$B_PID")
wait_health $B_ADMIN "$B_PID"

ROWS=()
run() { # LABEL BOOTSTRAP SERVER_PID RECORDS [loadgen args...]
    local label=$1 bootstrap=$2 pid=$3 records=$4; shift 4
    say "$label: $records records of $SIZE B"
    local a0 b0 a1 b1
    a0=$(cpu_secs "$A_PID"); b0=$(cpu_secs "$B_PID")
    $LOADGEN --bootstrap "$bootstrap" --records "$records" --size "$SIZE" --latency-records "$LATENCY_RECORDS" \
        --server-pid "$pid" --json "$@" | tee "$WORK/$label.out"
    a1=$(cpu_secs "$A_PID"); b1=$(cpu_secs "$B_PID")
    local json
    json=$(grep '^JSON ' "$WORK/$label.out" | sed 's/^JSON //')
    ROWS+=("$(python3 -c '
import json, sys
j = json.loads(sys.argv[1]); label = sys.argv[2]
a, b = float(sys.argv[4]) - float(sys.argv[3]), float(sys.argv[6]) - float(sys.argv[5])
n = j["records"]
row = [label, str(n), "%.0f (%.1f MB/s)" % (j["produce_rps"], j["produce_mbps"]),
       "%s / %s" % (j["latency_p50_us"], j["latency_p99_us"]), "%.0f (%.1f MB/s)" % (j["fetch_rps"], j["fetch_mbps"]),
       "%.1f" % (a / n * 1e6), "%.1f" % (b / n * 1e6)]
print("| " + " | ".join(row) + " |")
' "$json" "$label" "$a0" "$a1" "$b0" "$b1")")
}

run "embedded log (host A)" 127.0.0.1:$A_KAFKA "$A_PID" "$RECORDS" --topic embedded
run "pulsar backend, entry format kafka (host B)" 127.0.0.1:$B_KAFKA "$B_PID" "$RECORDS" --topic kafka-format
run "pulsar backend, entry format pulsar (host B)" 127.0.0.1:$B_KAFKA "$B_PID" "$RECORDS_PULSAR_FORMAT" \
    --topic pulsar-format --topic-config guise.entry.format=pulsar

say "results"
echo "| run | records | produce records/s | produce latency p50 / p99 (µs) | fetch records/s | host A CPU µs/record (whole run) | host B CPU µs/record (whole run) |"
echo "|---|---|---|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
