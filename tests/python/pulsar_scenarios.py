"""Scenarios run with the official Pulsar client (libpulsar, the C++ client inside PyPI's
pulsar-client wheel) against Guise's Pulsar endpoint, for tests/tests/pulsar_endpoint.rs.

Usage: python3 pulsar_scenarios.py SCENARIO SERVICE_URL TOPIC [ARGS...]
Each scenario checks what it can itself (an AssertionError exits non-zero) and prints one JSON
line with what it saw, for the Rust test to check against the Kafka side.
"""

import base64
import json
import sys
import time

import pulsar

COMPRESSIONS = {
    "none": pulsar.CompressionType.NONE,
    "lz4": pulsar.CompressionType.LZ4,
    "zlib": pulsar.CompressionType.ZLib,
    "zstd": pulsar.CompressionType.ZSTD,
    "snappy": pulsar.CompressionType.SNAPPY,
}


def client(url):
    return pulsar.Client(url, operation_timeout_seconds=15,
                         logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn))


def describe(m):
    key = m.partition_key() if m.partition_key() else None
    return {
        "id": str(m.message_id()),
        "key": key,
        "data": base64.b64encode(m.data()).decode(),
        "properties": m.properties(),
        "event_time": m.event_timestamp(),
        "publish_time": m.publish_timestamp(),
    }


def consume(url, topic, n, sub="kafka-interop"):
    """Read n messages from the earliest position and describe them."""
    c = client(url)
    consumer = c.subscribe(topic, sub, initial_position=pulsar.InitialPosition.Earliest)
    out = []
    for _ in range(int(n)):
        m = consumer.receive(timeout_millis=15000)
        out.append(describe(m))
        consumer.acknowledge(m)
    c.close()
    return out


def produce_codecs(url, topic, per_codec, codecs=",".join(COMPRESSIONS)):
    """Batched, asynchronous sends with each codec (of a comma-separated list): key, properties
    and event time per message."""
    c = client(url)
    sent = 0
    for name in codecs.split(","):
        codec = COMPRESSIONS[name]
        p = c.create_producer(topic, compression_type=codec, batching_enabled=True,
                              batching_max_publish_delay_ms=5)
        for i in range(int(per_codec)):
            p.send_async(("%s-%d" % (name, i)).encode(), None, partition_key="%s-key-%d" % (name, i),
                         properties={"codec": name, "i": str(i)}, event_timestamp=1_600_000_000_000 + i)
            sent += 1
        p.flush()
        p.close()
    c.close()
    return {"sent": sent}


def cursor(url, topic, phase):
    """A durable subscription: phase 1 acknowledges the first 5 messages; phase 2 (after a
    restart of the host) must resume at the sixth."""
    c = client(url)
    consumer = c.subscribe(topic, "durable", initial_position=pulsar.InitialPosition.Earliest)
    if phase == "1":
        got = []
        for _ in range(5):
            m = consumer.receive(timeout_millis=15000)
            got.append(m.data().decode())
            consumer.acknowledge(m)
        consumer.close()  # flushes the grouped acknowledgements
        c.close()
        return got
    m = consumer.receive(timeout_millis=15000)
    c.close()
    return [m.data().decode()]


def reader_seek(url, topic):
    """A reader from the earliest message, has_message_available, seek by message id and by
    publish time."""
    c = client(url)
    reader = c.create_reader(topic, pulsar.MessageId.earliest)
    msgs = []
    while reader.has_message_available():
        msgs.append(reader.read_next(timeout_millis=15000))
    assert len(msgs) > 0, "no messages"
    assert not reader.has_message_available()
    middle = len(msgs) // 2
    reader.seek(msgs[middle].message_id())
    after = reader.read_next(timeout_millis=15000)
    # A reader's start is exclusive: the client delivers what follows the sought message.
    assert after.data() == msgs[middle + 1].data(), (after.data(), msgs[middle + 1].data())
    reader.seek(pulsar.MessageId.earliest)
    assert reader.read_next(timeout_millis=15000).data() == msgs[0].data()
    reader.close()
    # A consumer seeking by time starts at the first message published at or after it.
    consumer = c.subscribe(topic, "by-time", initial_position=pulsar.InitialPosition.Latest)
    consumer.seek(msgs[middle].event_timestamp())
    m = consumer.receive(timeout_millis=15000)
    assert m.event_timestamp() >= msgs[middle].event_timestamp()
    c.close()
    return {"messages": len(msgs), "after_seek": after.data().decode()}


def subscriptions(url, topic, total):
    """Shared: two consumers split the messages, each once. Exclusive: a second consumer is
    refused. Failover: only the active consumer receives. Negative acks come back."""
    total = int(total)
    c = client(url)
    s1 = c.subscribe(topic, "shared", consumer_type=pulsar.ConsumerType.Shared,
                     initial_position=pulsar.InitialPosition.Earliest, receiver_queue_size=5)
    s2 = c.subscribe(topic, "shared", consumer_type=pulsar.ConsumerType.Shared, receiver_queue_size=5)
    seen = {}
    counts = [0, 0]
    deadline = time.time() + 60
    while len(seen) < total and time.time() < deadline:
        for i, consumer in enumerate((s1, s2)):
            try:
                m = consumer.receive(timeout_millis=100)
            except pulsar.Timeout:
                continue
            seen[m.data()] = seen.get(m.data(), 0) + 1
            counts[i] += 1
            consumer.acknowledge(m)
    assert len(seen) == total, (len(seen), total)
    assert all(v == 1 for v in seen.values()), "a message went to both shared consumers"
    assert counts[0] > 0 and counts[1] > 0, counts
    s1.close()
    s2.close()

    e1 = c.subscribe(topic, "exclusive", initial_position=pulsar.InitialPosition.Earliest,
                     negative_ack_redelivery_delay_ms=100)
    refused = None
    try:
        c.subscribe(topic, "exclusive")
    except pulsar.PulsarException as e:  # ConsumerBusy
        refused = str(e)
    assert refused is not None, "a second consumer joined an exclusive subscription"
    first = e1.receive(timeout_millis=15000)
    e1.negative_acknowledge(first)
    # The others already queued keep coming; the negatively acknowledged one comes back.
    again = e1.receive(timeout_millis=15000)
    while again.data() != first.data():
        e1.acknowledge(again)
        again = e1.receive(timeout_millis=15000)
    e1.close()

    f1 = c.subscribe(topic, "failover", consumer_type=pulsar.ConsumerType.Failover,
                     consumer_name="a", initial_position=pulsar.InitialPosition.Earliest)
    f2 = c.subscribe(topic, "failover", consumer_type=pulsar.ConsumerType.Failover, consumer_name="b")
    got = [0, 0]
    for i, consumer in enumerate((f1, f2)):
        try:
            while True:
                consumer.acknowledge(consumer.receive(timeout_millis=1000))
                got[i] += 1
        except pulsar.Timeout:
            pass
    assert sorted(got) == [0, total], got

    # A seek closes every consumer of the subscription, also those of other connections; they
    # come back, and both get messages again.
    other = client(url)
    k1 = c.subscribe(topic, "seek-all", consumer_type=pulsar.ConsumerType.Shared,
                     initial_position=pulsar.InitialPosition.Earliest, receiver_queue_size=1)
    k2 = other.subscribe(topic, "seek-all", consumer_type=pulsar.ConsumerType.Shared, receiver_queue_size=1)
    drained = 0
    while drained < total:  # empty both receiver queues first: what comes later came after the seek
        for consumer in (k1, k2):
            try:
                consumer.acknowledge(consumer.receive(timeout_millis=200))
                drained += 1
            except pulsar.Timeout:
                pass
    k1.seek(pulsar.MessageId.earliest)
    after = [0, 0]
    deadline = time.time() + 60
    while (after[0] == 0 or after[1] == 0) and time.time() < deadline:
        for i, consumer in enumerate((k1, k2)):
            try:
                consumer.acknowledge(consumer.receive(timeout_millis=200))
                after[i] += 1
            except pulsar.Timeout:
                pass
    assert after[0] > 0 and after[1] > 0, ("a consumer got nothing after the seek", after)
    other.close()
    c.close()
    return {"shared": counts, "refused": refused, "failover": got, "after_seek": after}


def access_modes(url, topic):
    """Exclusive refuses another Exclusive and a Shared producer; ExclusiveWithFencing takes
    the topic and the old producer's sends fail. (WaitForExclusive has a unit test only.)"""
    c = client(url)
    a = c.create_producer(topic, access_mode=pulsar.ProducerAccessMode.Exclusive)
    refusals = 0
    for mode in (pulsar.ProducerAccessMode.Exclusive, pulsar.ProducerAccessMode.Shared):
        try:
            c.create_producer(topic, access_mode=mode)
        except pulsar.PulsarException:
            refusals += 1
    assert refusals == 2, refusals
    a.send(b"from-a")
    fencer = c.create_producer(topic, access_mode=pulsar.ProducerAccessMode.ExclusiveWithFencing)
    fencer.send(b"from-fencer")
    fenced = False
    try:
        a.send(b"from-a-after-fencing")
    except pulsar.PulsarException:
        fenced = True
    assert fenced, "the fenced producer could still send"
    try:
        c.close()
    except pulsar.PulsarException:  # AlreadyClosed: the fenced producer
        pass
    return {"refusals": refusals, "fenced": fenced}


def schema_and_pattern(url, topic):
    """A producer declaring a schema (STRING) is accepted and its messages read; a pattern
    consumer finds topics through GET_TOPICS_OF_NAMESPACE and reads them. (libpulsar carries on
    without a schema version too, so this does not prove the version is sent.)"""
    import re
    from pulsar.schema import StringSchema
    c = client(url)
    p = c.create_producer(topic, schema=StringSchema())
    p.send("with a schema")
    p.close()
    consumer = c.subscribe(re.compile(topic.rsplit("/", 1)[0] + "/pattern-.*"), "by-pattern",
                           initial_position=pulsar.InitialPosition.Earliest, schema=StringSchema())
    m = consumer.receive(timeout_millis=15000)
    got = m.value()
    c.close()
    return {"received": got}


def error_name(e):
    """The client's exception class, as an application sees it (pulsar.ConsumerBusy, ...)."""
    return type(e).__name__


def attempt(f):
    """What f() does: "ok", or the name of the exception it raised."""
    try:
        f()
        return "ok"
    except Exception as e:  # noqa: BLE001 -- what was raised is the observation
        return error_name(e)


def observe(url, prefix):
    """What a Pulsar application can observe, for the differential test: the same calls against
    Apache Pulsar and against Guise's endpoint must give the same JSON. Message ids, publish
    times and ledger numbers differ by nature and are left out. Each part runs on, whatever the
    one before did: a part that raised shows as {"raised": NAME, "message": ...}."""
    c = client(url)
    out = {}

    def part(name, f):
        try:
            out[name] = f()
        except Exception as e:  # noqa: BLE001 -- what was raised is the observation
            out[name] = {"raised": error_name(e), "message": str(e)}

    data = prefix + "-data"

    def produce():
        # Batched (LZ4) and unbatched messages; keys or none; properties; event time.
        batched = c.create_producer(data, compression_type=pulsar.CompressionType.LZ4,
                                    batching_enabled=True, batching_max_publish_delay_ms=50,
                                    batching_max_messages=3)
        for i in range(3):
            batched.send_async(("b%d" % i).encode(), None, partition_key="k%d" % i,
                               properties={"i": str(i)}, event_timestamp=1_650_000_000_000 + i)
        batched.flush()
        batched.close()
        single = c.create_producer(data, batching_enabled=False)
        single.send(b"s0", properties={"kind": "single"}, event_timestamp=1_650_000_000_100)
        single.send(b"s1", partition_key="only-key")
        single.send(b"")
        single.close()
        return "ok"
    part("produce", produce)

    def consume():
        consumer = c.subscribe(data, "observer", initial_position=pulsar.InitialPosition.Earliest)
        got = []
        for _ in range(6):
            m = consumer.receive(timeout_millis=15000)
            mid = m.message_id()
            got.append({
                "key": m.partition_key() or None,
                "data": m.data().decode(),
                "properties": m.properties(),
                "event_time": m.event_timestamp(),
                "batch_index": mid.batch_index(),
                "redelivery_count": m.redelivery_count(),
            })
            consumer.acknowledge(m)
        seen = {"messages": got}
        seen["more_after_the_end"] = attempt(lambda: consumer.receive(timeout_millis=1000))
        seen["second_exclusive_consumer"] = attempt(lambda: c.subscribe(data, "observer"))
        consumer.close()
        return seen
    part("consume", consume)

    def resume():
        # A durable subscription resumes after the acknowledged ones.
        producer = c.create_producer(data, batching_enabled=False)
        producer.send(b"after")
        producer.close()
        resumed = c.subscribe(data, "observer")
        at = resumed.receive(timeout_millis=15000).data().decode()
        resumed.close()
        return at
    part("resumed_at", resume)
    part("unsubscribe", lambda: attempt(lambda: c.subscribe(data, "gone").unsubscribe()))

    def readers():
        reader = c.create_reader(data, pulsar.MessageId.earliest)
        read = []
        while reader.has_message_available():
            read.append(reader.read_next(timeout_millis=15000))
        seen = {"read": [m.data().decode() for m in read]}
        reader.seek(read[1].message_id())
        seen["after_seek"] = reader.read_next(timeout_millis=15000).data().decode()
        reader.close()
        inclusive = c.create_reader(data, read[3].message_id(), start_message_id_inclusive=True)
        seen["inclusive_starts_at"] = inclusive.read_next(timeout_millis=15000).data().decode()
        inclusive.close()
        latest = c.create_reader(data, pulsar.MessageId.latest)
        seen["latest_has_message"] = latest.has_message_available()
        latest.close()
        return seen
    part("readers", readers)

    modes = prefix + "-modes"

    def producers():
        seen = {}
        first = c.create_producer(modes, producer_name=prefix.rsplit("/", 1)[1] + "-named")
        seen["same_name"] = attempt(
            lambda: c.create_producer(modes, producer_name=prefix.rsplit("/", 1)[1] + "-named").close())
        seen["exclusive_beside_shared"] = attempt(
            lambda: c.create_producer(modes, access_mode=pulsar.ProducerAccessMode.Exclusive).close())
        first.close()
        excl = c.create_producer(modes, access_mode=pulsar.ProducerAccessMode.Exclusive)
        seen["shared_beside_exclusive"] = attempt(lambda: c.create_producer(modes).close())
        fencer = c.create_producer(modes, access_mode=pulsar.ProducerAccessMode.ExclusiveWithFencing)
        seen["send_after_fenced"] = attempt(lambda: excl.send(b"late"))
        fencer.close()
        return seen
    part("producers", producers)

    part("partitions_of_a_new_topic", lambda: len(c.get_topic_partitions(prefix + "-new")))
    part("unknown_tenant_producer", lambda: attempt(
        lambda: c.create_producer("persistent://no-such-tenant/default/x").close()))
    part("unknown_namespace_consumer", lambda: attempt(
        lambda: c.subscribe("persistent://public/no-such-ns/x", "s").close()))
    part("too_large", lambda: attempt(
        lambda: c.create_producer(prefix + "-big", batching_enabled=False).send(b"x" * (6 << 20))))
    try:
        c.close()
    except pulsar.PulsarException:  # AlreadyClosed: the fenced producer
        pass
    return out

def consume_until_idle(url, topic, idle_ms="3000"):
    """Every message of topic (all partitions of a partitioned one) from the earliest, until
    none comes for idle_ms; described with the partition it came from."""
    c = client(url)
    consumer = c.subscribe(topic, "direct-reader", initial_position=pulsar.InitialPosition.Earliest)
    out = []
    while True:
        try:
            m = consumer.receive(timeout_millis=int(idle_ms))
        except pulsar.Timeout:
            break
        d = describe(m)
        d["topic"] = m.topic_name()
        d["null_value"] = m.data() == b"" and m.properties().get("guise.null") == "1"
        out.append(d)
        consumer.acknowledge(m)
    c.close()
    return out


def produce_values(url, topic, *values):
    """One unbatched send per value, in order, without a key."""
    c = client(url)
    p = c.create_producer(topic, batching_enabled=False)
    for v in values:
        p.send(v.encode())
    p.close()
    c.close()
    return {"sent": len(values)}


def token_refresh(url, topic, first, fresh, wait="5"):
    """A producer whose token (`first`) expires while it runs: the client declares it can
    refresh credentials, so the endpoint challenges it, and the supplier answers with `fresh`.
    Sending goes on past the first token's expiry."""
    supplied = []

    def supply():
        supplied.append(1)
        return first if len(supplied) == 1 else fresh

    c = pulsar.Client(url, authentication=pulsar.AuthenticationToken(supply), operation_timeout_seconds=15,
                      logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn))
    p = c.create_producer(topic, send_timeout_millis=15000)
    p.send(b"before")
    time.sleep(float(wait))
    p.send(b"after")
    c.close()
    return {"sent": 2, "supplied": len(supplied)}


SCENARIOS = {
    "consume_until_idle": consume_until_idle,
    "produce_values": produce_values,
    "observe": observe,
    "schema_and_pattern": schema_and_pattern,
    "consume": consume,
    "produce_codecs": produce_codecs,
    "cursor": cursor,
    "reader_seek": reader_seek,
    "subscriptions": subscriptions,
    "access_modes": access_modes,
    "token_refresh": token_refresh,
}

if __name__ == "__main__":
    name, args = sys.argv[1], sys.argv[2:]
    print(json.dumps(SCENARIOS[name](*args)))
