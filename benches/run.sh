#!/usr/bin/env bash
# Guise benchmarks on this machine, in one run (a few minutes):
#   (a) the loopback TCP ceiling with iperf3 (installed with apt-get when missing);
#   (b) Guise (embedded log in a fresh temp dir): loadgen with 100 B and 1 KiB records;
#   (c) tansu 0.6 (memory storage) with the same loadgen runs, when a `tansu` binary is found
#       ($TANSU, PATH, or /tmp/tansu-root/bin/tansu). This script does not install tansu; do it with
#       `cargo install tansu --version 0.6.0 --features dynostore,libsql` (15-20 minutes).
# Then prints a markdown table. Usage: benches/run.sh   (from anywhere; it cds to the repo root)
# Knobs (environment): RECORDS_100 (default 2000000), RECORDS_1K (1000000), LATENCY_RECORDS (2000),
# PARTITIONS (1), ACKS (1), SKIP_TANSU=1, SKIP_IPERF=1, KEEP_LOGS=1 (keep the work dir),
# GUISE_BIN (another guise binary to measure, e.g. an older build side by side).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
RECORDS_100=${RECORDS_100:-2000000}
RECORDS_1K=${RECORDS_1K:-1000000}
LATENCY_RECORDS=${LATENCY_RECORDS:-2000}
PARTITIONS=${PARTITIONS:-1}
ACKS=${ACKS:-1}
GUISE_PORT=19092
GUISE_ADMIN_PORT=18080
TANSU_PORT=19093
IPERF_PORT=5201

WORK=$(mktemp -d -t guise-bench.XXXXXX)
PIDS=()
cleanup() {
    local rc=$?
    for pid in "${PIDS[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
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

# json_get FILE FILTER: jq when present, else python3 (FILTER is a jq path like .a.b).
json_get() {
    if command -v jq >/dev/null; then
        jq -r "$2" "$1"
    else
        python3 -c 'import json,sys
v=json.load(open(sys.argv[1]))
for k in sys.argv[2].strip(".").split("."): v=v[k]
print(v)' "$1" "$2"
    fi
}

# listening PORT: is a TCP socket listening on PORT (read from /proc, without connecting: a probe
# connection would be taken for a client, and would use up iperf3's one-off server).
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

port_free() { ! listening "$1"; }

# ---------------------------------------------------------------- machine
MACHINE_CPUS=$(nproc)
MACHINE_MODEL=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
MACHINE_KERNEL=$(uname -r)
MACHINE_MEM=$(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)
RUN_DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
GIT_REV=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
GIT_DIRTY=$(git status --porcelain --untracked-files=no 2>/dev/null | awk '{print $2}' | paste -sd, -)
[[ -n "$GIT_DIRTY" ]] && GIT_REV="$GIT_REV + uncommitted changes to $GIT_DIRTY"
say "machine: $MACHINE_CPUS cores, $MACHINE_MODEL, $MACHINE_MEM RAM, Linux $MACHINE_KERNEL; $RUN_DATE"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "source: $GIT_REV"

# ---------------------------------------------------------------- build
say "build (release): guise and loadgen"
cargo build --release -p guise-host -p guise-benches
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
GUISE_BIN=${GUISE_BIN:-"$TARGET/release/guise"}
LOADGEN="$TARGET/release/loadgen"

# ---------------------------------------------------------------- (a) iperf3
IPERF_GBITS="n/a"; IPERF_GBYTES="n/a"
if [[ "${SKIP_IPERF:-0}" != 1 ]]; then
    say "(a) loopback TCP ceiling (iperf3, one stream, 5 s)"
    if ! command -v iperf3 >/dev/null; then
        echo "iperf3 missing: installing with apt-get"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iperf3
    fi
    port_free "$IPERF_PORT" || { echo "port $IPERF_PORT is busy" >&2; exit 1; }
    iperf3 -s -1 -p "$IPERF_PORT" >"$WORK/iperf3-server.log" 2>&1 &
    PIDS+=($!)
    wait_port "$IPERF_PORT" 10 "${PIDS[-1]}"
    iperf3 -c 127.0.0.1 -p "$IPERF_PORT" -t 5 -J >"$WORK/iperf3.json" || true
    if [[ "$(json_get "$WORK/iperf3.json" .end.sum_received.bits_per_second 2>/dev/null)" =~ ^[0-9.e+]+$ ]]; then :; else
        echo "iperf3 failed:" >&2; cat "$WORK/iperf3.json" "$WORK/iperf3-server.log" >&2; exit 1
    fi
    BPS=$(json_get "$WORK/iperf3.json" .end.sum_received.bits_per_second)
    IPERF_GBITS=$(awk -v b="$BPS" 'BEGIN {printf "%.1f", b/1e9}')
    IPERF_GBYTES=$(awk -v b="$BPS" 'BEGIN {printf "%.2f", b/8e9}')
    echo "loopback: $IPERF_GBITS Gbit/s = $IPERF_GBYTES GB/s"
fi

# ---------------------------------------------------------------- (a') page cache
# Guise acknowledges a produce once it is in the page cache, so writing new page-cache pages
# bounds produce. On some VMs the first touch of a guest page is expensive (the host backs guest
# memory lazily), which makes this number vary a lot from run to run: it is measured, not assumed.
say "(a') page-cache write ceiling: dd 1 GiB to a new file (no fsync), then delete it"
DD_OUT=$(dd if=/dev/zero of="$WORK/dd.tmp" bs=1M count=1024 2>&1 | tail -1)
rm -f "$WORK/dd.tmp"
DD_SECS=$(echo "$DD_OUT" | sed -E 's/.* copied, ([0-9.]+) s.*/\1/')
PAGECACHE_MBPS=$(awk -v s="$DD_SECS" 'BEGIN {printf "%.0f", 1073741824/s/1e6}')
echo "page cache: $PAGECACHE_MBPS MB/s ($DD_OUT)"

# Results: one line per run: system|size|records|produce MB/s|produce rec/s|p50|p99|max|fetch MB/s|fetch rec/s|status
RESULTS="$WORK/results.txt"
: >"$RESULTS"
FAILURES=()   # make the script fail
WARNINGS=()   # reported, but the numbers stand

# run_loadgen SYSTEM BOOTSTRAP SIZE RECORDS TOPIC SERVER_PID
run_loadgen() {
    local system=$1 bootstrap=$2 size=$3 records=$4 topic=$5 server_pid=$6
    local out="$WORK/loadgen-$system-$size.log"
    echo "-- $system, $size B x $records"
    local st=0
    set +e
    "$LOADGEN" --bootstrap "$bootstrap" --topic "$topic" --size "$size" --records "$records" \
        --partitions "$PARTITIONS" --acks "$ACKS" --latency-records "$LATENCY_RECORDS" --json \
        --server-pid "$server_pid" --timeout-secs 300 2>&1 | tee "$out"
    st=${PIPESTATUS[0]}
    set -e
    if [[ $st == 0 ]]; then
        local j
        j=$(grep '^JSON ' "$out" | sed 's/^JSON //')
        echo "$j" >"$WORK/r.json"
        printf '%s|%s|%s|%.1f|%.0f|%s|%s|%s|%.1f|%.0f|ok|%s|%s|%s|%s\n' "$system" "$size" "$records" \
            "$(json_get "$WORK/r.json" .produce_mbps)" "$(json_get "$WORK/r.json" .produce_rps)" \
            "$(json_get "$WORK/r.json" .latency_p50_us)" "$(json_get "$WORK/r.json" .latency_p99_us)" \
            "$(json_get "$WORK/r.json" .latency_max_us)" \
            "$(json_get "$WORK/r.json" .fetch_mbps)" "$(json_get "$WORK/r.json" .fetch_rps)" \
            "$(json_get "$WORK/r.json" .produce_cpu_server)" "$(json_get "$WORK/r.json" .produce_cpu_client)" \
            "$(json_get "$WORK/r.json" .fetch_cpu_server)" "$(json_get "$WORK/r.json" .fetch_cpu_client)" >>"$RESULTS"
        if grep -q '"watermarks_ok":false' "$WORK/r.json"; then
            WARNINGS+=("$system $size B: ListOffsets high watermark disagrees with the records fetched (see WARNING above)")
        fi
    else
        local why
        why=$(grep 'loadgen: FAILED' "$out" | tail -1 || true)
        echo "$system|$size|$records|-|-|-|-|-|-|-|FAILED: ${why:-exit status $st}" >>"$RESULTS"
        FAILURES+=("$system $size B: ${why:-loadgen exit status $st}")
    fi
}

# stop_server NAME PID: SIGTERM, wait up to 30 s, report how it ended.
stop_server() {
    local name=$1 pid=$2 rc=0
    if ! kill -0 "$pid" 2>/dev/null; then
        wait "$pid" || rc=$?
        echo "$name had already exited (status $rc) before the end of the runs"
        FAILURES+=("$name exited by itself during the runs (status $rc)")
        return
    fi
    kill -TERM "$pid"
    for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
        echo "$name did not stop within 30 s of SIGTERM: killing it"
        FAILURES+=("$name ignored SIGTERM for 30 s")
        kill -KILL "$pid"
    fi
    wait "$pid" || rc=$?
    echo "$name stopped (exit status $rc)"
}

# ---------------------------------------------------------------- (b) Guise
say "(b) Guise"
port_free "$GUISE_PORT" || { echo "port $GUISE_PORT is busy" >&2; exit 1; }
GUISE_DATA=$(mktemp -d -p "$WORK" guise-data.XXXXXX)
GUISE_LOG_FILE="$WORK/guise.log"
NO_COLOR=1 GUISE_LOG=${GUISE_LOG:-info} "$GUISE_BIN" serve --data-dir "$GUISE_DATA" \
    --kafka-addr "127.0.0.1:$GUISE_PORT" --admin-addr "127.0.0.1:$GUISE_ADMIN_PORT" \
    >"$GUISE_LOG_FILE" 2>&1 &
GUISE_PID=$!
PIDS+=("$GUISE_PID")
wait_port "$GUISE_PORT" 60 "$GUISE_PID"
echo "guise pid $GUISE_PID, log $GUISE_LOG_FILE, data $GUISE_DATA"
run_loadgen guise "127.0.0.1:$GUISE_PORT" 100 "$RECORDS_100" bench-100 "$GUISE_PID"
run_loadgen guise "127.0.0.1:$GUISE_PORT" 1024 "$RECORDS_1K" bench-1024 "$GUISE_PID"
echo "guise RSS before stop: $(awk '/VmRSS/ {print $2/1024 " MiB"}' "/proc/$GUISE_PID/status" 2>/dev/null || echo n/a)"
echo "guise data dir: $(du -sh "$GUISE_DATA" | cut -f1)"
stop_server guise "$GUISE_PID"
sed -i 's/\x1b\[[0-9;]*m//g' "$GUISE_LOG_FILE"   # in case colours got through
GUISE_WARN=$(grep -cE ' (WARN|ERROR) ' "$GUISE_LOG_FILE" || true)
echo "guise log: $(wc -l <"$GUISE_LOG_FILE") lines, $GUISE_WARN WARN/ERROR lines"
if [[ "$GUISE_WARN" != 0 ]]; then
    echo "--- guise WARN/ERROR lines (first 20):"
    grep -E ' (WARN|ERROR) ' "$GUISE_LOG_FILE" | head -20
fi
cp "$GUISE_LOG_FILE" "$ROOT/target/bench-guise.log" 2>/dev/null || true
rm -rf "$GUISE_DATA"   # frees its page cache before tansu runs

# ---------------------------------------------------------------- (c) tansu
TANSU_BIN=${TANSU:-}
[[ -z "$TANSU_BIN" ]] && TANSU_BIN=$(command -v tansu || true)
[[ -z "$TANSU_BIN" && -x /tmp/tansu-root/bin/tansu ]] && TANSU_BIN=/tmp/tansu-root/bin/tansu
if [[ "${SKIP_TANSU:-0}" == 1 ]]; then
    say "(c) tansu: skipped (SKIP_TANSU=1)"
elif [[ -z "$TANSU_BIN" ]]; then
    say "(c) tansu: no binary found (\$TANSU, PATH, /tmp/tansu-root/bin/tansu); install it with"
    echo "    cargo install tansu --version 0.6.0 --features dynostore,libsql"
else
    say "(c) tansu: $TANSU_BIN ($("$TANSU_BIN" --version 2>/dev/null || echo 'version unknown'))"
    port_free "$TANSU_PORT" || { echo "port $TANSU_PORT is busy" >&2; exit 1; }
    TANSU_LOG_FILE="$WORK/tansu.log"
    "$TANSU_BIN" broker --listener-url "tcp://127.0.0.1:$TANSU_PORT" \
        --advertised-listener-url "tcp://127.0.0.1:$TANSU_PORT" --storage-engine memory://tansu/ \
        >"$TANSU_LOG_FILE" 2>&1 &
    TANSU_PID=$!
    PIDS+=("$TANSU_PID")
    wait_port "$TANSU_PORT" 60 "$TANSU_PID"
    echo "tansu pid $TANSU_PID, log $TANSU_LOG_FILE"
    run_loadgen tansu "127.0.0.1:$TANSU_PORT" 100 "$RECORDS_100" bench-100 "$TANSU_PID"
    run_loadgen tansu "127.0.0.1:$TANSU_PORT" 1024 "$RECORDS_1K" bench-1024 "$TANSU_PID"
    echo "tansu RSS before stop: $(awk '/VmRSS/ {print $2/1024 " MiB"}' "/proc/$TANSU_PID/status" 2>/dev/null || echo n/a)"
    stop_server tansu "$TANSU_PID"
fi

# ---------------------------------------------------------------- table
say "results"
cat <<EOF
Machine: $MACHINE_CPUS cores ($MACHINE_MODEL), $MACHINE_MEM RAM, Linux $MACHINE_KERNEL. Date: $RUN_DATE.
Guise source: $GIT_REV.
Loopback TCP ceiling (iperf3, one stream): $IPERF_GBITS Gbit/s = $IPERF_GBYTES GB/s. Page-cache write (dd, new 1 GiB file): $PAGECACHE_MBPS MB/s.
loadgen: librdkafka 2.12.1, $PARTITIONS partition(s), acks=$ACKS, no compression; latency over $LATENCY_RECORDS sequential sends (linger.ms=0); MB = 10^6 bytes of record values.

| system | record size | records | produce MB/s | produce rec/s | produce p50 / p99 / max µs | fetch MB/s | fetch rec/s | status |
|---|---|---|---|---|---|---|---|---|
EOF
while IFS='|' read -r sys size recs pmb prps p50 p99 pmax fmb frps status _; do
    echo "| $sys | $size B | $recs | $pmb | $prps | $p50 / $p99 / $pmax | $fmb | $frps | $status |"
done <"$RESULTS"

# CPU seconds (user + system, from /proc) over each throughput phase: both processes share the cores.
echo
echo "| system | record size | produce: server CPU s / loadgen CPU s | fetch: server CPU s / loadgen CPU s |"
echo "|---|---|---|---|"
while IFS='|' read -r sys size _ _ _ _ _ _ _ _ status pcs pcc fcs fcc; do
    [[ "$status" == ok ]] && echo "| $sys | $size B | $pcs / $pcc | $fcs / $fcc |"
done <"$RESULTS"

# Ratios Guise / tansu per record size.
if grep -q '^tansu|' "$RESULTS"; then
    echo
    echo "| record size | produce Guise/tansu (target >= 1.5x) | fetch Guise/tansu (target >= 5x) |"
    echo "|---|---|---|"
    for size in 100 1024; do
        g=$(grep "^guise|$size|" "$RESULTS" || true); t=$(grep "^tansu|$size|" "$RESULTS" || true)
        awk -F'|' -v g="$g" -v t="$t" -v size="$size" 'BEGIN {
            split(g, G, "|"); split(t, T, "|")
            if (G[11] != "ok" || T[11] != "ok") { printf "| %s B | n/a | n/a |\n", size; exit }
            pr = G[4] / T[4]; fr = G[9] / T[9]
            printf "| %s B | %.3fx (%s) | %.3fx (%s) |\n", size, pr, (pr >= 1.5 ? "met" : "NOT met"), fr, (fr >= 5 ? "met" : "NOT met")
        }'
    done
fi

if ((${#WARNINGS[@]})); then
    echo
    echo "WARNINGS:"
    printf ' - %s\n' "${WARNINGS[@]}"
fi
if ((${#FAILURES[@]})); then
    echo
    echo "PROBLEMS:"
    printf ' - %s\n' "${FAILURES[@]}"
    echo "logs: $WORK (kept)"
    KEEP_LOGS=1
    exit 1
fi
