#!/usr/bin/env bash
# What TLS and SASL cost Guise's data path, in one run on this machine: one `guise serve`
# (embedded log, fresh temp dir) with three Kafka listeners side by side — PLAINTEXT, SSL and
# SASL_SSL (SCRAM-SHA-512) — measured with the librdkafka load generator (`loadgen`: produce
# throughput, sequential produce latency, fetch throughput, the host's CPU per phase) through
# each in turn, twice, the order reversed in the second round. Then Apache Kafka 4.4 (one KRaft
# node, Kafka's own JVM flags) with PLAINTEXT and SSL listeners on the same certificate, measured
# the same way (SKIP_KAFKA=1 leaves it out). The certificates (a throwaway CA) and the SCRAM user
# are made here. Prints a markdown table.
# Usage: benches/security.sh   (from anywhere)
# Knobs (environment): RECORDS (default 300000), SIZE (1024), ACKS (1), LATENCY_RECORDS (1000),
# SKIP_BUILD=1, SKIP_KAFKA=1, KEEP_LOGS=1, KAFKA_HEAP (1g), M2_REPO, GUISE_BIN, LOADGEN. CARGO_TARGET_DIR is honoured.
# The per-login cost of SCRAM and the cost of one ACL check are criterion benchmarks:
# `cargo bench -p guise-benches --bench security`.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
RECORDS=${RECORDS:-300000}
SIZE=${SIZE:-1024}
ACKS=${ACKS:-1}
LATENCY_RECORDS=${LATENCY_RECORDS:-1000}
GUISE_BIN=${GUISE_BIN:-"$TARGET/release/guise"}
LOADGEN=${LOADGEN:-"$TARGET/release/loadgen"}
PLAIN_PORT=19192 SSL_PORT=19193 SASL_PORT=19194 ADMIN_PORT=18180
KAFKA_PORT=19195 KAFKA_SSL_PORT=19196 KAFKA_CONTROLLER_PORT=19197
PASSWORD="bench-password-0123"

WORK=$(mktemp -d -t guise-security.XXXXXX)
source benches/lib.sh

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    say "building guise and loadgen (release)"
    cargo build --release -p guise-host -p guise-benches --bin guise --bin loadgen
fi

say "certificates and the SCRAM user in $WORK"
(
    cd "$WORK"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 -subj "/CN=bench CA" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout host.rsa -out host.csr -subj "/CN=localhost" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >host.ext
    openssl x509 -req -in host.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile host.ext \
        -out host.crt 2>/dev/null
    openssl pkcs8 -topk8 -nocrypt -in host.rsa -out host.key && chmod 600 host.key
    echo "$PASSWORD" | "$GUISE_BIN" scram-credential --user bench --mechanism SCRAM-SHA-512 \
        --iterations 4096 >users.toml
    chmod 600 users.toml
    cat >guise.toml <<TOML
tls_cert_file = "$WORK/host.crt"
tls_key_file = "$WORK/host.key"
sasl_users_file = "$WORK/users.toml"
[[listeners]]
addr = "127.0.0.1:$SSL_PORT"
tenant = "public"
security_protocol = "SSL"
[[listeners]]
addr = "127.0.0.1:$SASL_PORT"
tenant = "public"
security_protocol = "SASL_SSL"
TOML
)

NO_COLOR=1 "$GUISE_BIN" serve --config "$WORK/guise.toml" --data-dir "$WORK/data" \
    --kafka-addr "127.0.0.1:$PLAIN_PORT" --admin-addr "127.0.0.1:$ADMIN_PORT" >"$WORK/guise.log" 2>&1 &
GUISE_PID=$!
PIDS+=("$GUISE_PID")
wait_health "$ADMIN_PORT" "$GUISE_PID"

RESULTS="$WORK/results.txt"
SERVER_PID=$GUISE_PID SYSTEM=guise
run() { # ROUND LISTENER PORT [--client-config K=V ...]
    local round=$1 listener=$2 port=$3
    shift 3
    local out="$WORK/loadgen-$SYSTEM-$round-$listener.log"
    echo "-- $SYSTEM, round $round, $listener"
    "$LOADGEN" --bootstrap "127.0.0.1:$port" --topic "bench-$round-$listener" --size "$SIZE" \
        --records "$RECORDS" --acks "$ACKS" --latency-records "$LATENCY_RECORDS" --json \
        --server-pid "$SERVER_PID" --timeout-secs 300 "$@" 2>&1 | tee "$out"
    grep '^JSON ' "$out" | sed 's/^JSON //' | python3 -c '
import json, sys
r = json.load(sys.stdin)
rec = int(sys.argv[3])
print("|".join([sys.argv[4], sys.argv[1], sys.argv[2], "%.1f" % r["produce_mbps"], "%.0f" % r["produce_rps"],
    "%.2f" % (r["produce_cpu_server"] * 1e6 / rec), str(r["latency_p50_us"]), str(r["latency_p99_us"]),
    "%.1f" % r["fetch_mbps"], "%.2f" % (r["fetch_cpu_server"] * 1e6 / rec)]))' "$round" "$listener" "$RECORDS" "$SYSTEM" >>"$RESULTS"
}
SSL=(--client-config security.protocol=ssl --client-config "ssl.ca.location=$WORK/ca.crt")
SASL=(--client-config security.protocol=sasl_ssl --client-config "ssl.ca.location=$WORK/ca.crt"
    --client-config sasl.mechanism=SCRAM-SHA-512 --client-config sasl.username=bench
    --client-config "sasl.password=$PASSWORD")
for round in 1 2; do
    order=(PLAINTEXT SSL SASL_SSL)
    [[ $round == 2 ]] && order=(SASL_SSL SSL PLAINTEXT)
    for listener in "${order[@]}"; do
        case $listener in
        PLAINTEXT) run "$round" PLAINTEXT "$PLAIN_PORT" ;;
        SSL) run "$round" SSL "$SSL_PORT" "${SSL[@]}" ;;
        SASL_SSL) run "$round" SASL_SSL "$SASL_PORT" "${SASL[@]}" ;;
        esac
    done
done


if [[ "${SKIP_KAFKA:-0}" != 1 ]]; then
    kill -TERM "$GUISE_PID"; wait "$GUISE_PID" 2>/dev/null || true
    source benches/kafka-java.sh
    kafka_java_setup
    say "Apache Kafka 4.4: one KRaft node, heap $KAFKA_HEAP, PLAINTEXT and SSL listeners"
    mkdir -p "$WORK/kafka/data"
    # The same certificate and key as Guise's, as a PEM key store (the key, then the chain).
    cat "$WORK/host.key" "$WORK/host.crt" >"$WORK/kafka/keystore.pem"
    cat >"$WORK/kafka/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,SSL://127.0.0.1:$KAFKA_SSL_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,SSL://127.0.0.1:$KAFKA_SSL_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SSL:SSL
ssl.keystore.type=PEM
ssl.keystore.location=$WORK/kafka/keystore.pem
log.dirs=$WORK/kafka/data
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
PROPS
    # A random UUID in Kafka's base64 form; not one starting with '-', which the format tool would
    # take for an option.
    cluster_id=-
    while [[ $cluster_id == -* ]]; do
        cluster_id=$(head -c16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
    done
    java "${KAFKA_JVM_OPTS[@]}" "${LOG4J[@]}" -cp "$PEER_CLASSES:$KAFKA_CP" guise.Peer $$ \
        --format "$cluster_id" "$WORK/kafka/server.properties" kafka.Kafka "$WORK/kafka/server.properties" \
        >"$WORK/kafka/broker.log" 2>&1 &
    KAFKA_PID=$!
    PIDS+=("$KAFKA_PID")
    for _ in $(seq 1800); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$KAFKA_SSL_PORT") 2>/dev/null; then break; fi
        kill -0 "$KAFKA_PID" 2>/dev/null || { echo "kafka exited; see $WORK/kafka/broker.log" >&2; exit 1; }
        sleep 0.1
    done
    SERVER_PID=$KAFKA_PID SYSTEM=kafka
    for round in 1 2; do
        order=(PLAINTEXT SSL)
        [[ $round == 2 ]] && order=(SSL PLAINTEXT)
        for listener in "${order[@]}"; do
            case $listener in
            PLAINTEXT) run "$round" PLAINTEXT "$KAFKA_PORT" ;;
            SSL) run "$round" SSL "$KAFKA_SSL_PORT" "${SSL[@]}" ;;
            esac
        done
    done
fi

say "results: $RECORDS records of $SIZE B, acks=$ACKS, one partition"
echo "| system | round | listener | produce MB/s | records/s | host CPU µs/record (produce) | latency p50 µs | p99 µs | fetch MB/s | host CPU µs/record (fetch) |"
echo "|---|---|---|---|---|---|---|---|---|---|"
sed 's/|/ | /g; s/^/| /; s/$/ |/' "$RESULTS"
