# Transactions measured against one running broker (sourced by kafka-compare.sh and
# apache-pulsar.sh after kafka_java_setup): `run_txn SYSTEM BOOTSTRAP PID` runs txnbench
# (librdkafka) and TxnPerf (the Java client) with TXN_SIZES records per transaction for TXN_SECS
# seconds each and appends lines to TXN_RESULTS (failures to FAILURES); `print_txn_table` prints
# them. Needs TXNBENCH, WORK, BENCH_CLASSES, KAFKA_CP, TOOL_JVM_OPTS and LOG4J.
TXN_SECS=${TXN_SECS:-10}
TXN_SIZES=${TXN_SIZES:-1,100,10000}
TXN_RESULTS=${TXN_RESULTS:-"$WORK/txn.txt"}
: >"$TXN_RESULTS"

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

print_txn_table() {
    [[ -s "$TXN_RESULTS" ]] || return 0
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
}
