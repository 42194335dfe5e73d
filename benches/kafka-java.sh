# Apache Kafka 4.4 as a peer of the benchmark scripts (sourced by kafka-compare.sh and
# security.sh from the repository root, with ROOT set and `say` defined).
# Its JVM flags as its scripts set
# them (heap from KAFKA_HEAP, default 1g), the classpath resolved with Maven into M2_REPO
# (default target/m2) once, guise.Peer compiled, and `tool MAIN ARGS...` for Kafka's tools.
KAFKA_HEAP=${KAFKA_HEAP:-1g}
M2_REPO=${M2_REPO:-$ROOT/target/m2}
JAVA_DIR=$ROOT/target/java
# As bin/kafka-server-start.sh and bin/kafka-run-class.sh start the broker (heap from KAFKA_HEAP).
KAFKA_JVM_OPTS=(-Xmx"$KAFKA_HEAP" -Xms"$KAFKA_HEAP" -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20
    -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true)
# As bin/kafka-producer-perf-test.sh and kafka-consumer-perf-test.sh start the tools.
TOOL_JVM_OPTS=(-Xmx512M -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35
    -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true)
LOG4J=(-Dlog4j2.configurationFile="$ROOT/benches/kafka-log4j2.properties" -Djava.net.preferIPv4Stack=true)
kafka_java_setup() {
    say "Java: Apache Kafka 4.4 and its tools from Maven (tests/java/pom.xml, repository $M2_REPO)"
    mkdir -p "$JAVA_DIR"
    CP_FILE="$JAVA_DIR/bench-classpath.txt"
    cp_fresh() {
        [[ -s "$CP_FILE" && ! "$ROOT/tests/java/pom.xml" -nt "$CP_FILE" ]] || return 1
        local jar
        for jar in $(tr ':' ' ' <"$CP_FILE"); do [[ -e "$jar" ]] || return 1; done
    }
    if ! cp_fresh; then
        echo "resolving the classpath with Maven (the first time downloads ~160 MB)"
        mvn -q -B -f "$ROOT/tests/java/pom.xml" -Dmaven.repo.local="$M2_REPO" \
            -Dmdep.outputFile="$CP_FILE.tmp" dependency:build-classpath
        mv "$CP_FILE.tmp" "$CP_FILE"
    fi
    KAFKA_CP=$(cat "$CP_FILE")
    PEER_CLASSES="$JAVA_DIR/bench-peer-classes"
    if [[ ! -f "$PEER_CLASSES/guise/Peer.class" || "$ROOT/tests/java/src/guise/Peer.java" -nt "$PEER_CLASSES/guise/Peer.class" ]]; then
        javac -nowarn --release 17 -d "$PEER_CLASSES" "$ROOT/tests/java/src/guise/Peer.java"
    fi
    # The benchmarks' own Java client scenarios (benches/java).
    BENCH_CLASSES="$JAVA_DIR/bench-classes"
    if [[ ! -f "$BENCH_CLASSES/guise/bench/TxnPerf.class" || "$ROOT/benches/java/guise/bench/TxnPerf.java" -nt "$BENCH_CLASSES/guise/bench/TxnPerf.class" ]]; then
        javac -nowarn --release 17 -cp "$KAFKA_CP" -d "$BENCH_CLASSES" "$ROOT/benches/java/guise/bench/TxnPerf.java"
    fi
    KAFKA_JAR=$(tr ':' '\n' <"$CP_FILE" | grep -m1 '/kafka_2.13-')
    echo "java: $(java -version 2>&1 | head -1); kafka: $(basename "$KAFKA_JAR")"

    # tool MAIN ARGS...: one of Kafka's tools (by main class) in a JVM as its script starts it.
    # A tool that has not finished after TOOL_TIMEOUT seconds (180) is killed: against a broker that
    # never answers, the Java producer keeps expiring batches for a long time.
    tool() {
        local main=$1; shift
        timeout -k 5 "${TOOL_TIMEOUT:-180}" java "${TOOL_JVM_OPTS[@]}" "${LOG4J[@]}" -cp "$KAFKA_CP" "$main" "$@"
    }
}
