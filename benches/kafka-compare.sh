#!/usr/bin/env bash
# Apache Kafka 4.4 as the reference beside Guise and tansu, in one run on this machine:
#   (a) Guise (`guise serve`, embedded log in a fresh temp dir), (b) Apache Kafka 4.4 (one KRaft
#       node, broker and controller in one JVM, data in a fresh temp dir, Kafka's own JVM flags),
#   (c) tansu 0.6 (memory storage), when a `tansu` binary is found ($TANSU, PATH or
#       /tmp/tansu-root/bin/tansu),
# each measured with
#   1. Kafka's own ProducerPerformance then ConsumerPerformance (kafka-tools 4.4, the Java client
#      with its defaults), 100 B and 1 KiB records, acks=1 and acks=all;
#   2. the librdkafka load generator (`loadgen`), 100 B and 1 KiB records, acks=1 and acks=all;
#   3. the log cleaner (`compactbench`, Guise and Kafka only: tansu's memory engine has no cleaner):
#      MB/s cleaned and produce latency while the cleaner runs;
#   4. transactions (`txnbench`, Guise and Kafka only): transactional produce of 1, 100 and 10,000
#      records per transaction (throughput, commit latency), then read_committed against
#      read_uncommitted fetch. Both finalize transaction.version=2 (KIP-890 part 2), their
#      default; the tests' Peer formats Kafka so;
#   5. request-bound produce (`reqbench`): 1, 16 and 256 connections, each a librdkafka producer
#      sending one 100 B record per Produce request (linger.ms=0, batch.num.messages=1) and
#      awaiting it before the next: requests/s, latency, broker CPU per request;
#   6. idle connections (`connbench`): the broker's RSS with CONN_COUNT (10000) connections open,
#      each having asked ApiVersions once.
# Then prints markdown tables. Usage: benches/kafka-compare.sh   (from anywhere)
#
# The Java side needs a JDK 17+ and Maven: the classpath comes from the tests' Maven project
# (tests/java/pom.xml, local repository target/m2 as the tests use, ~160 MB the first time) into
# target/java/bench-classpath.txt; guise.Peer (tests/java/src/guise/Peer.java) is compiled alone:
# it formats KRaft storage and runs the broker in one JVM, which halts when this script exits.
#
# Knobs (environment): PERF_RECORDS_100 (default 1000000), PERF_RECORDS_1K (300000) for the Kafka
# tools; RECORDS_100 (1000000), RECORDS_1K (300000), LATENCY_RECORDS (2000) for loadgen;
# ACKS_LIST ("1 all"); COMPACT_MB (300), COMPACT_KEYS (10000), COMPACT_SIZE (1000),
# COMPACT_BASELINE_SECS (5); TXN_SECS (10: seconds per transaction size), TXN_SIZES (1,100,10000);
# KAFKA_HEAP (1g); TOOL_TIMEOUT (180: seconds per Kafka tool run);
# SYSTEMS ("guise kafka tansu", in that order); SKIP_PERF=1, SKIP_LOADGEN=1, SKIP_COMPACT=1, SKIP_TXN=1,
# REQ_CONNECTIONS (1,16,256), REQ_SECS (10), REQ_ACKS (1); SKIP_REQ=1; CONN_COUNT (10000); SKIP_CONN=1;
# SKIP_BUILD=1, KEEP_LOGS=1; M2_REPO (Maven local repository, default target/m2); GUISE_BIN;
# TANSU. CARGO_TARGET_DIR is honoured.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
M2_REPO=${M2_REPO:-$ROOT/target/m2}
JAVA_DIR=$ROOT/target/java
PERF_RECORDS_100=${PERF_RECORDS_100:-1000000}
PERF_RECORDS_1K=${PERF_RECORDS_1K:-300000}
RECORDS_100=${RECORDS_100:-1000000}
RECORDS_1K=${RECORDS_1K:-300000}
LATENCY_RECORDS=${LATENCY_RECORDS:-2000}
ACKS_LIST=${ACKS_LIST:-"1 all"}
COMPACT_MB=${COMPACT_MB:-300}
COMPACT_KEYS=${COMPACT_KEYS:-10000}
COMPACT_SIZE=${COMPACT_SIZE:-1000}
COMPACT_BASELINE_SECS=${COMPACT_BASELINE_SECS:-5}
TXN_SECS=${TXN_SECS:-10}
TXN_SIZES=${TXN_SIZES:-1,100,10000}
REQ_CONNECTIONS=${REQ_CONNECTIONS:-1,16,256}
REQ_SECS=${REQ_SECS:-10}
REQ_ACKS=${REQ_ACKS:-1}
CONN_COUNT=${CONN_COUNT:-10000}
KAFKA_HEAP=${KAFKA_HEAP:-1g}
SYSTEMS=${SYSTEMS:-"guise kafka tansu"}
CLEANER_BACKOFF_MS=1000
GUISE_PORT=19092
GUISE_ADMIN_PORT=18080
TANSU_PORT=19093
KAFKA_PORT=19094
KAFKA_CONTROLLER_PORT=19095

WORK=$(mktemp -d -t guise-kafka-compare.XXXXXX)
PIDS=()
cleanup() {
    local rc=$?
    for pid in "${PIDS[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    if [[ "${KEEP_LOGS:-0}" == 1 || $rc -ne 0 ]]; then
        echo "logs kept in $WORK" >&2
    else
        rm -rf "$WORK"
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say() { printf '\n== %s\n' "$*"; }

json_get() { # FILE KEY (a top-level key)
    python3 -c 'import json,sys
v=json.load(open(sys.argv[1])).get(sys.argv[2])
print("-" if v is None else v)' "$1" "$2"
}

# listening PORT: a TCP socket listens on PORT (from /proc, without connecting).
listening() {
    local hex
    hex=$(printf ':%04X' "$1")
    awk -v p="$hex" '$4 == "0A" && substr($2, length($2) - 4) == p { found = 1 } END { exit !found }' \
        /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

wait_port() { # PORT SECONDS PID
    local port=$1 secs=$2 pid=$3
    for _ in $(seq $((secs * 10))); do
        if listening "$port"; then return 0; fi
        kill -0 "$pid" 2>/dev/null || { echo "process $pid exited before listening on $port" >&2; return 1; }
        sleep 0.1
    done
    echo "nothing listening on port $port after ${secs}s" >&2
    return 1
}

port_free() { listening "$1" && { echo "port $1 is busy" >&2; return 1; }; return 0; }

FAILURES=()

# stop_server NAME PID: SIGTERM, wait up to 60 s, report how it ended.
stop_server() {
    local name=$1 pid=$2 rc=0
    if ! kill -0 "$pid" 2>/dev/null; then
        wait "$pid" || rc=$?
        echo "$name had already exited (status $rc)"
        FAILURES+=("$name exited by itself during the runs (status $rc)")
        return
    fi
    kill -TERM "$pid"
    for _ in $(seq 600); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
        echo "$name did not stop within 60 s of SIGTERM: killing it"
        FAILURES+=("$name ignored SIGTERM for 60 s")
        kill -KILL "$pid"
    fi
    wait "$pid" || rc=$?
    echo "$name stopped (exit status $rc)"
}

rss() { awk '/VmRSS/ {printf "%.0f MiB", $2/1024}' "/proc/$1/status" 2>/dev/null || echo n/a; }

# ---------------------------------------------------------------- machine
MACHINE_MODEL=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
MACHINE_MEM=$(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)
RUN_DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
GIT_REV=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
GIT_DIRTY=$(git status --porcelain --untracked-files=no 2>/dev/null | awk '{print $2}' | paste -sd, -)
[[ -n "$GIT_DIRTY" ]] && GIT_REV="$GIT_REV + uncommitted changes to $GIT_DIRTY"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
say "machine: $(nproc) cores, $MACHINE_MODEL, $MACHINE_MEM RAM, Linux $(uname -r); $RUN_DATE"
echo "load average at start: $LOAD_START"
echo "source: $GIT_REV"

# ---------------------------------------------------------------- build
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    say "build (release): guise, loadgen, compactbench, txnbench"
    cargo build --release -p guise-host -p guise-benches
fi
GUISE_BIN=${GUISE_BIN:-"$TARGET/release/guise"}
LOADGEN="$TARGET/release/loadgen"
COMPACTBENCH="$TARGET/release/compactbench"
TXNBENCH="$TARGET/release/txnbench"
REQBENCH="$TARGET/release/reqbench"
CONNBENCH="$TARGET/release/connbench"

# ---------------------------------------------------------------- Java classpath
source benches/kafka-java.sh
kafka_java_setup

# ---------------------------------------------------------------- result files
PERF_RESULTS="$WORK/perf.txt"; : >"$PERF_RESULTS"
LOADGEN_RESULTS="$WORK/loadgen.txt"; : >"$LOADGEN_RESULTS"
COMPACT_RESULTS="$WORK/compact.txt"; : >"$COMPACT_RESULTS"
TXN_RESULTS="$WORK/txn.txt"; : >"$TXN_RESULTS"
REQ_RESULTS="$WORK/req.txt"; : >"$REQ_RESULTS"
CONN_RESULTS="$WORK/conn.txt"; : >"$CONN_RESULTS"
SERVER_NOTES="$WORK/notes.txt"; : >"$SERVER_NOTES"

# run_perf SYSTEM BOOTSTRAP SIZE ACKS RECORDS: ProducerPerformance then ConsumerPerformance on a
# new topic. Line: system|size|acks|records|prod rec/s|prod MB/s|p50 ms|p99 ms|max ms|fetch rec/s|fetch MB/s|join ms|status
run_perf() {
    local system=$1 bootstrap=$2 size=$3 acks=$4 records=$5
    local topic="perf-$size-acks$acks" out="$WORK/perf-$system-$size-$acks"
    echo "-- $system: ProducerPerformance $size B x $records, acks=$acks; then ConsumerPerformance"
    if [[ "${PERF_BROKEN:-}" == "$system" ]]; then
        echo "   skipped: ProducerPerformance failed on $system above"
        echo "$system|$size|$acks|$records|-|-|-|-|-|-|-|-|skipped (ProducerPerformance failed above)" >>"$PERF_RESULTS"
        return
    fi
    if ! tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$bootstrap" --create --topic "$topic" \
        --partitions 1 --replication-factor 1 >"$out.topic.log" 2>&1; then
        cat "$out.topic.log"
        echo "$system|$size|$acks|$records|-|-|-|-|-|-|-|-|FAILED: creating the topic" >>"$PERF_RESULTS"
        FAILURES+=("$system perf $size B acks=$acks: TopicCommand --create failed")
        return
    fi
    local st=0
    tool org.apache.kafka.tools.ProducerPerformance --bootstrap-server "$bootstrap" --topic "$topic" \
        --num-records "$records" --record-size "$size" --throughput -1 \
        --command-property "acks=$acks" >"$out.producer.log" 2>&1 || st=$?
    local summary
    summary=$(grep '50th' "$out.producer.log" | tail -1 || true)
    echo "   $summary"
    local sent
    sent=$(awk '{print $1}' <<<"$summary")
    if [[ $st != 0 || "$sent" != "$records" ]]; then
        # The Java client retries until delivery.timeout.ms (120 s by default) before it gives up,
        # so the remaining runs on this broker are skipped.
        grep -v '^org.apache.kafka.common.errors.TimeoutException: Expiring' "$out.producer.log" | tail -5
        grep -m1 'Exception' "$out.producer.log" || true
        local why
        why=$(grep -m1 -o 'org.apache.kafka.common.errors.[A-Za-z]*' "$out.producer.log" || true)
        echo "$system|$size|$acks|$records|-|-|-|-|-|-|-|-|FAILED: ProducerPerformance sent ${sent:-0} of $records (status $st) ${why}" >>"$PERF_RESULTS"
        FAILURES+=("$system perf $size B acks=$acks: ProducerPerformance sent ${sent:-0} of $records (status $st) $why")
        PERF_BROKEN=$system
        return
    fi
    # "N records sent, R records/sec (M MB/sec), A ms avg latency, X ms max latency, P50 ms 50th, P95 ms 95th, P99 ms 99th, P999 ms 99.9th."
    local prps pmax p50 p99
    prps=$(sed -E 's/.* records sent, ([0-9.]+) records\/sec.*/\1/' <<<"$summary")
    pmax=$(sed -E 's/.*, ([0-9.]+) ms max latency.*/\1/' <<<"$summary")
    p50=$(sed -E 's/.*, ([0-9.]+) ms 50th.*/\1/' <<<"$summary")
    p99=$(sed -E 's/.*, ([0-9.]+) ms 99th.*/\1/' <<<"$summary")
    st=0
    tool org.apache.kafka.tools.ConsumerPerformance --bootstrap-server "$bootstrap" --topic "$topic" \
        --num-records "$records" --timeout 30000 --group "perf-$system-$size-$acks" \
        >"$out.consumer.log" 2>&1 || st=$?
    # header "start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec,
    # rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec", then one line of values.
    local line
    line=$(grep -A1 '^start.time' "$out.consumer.log" | tail -1 || true)
    echo "   $line"
    local got frps join
    got=$(awk -F', ' '{print $5}' <<<"$line")
    join=$(awk -F', ' '{print $7}' <<<"$line")
    frps=$(awk -F', ' '{print $10}' <<<"$line")
    local status=ok
    if [[ $st != 0 || "$got" != "$records" ]]; then
        tail -5 "$out.consumer.log"
        status="FAILED: ConsumerPerformance read ${got:-nothing} of $records (status $st)"
        FAILURES+=("$system perf $size B acks=$acks: $status")
    fi
    awk -v s="$system" -v size="$size" -v a="$acks" -v n="$records" -v prps="$prps" -v p50="$p50" \
        -v p99="$p99" -v pmax="$pmax" -v frps="${frps:-0}" -v join="${join:--}" -v st="$status" 'BEGIN {
        printf "%s|%s|%s|%s|%.0f|%.1f|%s|%s|%s|%.0f|%.1f|%s|%s\n", s, size, a, n, prps, prps * size / 1e6,
            p50, p99, pmax, frps, frps * size / 1e6, join, st }' >>"$PERF_RESULTS"
}

# run_loadgen SYSTEM BOOTSTRAP SIZE RECORDS ACKS SERVER_PID
run_loadgen() {
    local system=$1 bootstrap=$2 size=$3 records=$4 acks=$5 server_pid=$6
    local out="$WORK/loadgen-$system-$size-$acks.log" st=0
    echo "-- $system: loadgen $size B x $records, acks=$acks"
    "$LOADGEN" --bootstrap "$bootstrap" --topic "lg-$size-acks$acks" --size "$size" --records "$records" \
        --acks "$acks" --latency-records "$LATENCY_RECORDS" --json --server-pid "$server_pid" \
        --timeout-secs 300 >"$out" 2>&1 || st=$?
    grep -E '^(produce|fetch|latency)|FAILED|WARNING' "$out" | sed 's/^/   /' || true
    if [[ $st == 0 ]]; then
        grep '^JSON ' "$out" | sed 's/^JSON //' >"$WORK/r.json"
        local f
        f() { json_get "$WORK/r.json" "$1"; }
        printf '%s|%s|%s|%s|%.1f|%s / %s / %s|%.1f|%s / %s|%s / %s|ok\n' "$system" "$size" "$acks" "$records" \
            "$(f produce_mbps)" "$(f latency_p50_us)" "$(f latency_p99_us)" "$(f latency_max_us)" \
            "$(f fetch_mbps)" "$(f produce_cpu_server)" "$(f produce_cpu_client)" \
            "$(f fetch_cpu_server)" "$(f fetch_cpu_client)" >>"$LOADGEN_RESULTS"
    else
        tail -5 "$out"
        echo "$system|$size|$acks|$records|-|-|-|-|-|FAILED (status $st)" >>"$LOADGEN_RESULTS"
        FAILURES+=("$system loadgen $size B acks=$acks: exit status $st")
    fi
}

# run_compact SYSTEM BOOTSTRAP LOG
run_compact() {
    local system=$1 bootstrap=$2 log=$3 out="$WORK/compact-$1.log" st=0
    echo "-- $system: compactbench, $COMPACT_MB MB of $COMPACT_SIZE B values under $COMPACT_KEYS keys"
    "$COMPACTBENCH" --bootstrap "$bootstrap" --system "$system" --server-log "$log" --mb "$COMPACT_MB" \
        --keys "$COMPACT_KEYS" --size "$COMPACT_SIZE" --baseline-secs "$COMPACT_BASELINE_SECS" --json \
        --topic compact-bench >"$out" 2>&1 || st=$?
    grep -v '^JSON ' "$out" | sed 's/^/   /'
    if [[ $st == 0 ]]; then
        grep '^JSON ' "$out" | sed 's/^JSON //' >"$WORK/c.json"
        local f
        f() { json_get "$WORK/c.json" "$1"; }
        echo "$system|$(f fill_mb)|$(f keys)|$(f fill_mbps)|$(f clean_mb_read)|$(f clean_mb_written)|$(f clean_secs)|$(f clean_mbps)|$(f same_base_p50) / $(f same_base_p99)|$(f same_during_p50) / $(f same_during_p99) / $(f same_during_max) (n=$(f same_during_n))|$(f other_base_p50) / $(f other_base_p99)|$(f other_during_p50) / $(f other_during_p99) / $(f other_during_max) (n=$(f other_during_n))" >>"$COMPACT_RESULTS"
    else
        echo "$system|-|-|-|-|-|-|FAILED (status $st)|-|-|-|-" >>"$COMPACT_RESULTS"
        FAILURES+=("$system compactbench: exit status $st")
    fi
}

run_txn() {
    local system=$1 bootstrap=$2 pid=$3 out="$WORK/txn-$1.log" st=0 cpu0 cpu1
    echo "-- $system: txnbench, $TXN_SIZES records per transaction, $TXN_SECS s each"
    cpu0=$(awk '{printf "%.2f", ($14 + $15) / 100}' "/proc/$pid/stat")
    "$TXNBENCH" --bootstrap "$bootstrap" --system "$system" --topic txn-bench --sizes "$TXN_SIZES" \
        --secs "$TXN_SECS" --json >"$out" 2>&1 || st=$?
    cpu1=$(awk '{printf "%.2f", ($14 + $15) / 100}' "/proc/$pid/stat")
    grep -v '^JSON ' "$out" | sed 's/^/   /'
    # The same transactions with the Java client (benches/java/guise/bench/TxnPerf.java).
    local jout="$WORK/txn-java-$system.log" jst=0
    echo "-- $system: TxnPerf (the Java client), $TXN_SIZES records per transaction, $TXN_SECS s each"
    timeout -k 5 "${TOOL_TIMEOUT:-180}" java "${TOOL_JVM_OPTS[@]}" "${LOG4J[@]}" -cp "$BENCH_CLASSES:$KAFKA_CP" \
        guise.bench.TxnPerf "$bootstrap" txn-bench-java "$TXN_SIZES" "$TXN_SECS" 100 >"$jout" 2>&1 || jst=$?
    grep '^{' "$jout" | sed 's/^/   /' || true
    if [[ $jst == 0 ]]; then
        grep '^{' "$jout" >"$WORK/tj.json"
        python3 - "$WORK/tj.json" "$system" >>"$TXN_RESULTS" <<'PYEOF'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    s = r["secs"]
    lat = f'{r["commit_p50_ms"]:.2f} / {r["commit_p99_ms"]:.2f} / {r["commit_max_ms"]:.2f}'
    print(f'{sys.argv[2]}|produce (Java)|{r["per_txn"]}|{r["txns"]}|{r["txns"] / s:.0f}|{r["records"] / s:.0f}|{r["records"] * 100 / 1e6 / s:.2f}|{lat}|-')
PYEOF
    else
        echo "$system|produce (Java) FAILED (status $jst)|-|-|-|-|-|-|-" >>"$TXN_RESULTS"
        FAILURES+=("$system TxnPerf: exit status $jst")
    fi
    if [[ $st == 0 ]]; then
        grep '^JSON ' "$out" | sed 's/^JSON //' >"$WORK/t.json"
        python3 - "$WORK/t.json" "$system" "$cpu0" "$cpu1" >>"$TXN_RESULTS" <<'PYEOF'
import json, sys
doc = json.load(open(sys.argv[1]))
system, cpu = sys.argv[2], float(sys.argv[4]) - float(sys.argv[3])
for r in doc["results"]:
    if "per_txn" in r:
        print(f'{system}|produce|{r["per_txn"]}|{r["txns"]}|{r["txn_per_s"]:.0f}|{r["records_per_s"]:.0f}|{r["mb_per_s"]:.2f}|{r["commit_p50_ms"]:.2f} / {r["commit_p99_ms"]:.2f} / {r["commit_max_ms"]:.2f}|{cpu:.1f}')
    else:
        print(f'{system}|fetch {r["fetch"]}|-|{r["records"]}|-|{r["records_per_s"]:.0f}|{r["mb_per_s"]:.2f}|-|-')
PYEOF
    else
        echo "$system|FAILED (status $st)|-|-|-|-|-|-|-" >>"$TXN_RESULTS"
        FAILURES+=("$system txnbench: exit status $st")
    fi
}

# run_req SYSTEM BOOTSTRAP PID: request-bound produce at each of REQ_CONNECTIONS.
run_req() {
    local system=$1 bootstrap=$2 pid=$3 out="$WORK/req-$1.log" st=0
    echo "-- $system: reqbench, $REQ_CONNECTIONS connections, $REQ_SECS s each, acks=$REQ_ACKS"
    "$REQBENCH" --bootstrap "$bootstrap" --system "$system" --connections "$REQ_CONNECTIONS" \
        --secs "$REQ_SECS" --acks "$REQ_ACKS" --server-pid "$pid" >"$out" 2>&1 || st=$?
    grep '^| ' "$out" | sed 's/^/   /' || true
    # The rows measured before a failure are kept.
    { grep '^| [a-z]' "$out" | grep -v '^| system' || true; } >>"$REQ_RESULTS"
    if [[ $st != 0 ]]; then
        tail -3 "$out" | sed 's/^/   /'
        echo "| $system | FAILED (status $st) | - | - | - | - | - | - |" >>"$REQ_RESULTS"
        FAILURES+=("$system reqbench: exit status $st")
    fi
}

# run_conn SYSTEM BOOTSTRAP PID: the broker's memory with CONN_COUNT idle connections.
run_conn() {
    local system=$1 bootstrap=$2 pid=$3 out="$WORK/conn-$1.log" st=0
    echo "-- $system: connbench, $CONN_COUNT idle connections"
    if (($(ulimit -Hn) < CONN_COUNT + 1000)); then
        echo "   warning: the open-file limit ($(ulimit -Hn)) is below CONN_COUNT + 1000; connbench may fail"
    fi
    (ulimit -n "$((CONN_COUNT + 1000))" 2>/dev/null || true
     "$CONNBENCH" --bootstrap "$bootstrap" --system "$system" --connections "$CONN_COUNT" \
        --server-pid "$pid") >"$out" 2>&1 || st=$?
    grep '^| ' "$out" | sed 's/^/   /' || true
    if [[ $st == 0 ]]; then
        { grep '^| [a-z]' "$out" | grep -v '^| system' || true; } >>"$CONN_RESULTS"
    else
        tail -3 "$out" | sed 's/^/   /'
        echo "| $system | FAILED (status $st) | - | - | - | - |" >>"$CONN_RESULTS"
        FAILURES+=("$system connbench: exit status $st")
    fi
}

# measure SYSTEM BOOTSTRAP PID LOG: everything against one running broker.
measure() {
    local system=$1 bootstrap=$2 pid=$3 log=$4 acks
    if [[ "${SKIP_PERF:-0}" != 1 ]]; then
        for acks in $ACKS_LIST; do
            run_perf "$system" "$bootstrap" 100 "$acks" "$PERF_RECORDS_100"
            run_perf "$system" "$bootstrap" 1024 "$acks" "$PERF_RECORDS_1K"
        done
    fi
    if [[ "${SKIP_LOADGEN:-0}" != 1 ]]; then
        for acks in $ACKS_LIST; do
            run_loadgen "$system" "$bootstrap" 100 "$RECORDS_100" "$acks" "$pid"
            run_loadgen "$system" "$bootstrap" 1024 "$RECORDS_1K" "$acks" "$pid"
        done
    fi
    if [[ "${SKIP_COMPACT:-0}" != 1 && "$system" != tansu ]]; then
        run_compact "$system" "$bootstrap" "$log"
    fi
    if [[ "${SKIP_TXN:-0}" != 1 && "$system" != tansu ]]; then
        run_txn "$system" "$bootstrap" "$pid"
    fi
    if [[ "${SKIP_REQ:-0}" != 1 ]]; then
        run_req "$system" "$bootstrap" "$pid"
    fi
    if [[ "${SKIP_CONN:-0}" != 1 ]]; then
        run_conn "$system" "$bootstrap" "$pid"
    fi
}

# ---------------------------------------------------------------- the systems
run_guise() {
    say "Guise: $GUISE_BIN serve (embedded log)"
    port_free "$GUISE_PORT"
    local data log
    data=$(mktemp -d -p "$WORK" guise-data.XXXXXX)
    log="$WORK/guise.log"
    # The same group.initial.rebalance.delay.ms=0 as the Kafka broker below.
    NO_COLOR=1 GUISE_LOG=${GUISE_LOG:-info} GUISE_LOG_CLEANER_BACKOFF_MS=$CLEANER_BACKOFF_MS \
        GUISE_GROUP_INITIAL_REBALANCE_DELAY_MS=0 "$GUISE_BIN" serve \
        --data-dir "$data" --kafka-addr "127.0.0.1:$GUISE_PORT" --admin-addr "127.0.0.1:$GUISE_ADMIN_PORT" \
        >"$log" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    wait_port "$GUISE_PORT" 60 "$pid"
    echo "guise pid $pid, log $log, data $data"
    measure guise "127.0.0.1:$GUISE_PORT" "$pid" "$log"
    echo "guise: RSS $(rss "$pid") at the end, data dir $(du -sh "$data" | cut -f1)" | tee -a "$SERVER_NOTES"
    stop_server guise "$pid"
    local warn
    warn=$(grep -cE ' (WARN|ERROR) ' "$log" || true)
    echo "guise: $warn WARN/ERROR lines in its log" | tee -a "$SERVER_NOTES"
    [[ "$warn" == 0 ]] || grep -E ' (WARN|ERROR) ' "$log" | head -10
    rm -rf "$data"
}

run_kafka() {
    say "Apache Kafka 4.4: one KRaft node, heap $KAFKA_HEAP"
    port_free "$KAFKA_PORT"; port_free "$KAFKA_CONTROLLER_PORT"
    local dir="$WORK/kafka"
    mkdir -p "$dir/data"
    # Kafka's defaults otherwise: log.flush.interval.messages / .ms unset (the OS writes back, no
    # fsync per write), log.cleaner.enable=true with one cleaner thread.
    cat >"$dir/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$dir/data
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.cleaner.backoff.ms=$CLEANER_BACKOFF_MS
EOF
    local cluster_id log="$dir/broker.log"
    # A random UUID in Kafka's base64 form; not one starting with '-', which the format tool would
    # take for an option.
    cluster_id=-
    while [[ $cluster_id == -* ]]; do
        cluster_id=$(head -c16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
    done
    # guise.Peer formats the storage, then runs kafka.Kafka in the same JVM, and halts when this
    # script's process ($$) exits, however it exits.
    java "${KAFKA_JVM_OPTS[@]}" "${LOG4J[@]}" -cp "$PEER_CLASSES:$KAFKA_CP" guise.Peer $$ \
        --format "$cluster_id" "$dir/server.properties" kafka.Kafka "$dir/server.properties" >"$log" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    wait_port "$KAFKA_PORT" 180 "$pid"
    echo "kafka pid $pid, log $log"
    measure kafka "127.0.0.1:$KAFKA_PORT" "$pid" "$log"
    echo "kafka: RSS $(rss "$pid") at the end (heap $KAFKA_HEAP), data dir $(du -sh "$dir/data" | cut -f1)" | tee -a "$SERVER_NOTES"
    stop_server kafka "$pid"
    local warn
    warn=$(grep -cE ' (WARN|ERROR) ' "$log" || true)
    echo "kafka: $warn WARN/ERROR lines in its log" | tee -a "$SERVER_NOTES"
    [[ "$warn" == 0 ]] || grep -E ' (WARN|ERROR) ' "$log" | head -10
    rm -rf "$dir/data"
}

run_tansu() {
    local bin=${TANSU:-}
    [[ -z "$bin" ]] && bin=$(command -v tansu || true)
    [[ -z "$bin" && -x /tmp/tansu-root/bin/tansu ]] && bin=/tmp/tansu-root/bin/tansu
    if [[ -z "$bin" ]]; then
        say "tansu: no binary found (\$TANSU, PATH, /tmp/tansu-root/bin/tansu): not measured"
        echo "tansu: not measured (no binary)" >>"$SERVER_NOTES"
        return
    fi
    say "tansu: $bin ($("$bin" --version 2>/dev/null || echo 'version unknown')), memory storage"
    port_free "$TANSU_PORT"
    local log="$WORK/tansu.log"
    "$bin" broker --listener-url "tcp://127.0.0.1:$TANSU_PORT" \
        --advertised-listener-url "tcp://127.0.0.1:$TANSU_PORT" --storage-engine memory://tansu/ >"$log" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    wait_port "$TANSU_PORT" 60 "$pid"
    echo "tansu pid $pid, log $log"
    measure tansu "127.0.0.1:$TANSU_PORT" "$pid" "$log"
    echo "tansu: RSS $(rss "$pid") at the end" | tee -a "$SERVER_NOTES"
    stop_server tansu "$pid"
}

for system in $SYSTEMS; do
    case $system in
        guise) run_guise ;;
        kafka) run_kafka ;;
        tansu) run_tansu ;;
        *) echo "unknown system $system (guise, kafka, tansu)" >&2; exit 2 ;;
    esac
done

# ---------------------------------------------------------------- tables
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
say "results"
cat <<EOF
Machine: $(nproc) cores ($MACHINE_MODEL), $MACHINE_MEM RAM, Linux $(uname -r). Date: $RUN_DATE.
Guise source: $GIT_REV. Apache Kafka: $(basename "$KAFKA_JAR" .jar), heap $KAFKA_HEAP. $(java -version 2>&1 | head -1).
Load average (1, 5, 15 min): $LOAD_START at the start, $LOAD_END at the end.
EOF
cat "$SERVER_NOTES"

if [[ -s "$PERF_RESULTS" ]]; then
    cat <<EOF

Kafka's tools (kafka-tools 4.4, the Java client with its defaults: linger.ms=5, batch.size=16384,
idempotence on with acks=all). One partition, no compression. MB = 10^6 bytes of record values.
Producer latency is ProducerPerformance's send-to-ack time under full load (queueing included).
Fetch is ConsumerPerformance's fetch phase (after the group join).

| system | record size | acks | records | produce MB/s | produce rec/s | producer latency p50 / p99 / max ms | fetch MB/s | fetch rec/s | group join ms | status |
|---|---|---|---|---|---|---|---|---|---|---|
EOF
    while IFS='|' read -r sys size acks n prps pmb p50 p99 pmax frps fmb join st; do
        echo "| $sys | $size B | $acks | $n | $pmb | $prps | $p50 / $p99 / $pmax | $fmb | $frps | $join | $st |"
    done <"$PERF_RESULTS"
fi

if [[ -s "$LOADGEN_RESULTS" ]]; then
    cat <<EOF

loadgen (librdkafka 2.12.1: linger.ms=5, batch.size=1000000; latency: $LATENCY_RECORDS sequential
sends with linger.ms=0; fetch with assign()). One partition, no compression.

| system | record size | acks | records | produce MB/s | produce p50 / p99 / max µs | fetch MB/s | produce CPU s broker / loadgen | fetch CPU s broker / loadgen | status |
|---|---|---|---|---|---|---|---|---|---|
EOF
    while IFS='|' read -r sys size acks n pmb lat fmb pcpu fcpu st; do
        echo "| $sys | $size B | $acks | $n | $pmb | $lat | $fmb | $pcpu | $fcpu | $st |"
    done <"$LOADGEN_RESULTS"
fi

if [[ -s "$COMPACT_RESULTS" ]]; then
    cat <<EOF

Log cleaner (compactbench): one partition, segment.bytes=1 MiB, $COMPACT_SIZE B values, cleaner
looking every ${CLEANER_BACKOFF_MS} ms. Clean MB/s = bytes the pass read / its duration, as the broker
reports them. Latency: sequential sends (linger.ms=0, acks=1), alternately to the partition being
cleaned and to another topic, µs.

| system | MB written | keys | fill MB/s | clean: MB read | MB written | s | MB/s | same partition p50 / p99, no clean | same partition p50 / p99 / max, during the clean | other topic p50 / p99, no clean | other topic p50 / p99 / max, during the clean |
|---|---|---|---|---|---|---|---|---|---|---|---|
EOF
    while IFS='|' read -r sys mb keys fmbps rd wr secs cmbps sb sd ob od; do
        echo "| $sys | $mb | $keys | $fmbps | $rd | $wr | $secs | $cmbps | $sb | $sd | $ob | $od |"
    done <"$COMPACT_RESULTS"
fi

if [[ -s "$TXN_RESULTS" ]]; then
    cat <<EOF

Transactions: one partition, 100 B records, linger.ms=5; each phase runs transactions back to
back for $TXN_SECS s (begin, N sends, commit) with librdkafka (txnbench) and with the Java client
(TxnPerf, "produce (Java)"). Commit latency is commit_transaction (the flush of the last records,
EndTxn, and what the broker does before answering). Fetch: every record
written, from the start, by an assigned consumer. CPU: the broker's user+system seconds over the
whole txnbench run (produce and fetch).

| system | phase | records/txn | txns (records) | txn/s | records/s | MB/s | commit p50 / p99 / max ms | broker CPU s |
|---|---|---|---|---|---|---|---|---|
EOF
    while IFS='|' read -r sys phase n txns tps rps mbps lat cpu; do
        echo "| $sys | $phase | $n | $txns | $tps | $rps | $mbps | $lat | $cpu |"
    done <"$TXN_RESULTS"
fi

if [[ -s "$REQ_RESULTS" ]]; then
    cat <<EOF

Request-bound produce (reqbench): N connections, each a librdkafka producer sending one 100 B
record per Produce request (linger.ms=0, batch.num.messages=1, acks=$REQ_ACKS) and awaiting its
acknowledgement before the next, to a 16-partition topic (connection i writes partition i mod 16),
$REQ_SECS s per row after a warm-up. CPU per request: user+system time over the window / requests.
The client runs on the same cores: at 256 connections it uses more CPU than the broker.

| system | connections | requests/s | p50 µs | p99 µs | max µs | broker CPU µs per request | client CPU µs per request |
|---|---|---|---|---|---|---|---|
EOF
    cat "$REQ_RESULTS"
fi

if [[ -s "$CONN_RESULTS" ]]; then
    cat <<EOF

Idle connections (connbench): $CONN_COUNT TCP connections, opened 200 at a time, each asking
ApiVersions v0 once, then all idle for 5 s; the broker's VmRSS before the first and after.

| system | connections | opened in s | broker RSS before MiB | with the connections MiB | KiB per connection |
|---|---|---|---|---|---|
EOF
    cat "$CONN_RESULTS"
fi

if ((${#FAILURES[@]})); then
    echo
    echo "PROBLEMS:"
    printf ' - %s\n' "${FAILURES[@]}"
    KEEP_LOGS=1
    exit 1
fi
