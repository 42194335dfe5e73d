#!/usr/bin/env bash
# Guise on Apache Pulsar (issue 14), measured in one run on this machine, beside its ceilings:
#   Apache Pulsar 4.0.8 standalone and Apache Kafka 4.4 from Maven artifacts (the `peers` bench
#   binary starts both as the tests do; Pulsar with journalSyncData=false, Kafka without fsync
#   per write: neither syncs each write to disk);
#   host E: `guise serve`, the embedded log;
#   host B: `guise serve --storage pulsar://<standalone> --pulsar-admin-url ...`.
# loadgen (librdkafka, acks=1, one partition, incompressible values) produces and fetches on E,
# on B with entry format `kafka` and `pulsar`, and on Apache Kafka; Pulsar's own pulsar-perf
# (PerformanceProducer / PerformanceConsumer from pulsar-testclient 4.0.8, the Java client,
# batching on, up to 5,000 messages or 1 MiB per batch and 50,000 outstanding, so that the
# client is not what limits it) produces and consumes straight on the broker: the ceiling of that
# Pulsar. During
# the format-`kafka` run, `perf record` samples host B (cpu-clock) for the profile.
# Usage: benches/apache-pulsar.sh. Knobs: RECORDS (default 1000000), RECORDS_PULSAR_FORMAT
# (100000), SIZE (100), LATENCY_RECORDS (2000), PROFILE=0 to skip perf, KEEP_LOGS=1.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
RECORDS=${RECORDS:-1000000}
RECORDS_PULSAR_FORMAT=${RECORDS_PULSAR_FORMAT:-100000}
SIZE=${SIZE:-100}
LATENCY_RECORDS=${LATENCY_RECORDS:-2000}
PROFILE=${PROFILE:-1}
E_KAFKA=19292 E_ADMIN=18280 B_KAFKA=19294 B_ADMIN=18282

WORK=$(mktemp -d -t guise-apache-pulsar-bench.XXXXXX)
# PIDS, cleanup (on EXIT: stop PIDS, keep $WORK on failure or KEEP_LOGS=1), say,
# wait_health, cpu_secs, and the machine line.
source benches/lib.sh

say "build (release)"
cargo build --release -p guise-host -p guise-benches --bin guise --bin loadgen --bin peers
GUISE=target/release/guise
LOADGEN=target/release/loadgen

say "Apache Pulsar 4.0.8 standalone and Apache Kafka 4.4 (peers)"
target/release/peers >"$WORK/peers.out" 2>"$WORK/peers.err" &
PEERS_PID=$!; PIDS+=("$PEERS_PID")
for _ in $(seq 1800); do # up to 6 minutes: the first run downloads both from Maven Central
    grep -q 'KAFKA ' "$WORK/peers.out" 2>/dev/null && break
    kill -0 "$PEERS_PID" 2>/dev/null || { cat "$WORK/peers.err" >&2; exit 1; }
    sleep 0.2
done
read -r _ PULSAR_URL PULSAR_WEB PULSAR_PID < <(grep -o 'PULSAR .*' "$WORK/peers.out")
read -r _ KAFKA_BOOTSTRAP KAFKA_PID < <(grep -o 'KAFKA .*' "$WORK/peers.out")
echo "Pulsar $PULSAR_URL (admin $PULSAR_WEB, pid $PULSAR_PID); Kafka $KAFKA_BOOTSTRAP (pid $KAFKA_PID)"

say "host E (embedded log)"
GUISE_LOG=warn $GUISE serve --data-dir "$WORK/e" --kafka-addr 127.0.0.1:$E_KAFKA --admin-addr 127.0.0.1:$E_ADMIN \
    >"$WORK/e.log" 2>&1 &
E_PID=$!; PIDS+=("$E_PID")
wait_health $E_ADMIN "$E_PID"

say "host B (storage $PULSAR_URL, namespace bench)"
GUISE_LOG=warn GUISE_NAMESPACE=bench $GUISE serve --data-dir "$WORK/b" --kafka-addr 127.0.0.1:$B_KAFKA \
    --admin-addr 127.0.0.1:$B_ADMIN --storage "$PULSAR_URL" --pulsar-admin-url "$PULSAR_WEB" >"$WORK/b.log" 2>&1 &
B_PID=$!; PIDS+=("$B_PID")
wait_health $B_ADMIN "$B_PID"

ROWS=()
row() { # LABEL RECORDS PRODUCE LATENCY FETCH SERVER_CPU_US PULSAR_CPU_US
    ROWS+=("| $1 | $2 | $3 | $4 | $5 | $6 | $7 |")
}
run() { # LABEL BOOTSTRAP SERVER_PID RECORDS [loadgen args...]
    local label=$1 bootstrap=$2 pid=$3 records=$4; shift 4
    say "$label: $records records of $SIZE B"
    local s0 p0 s1 p1 json
    s0=$(cpu_secs "$pid"); p0=$(cpu_secs "$PULSAR_PID")
    $LOADGEN --bootstrap "$bootstrap" --records "$records" --size "$SIZE" --latency-records "$LATENCY_RECORDS" \
        --server-pid "$pid" --json "$@" | tee "$WORK/$label.out"
    s1=$(cpu_secs "$pid"); p1=$(cpu_secs "$PULSAR_PID")
    json=$(grep '^JSON ' "$WORK/$label.out" | sed 's/^JSON //')
    ROWS+=("$(python3 -c '
import json, sys
j = json.loads(sys.argv[1]); n = j["records"]
s, p = float(sys.argv[4]) - float(sys.argv[3]), float(sys.argv[6]) - float(sys.argv[5])
row = [sys.argv[2], str(n), "%.0f (%.1f MB/s)" % (j["produce_rps"], j["produce_mbps"]),
       "%s / %s" % (j["latency_p50_us"], j["latency_p99_us"]), "%.0f (%.1f MB/s)" % (j["fetch_rps"], j["fetch_mbps"]),
       "%.1f" % (s / n * 1e6), "%.1f" % (p / n * 1e6)]
print("| " + " | ".join(row) + " |")
' "$json" "$label" "$s0" "$s1" "$p0" "$p1")")
}

run "Guise, embedded log" 127.0.0.1:$E_KAFKA "$E_PID" "$RECORDS" --topic embedded
PERF_PID=
if [[ "$PROFILE" == 1 ]] && command -v perf >/dev/null; then
    perf record -e cpu-clock -F 499 -g -p "$B_PID" -o "$WORK/b.perf" >"$WORK/perf.log" 2>&1 &
    PERF_PID=$!
fi
run "Guise on Pulsar, entry format kafka" 127.0.0.1:$B_KAFKA "$B_PID" "$RECORDS" --topic kafka-format
if [[ -n "$PERF_PID" ]]; then kill -INT "$PERF_PID"; wait "$PERF_PID" 2>/dev/null || true; fi
run "Guise on Pulsar, entry format pulsar" 127.0.0.1:$B_KAFKA "$B_PID" "$RECORDS_PULSAR_FORMAT" \
    --topic pulsar-format --topic-config guise.entry.format=pulsar
run "Apache Kafka 4.4" "$KAFKA_BOOTSTRAP" "$KAFKA_PID" "$RECORDS" --topic kafka-baseline

say "pulsar-perf on the broker: $RECORDS messages of $SIZE B"
PCP="$(cat target/pulsar/classpath.txt)"
PERF_JAVA=(java -Xmx512m -XX:+UseSerialGC -Djava.net.preferIPv4Stack=true
    -Dlog4j2.configurationFile="$ROOT/tests/pulsar/log4j2.properties" -cp "$PCP")
TOPIC=persistent://public/default/pulsar-perf-$$
# bin/pulsar-perf passes conf/client.conf first; its values are defaults under the flags.
printf 'brokerServiceUrl=%s\nwebServiceUrl=%s\n' "$PULSAR_URL" "$PULSAR_WEB" >"$WORK/client.conf"
p0=$(cpu_secs "$PULSAR_PID")
# The topic and the consumer's subscription exist first, so that the messages stay for it.
python3 - "$PULSAR_WEB" "${TOPIC#persistent://}" <<'EOF'
import sys, urllib.request
web, topic = sys.argv[1], sys.argv[2]
for path in ("/admin/v2/persistent/%s" % topic, "/admin/v2/persistent/%s/subscription/perf" % topic):
    urllib.request.urlopen(urllib.request.Request(web + path, method="PUT", data=b"",
                                                  headers={"Content-Type": "application/json"}), timeout=30)
EOF
GUISE_PULSAR_LOG=info "${PERF_JAVA[@]}" org.apache.pulsar.testclient.PulsarPerfTestTool "$WORK/client.conf" produce -u "$PULSAR_URL" \
    -r 100000000 -s "$SIZE" -m "$RECORDS" -o 50000 -bm 5000 -bb 1048576 "$TOPIC" >"$WORK/perf-produce.log" 2>&1
p1=$(cpu_secs "$PULSAR_PID")
GUISE_PULSAR_LOG=info "${PERF_JAVA[@]}" org.apache.pulsar.testclient.PulsarPerfTestTool "$WORK/client.conf" consume -u "$PULSAR_URL" \
    -ss perf -sp Earliest -m "$RECORDS" "$TOPIC" >"$WORK/perf-consume.log" 2>&1
grep -E "Aggregated (throughput|latency)" "$WORK/perf-produce.log" "$WORK/perf-consume.log" | sed 's/^.*: //' || true
PERF_ROW=$(python3 - "$WORK/perf-produce.log" "$WORK/perf-consume.log" "$RECORDS" "$SIZE" "$p0" "$p1" <<'EOF'
import re, sys
produce, consume = open(sys.argv[1]).read(), open(sys.argv[2]).read()
n, size = int(sys.argv[3]), int(sys.argv[4])
def rate(text):
    m = re.findall(r"Aggregated throughput stats.*?---\s*([\d.,]+)\s*msg/s", text)
    return float(m[-1].replace(",", "")) if m else float("nan")
lat = re.findall(r"Aggregated latency stats.*?med:\s*([\d.]+).*?99pct:\s*([\d.]+)", produce)
p50, p99 = (lat[-1] if lat else ("?", "?"))
pr, cr = rate(produce), rate(consume)
cpu = (float(sys.argv[6]) - float(sys.argv[5])) / n * 1e6
print("| pulsar-perf on the broker (Java client, batching) | %d | %.0f (%.1f MB/s) | %s / %s ms (under load) | %.0f (%.1f MB/s) | — | %.1f (produce) |"
      % (n, pr, pr * size / 1e6, p50, p99, cr, cr * size / 1e6, cpu))
EOF
)
ROWS+=("$PERF_ROW")

say "results"
echo "| run | records | produce records/s | produce latency p50 / p99 (µs, sequential) | fetch records/s | server CPU µs/record | Pulsar JVM CPU µs/record |"
echo "|---|---|---|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"

if [[ -f "$WORK/b.perf" ]]; then
    say "profile of host B during the format-kafka run (perf, cpu-clock; self time, top 25)"
    { perf report -i "$WORK/b.perf" --no-children --sort dso,sym --stdio -g none 2>/dev/null || true; } | grep -v '^#' | grep '%' | head -25 || true
    say "by shared object"
    { perf report -i "$WORK/b.perf" --no-children --sort dso --stdio -g none 2>/dev/null || true; } | grep -v '^#' | grep '%' | head -10 || true
fi
