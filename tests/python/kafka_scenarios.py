"""Scenarios run with kafka-python (PyPI's pure-Python Kafka client) against Guise's Kafka
listeners, for tests/tests/kafka_python.rs.

Usage: python3 kafka_scenarios.py SCENARIO CONFIG_JSON
CONFIG_JSON names the listener and the login: bootstrap, security_protocol, and as needed
mechanism, user, password, cafile, tls_max (the highest TLS version, e.g. TLSv1_2); then the
scenario's own keys (topic, n, group).
Each scenario checks what it can itself (an AssertionError exits non-zero) and prints one JSON
line, last, with what it saw, for the Rust test to check.
"""

import json
import logging
import os
import ssl
import sys
import time

import kafka
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaError


def connection(cfg):
    """kafka-python's connection settings for the listener and login in cfg."""
    out = {
        "bootstrap_servers": cfg["bootstrap"],
        "security_protocol": cfg["security_protocol"],
        "request_timeout_ms": 15000,
        "api_version_auto_timeout_ms": 10000,
        "reconnect_backoff_ms": 100,
        "reconnect_backoff_max_ms": 500,
    }
    if cfg.get("mechanism"):
        out["sasl_mechanism"] = cfg["mechanism"]
        out["sasl_plain_username"] = cfg["user"]
        out["sasl_plain_password"] = cfg["password"]
    if cfg.get("cafile"):
        out["ssl_cafile"] = cfg["cafile"]
        out["ssl_check_hostname"] = True
    if cfg.get("tls_max"):
        ctx = ssl.create_default_context(cafile=cfg["cafile"])
        ctx.maximum_version = getattr(ssl.TLSVersion, cfg["tls_max"])
        out["ssl_context"] = ctx
    return out


def roundtrip(cfg):
    """Create the topic (AdminClient), produce n records (key, value, a header) and read them
    back: with a group consumer that commits when cfg names a group, otherwise with an assigned
    partition from the beginning."""
    conn = connection(cfg)
    topic, n = cfg["topic"], int(cfg["n"])
    admin = KafkaAdminClient(**conn)
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    admin.close()

    producer = KafkaProducer(acks="all", max_block_ms=15000, linger_ms=5, **conn)
    futures = [
        producer.send(topic, key=b"k%d" % i, value=b"v%d" % i, headers=[("h", b"%d" % i)], partition=0)
        for i in range(n)
    ]
    producer.flush(15)
    offsets = [f.get(timeout=15).offset for f in futures]
    api_version = producer.config["api_version"]
    producer.close(5)

    group = cfg.get("group")
    consumer = KafkaConsumer(
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        consumer_timeout_ms=20000,
        **conn,
    )
    tp = TopicPartition(topic, 0)
    if group:
        consumer.subscribe([topic])
    else:
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
    records = []
    deadline = time.time() + 30
    while len(records) < n and time.time() < deadline:
        for batch in consumer.poll(timeout_ms=1000).values():
            records.extend(batch)
    got = [[r.offset, r.key.decode(), r.value.decode(), [[k, v.decode()] for k, v in r.headers]]
           for r in records]
    committed = None
    if group:
        consumer.commit()
        committed = consumer.committed(tp)
    consumer.close()
    return {
        "api_version": list(api_version),
        "offsets": offsets,
        "records": got,
        "committed": committed,
    }


class Closes(logging.Handler):
    """Collects the distinct errors kafka-python closes its connections with (it logs them; its
    producer and consumer reconnect rather than raise)."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.errors = []

    def emit(self, record):
        if record.msg.endswith("Closing connection. %s") and isinstance(record.args[1], Exception):
            e = record.args[1]
            error = {"class": type(e).__name__, "errno": getattr(e, "errno", None), "message": str(e)}
            if error not in self.errors:
                self.errors.append(error)


def refused(cfg):
    """A producer with a login Guise refuses: what send() raises, and the errors kafka-python
    closed its connections with."""
    closes = Closes()
    logging.getLogger("kafka.conn").addHandler(closes)
    raised = None
    try:
        conn = connection(cfg)
        # kafka-python halves a connection's ApiVersions timeout at every attempt and never
        # restores it, so many quick reconnects end in its own RequestTimedOutError: start high
        # and reconnect once a second (about five attempts).
        conn.update(api_version_auto_timeout_ms=60000, reconnect_backoff_ms=1000,
                    reconnect_backoff_max_ms=1000)
        producer = KafkaProducer(max_block_ms=5000, **conn)
        try:
            producer.send(cfg["topic"], b"never").get(timeout=10)
        finally:
            producer.close(1)
    except KafkaError as e:
        raised = type(e).__name__
    return {"raised": raised, "closed_with": closes.errors}


SCENARIOS = {"roundtrip": roundtrip, "refused": refused}

if __name__ == "__main__":
    # KAFKA_PYTHON_LOG=DEBUG shows kafka-python's every request and connection state.
    logging.basicConfig(level=os.environ.get("KAFKA_PYTHON_LOG", "WARNING"), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    name, cfg = sys.argv[1], json.loads(sys.argv[2])
    result = SCENARIOS[name](cfg)
    result["kafka_python"] = kafka.__version__
    print(json.dumps(result))
