package guise;

import com.fasterxml.jackson.databind.node.ObjectNode;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.LongDeserializer;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.KStream;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.TimeWindows;

/**
 * A stateful Kafka Streams application, run by the Rust tests against Guise and Apache Kafka.
 *
 * <pre>
 * StreamsApp input BOOTSTRAP TOPIC BASE FROM COUNT records FROM..FROM+COUNT: key user-(i%5), value w(i%7),
 *                                                  timestamp BASE + i minutes (BASE recent: retention
 *                                                  deletes records older than a week, on both brokers)
 * StreamsApp run BOOTSTRAP APP_ID TOPIC STATE_DIR N  run the topology until it has seen N input
 *                                                  records, then close (which commits)
 * StreamsApp eos BOOTSTRAP APP_ID TOPIC STATE_DIR [forever]
 *                                                  run the topology with exactly_once_v2 until
 *                                                  the group has committed the end of TOPIC (or
 *                                                  until killed)
 * StreamsApp read BOOTSTRAP TOPIC [read_committed]  the latest value of each key (longs)
 * </pre>
 *
 * The topology counts words (a repartition by value, then a count whose store is backed by a
 * compacted changelog) into TOPIC-counts, and counts each user's records per 10-minute window
 * (a windowed store, changelog compact,delete) into TOPIC-windows.
 */
public final class StreamsApp {
    public static void main(String[] args) throws Exception {
        ObjectNode out = Clients.NODES.objectNode();
        switch (args[0]) {
            case "input" -> out.put("sent", input(args[1], args[2], Long.parseLong(args[3]), Integer.parseInt(args[4]), Integer.parseInt(args[5])));
            case "run" -> out.put("processed", run(args[1], args[2], args[3], args[4], Long.parseLong(args[5])));
            case "eos" -> out.put("processed", eos(args[1], args[2], args[3], args[4], args.length > 5 && args[5].equals("forever")));
            case "read" -> read(args[1], args[2], args.length > 3 ? args[3] : "read_uncommitted").forEach(out::put);
            default -> throw new IllegalArgumentException("unknown command " + args[0]);
        }
        System.out.println(Clients.JSON.writeValueAsString(out));
        System.out.flush();
        Runtime.getRuntime().halt(0);
    }

    static int input(String bootstrap, String topic, long base, int from, int count) throws Exception {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(p)) {
            List<Future<RecordMetadata>> sent = new ArrayList<>();
            for (int i = from; i < from + count; i++) {
                sent.add(producer.send(new ProducerRecord<>(topic, null, base + i * 60_000L, "user-" + (i % 5), "w" + (i % 7))));
            }
            for (Future<RecordMetadata> f : sent) {
                f.get();
            }
        }
        return count;
    }

    static long run(String bootstrap, String appId, String topic, String stateDir, long expect) throws Exception {
        AtomicLong seen = new AtomicLong();
        KafkaStreams streams = streams(bootstrap, appId, topic, stateDir, seen, new Properties());
        streams.start();
        long deadline = System.currentTimeMillis() + 120_000;
        while (seen.get() < expect && System.currentTimeMillis() < deadline
                && streams.state() != KafkaStreams.State.ERROR && streams.state() != KafkaStreams.State.NOT_RUNNING) {
            Thread.sleep(100);
        }
        // Let the aggregates of the last records reach their stores and the repartition topic.
        Thread.sleep(1_000);
        streams.close(Duration.ofSeconds(60));
        if (seen.get() < expect) {
            throw new IllegalStateException("saw " + seen.get() + " of " + expect + " records; state " + streams.state());
        }
        return seen.get();
    }

    /**
     * The topology with {@code processing.guarantee=exactly_once_v2}, until the application's
     * group has committed every input partition's end (its offsets commit with its
     * transactions), or 150 s passed.
     */
    static long eos(String bootstrap, String appId, String topic, String stateDir, boolean forever) throws Exception {
        AtomicLong seen = new AtomicLong();
        Properties extra = new Properties();
        extra.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
        // Long transactions: an instance killed a moment after it processed records has not
        // committed them yet (at-least-once would count them twice after a crash).
        extra.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, "5000");
        KafkaStreams streams = streams(bootstrap, appId, topic, stateDir, seen, extra);
        // A broker that crashes under it is weathered: a failed stream thread is replaced.
        streams.setUncaughtExceptionHandler(e -> {
            e.printStackTrace();
            return org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.REPLACE_THREAD;
        });
        streams.start();
        Properties ap = new Properties();
        ap.put(org.apache.kafka.clients.admin.AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        long deadline = System.currentTimeMillis() + 150_000;
        while (forever) {
            Thread.sleep(1_000);
        }
        try (org.apache.kafka.clients.admin.Admin admin = org.apache.kafka.clients.admin.Admin.create(ap)) {
            while (System.currentTimeMillis() < deadline) {
                Thread.sleep(500);
                if (streams.state() == KafkaStreams.State.ERROR || streams.state() == KafkaStreams.State.NOT_RUNNING) {
                    throw new IllegalStateException("streams stopped: " + streams.state());
                }
                try {
                    // Every source: the input and the repartition topics (read through in a second
                    // step, behind any transaction a dead instance left open there).
                    var committed = admin.listConsumerGroupOffsets(appId).partitionsToOffsetAndMetadata().get();
                    Map<TopicPartition, org.apache.kafka.clients.admin.OffsetSpec> latest = new java.util.HashMap<>();
                    for (int part = 0; part < admin.describeTopics(List.of(topic)).allTopicNames().get().get(topic).partitions().size(); part++) {
                        latest.put(new TopicPartition(topic, part), org.apache.kafka.clients.admin.OffsetSpec.latest());
                    }
                    for (TopicPartition tp : committed.keySet()) {
                        latest.put(tp, org.apache.kafka.clients.admin.OffsetSpec.latest());
                    }
                    var ends = admin.listOffsets(latest).all().get();
                    boolean repartitioned = committed.keySet().stream().anyMatch(tp -> tp.topic().endsWith("-repartition"));
                    boolean done = repartitioned && ends.entrySet().stream().allMatch(e -> {
                        var c = committed.get(e.getKey());
                        return c != null && c.offset() >= e.getValue().offset();
                    });
                    if (done) {
                        break;
                    }
                } catch (java.util.concurrent.ExecutionException e) {
                    // The broker restarting, say: ask again.
                }
            }
        }
        streams.close(Duration.ofSeconds(60));
        return seen.get();
    }

    static KafkaStreams streams(String bootstrap, String appId, String topic, String stateDir, AtomicLong seen, Properties extra) {
        Properties p = new Properties();
        p.put(StreamsConfig.APPLICATION_ID_CONFIG, appId);
        p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(StreamsConfig.STATE_DIR_CONFIG, stateDir);
        p.put(StreamsConfig.DEFAULT_KEY_SERDE_CLASS_CONFIG, Serdes.StringSerde.class.getName());
        p.put(StreamsConfig.DEFAULT_VALUE_SERDE_CLASS_CONFIG, Serdes.StringSerde.class.getName());
        p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, "200");
        p.put(StreamsConfig.REPLICATION_FACTOR_CONFIG, "1");
        p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, "1");
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");
        // Streams' consumers do not leave the group on close: a restarted instance waits until
        // the old member's session expires. Keep that short (the brokers' minimum is 6 s).
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG), "6000");
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG), "1000");
        p.putAll(extra);
        StreamsBuilder b = new StreamsBuilder();
        KStream<String, String> in = b.stream(topic);
        in.peek((k, v) -> seen.incrementAndGet())
                .groupBy((k, v) -> v)
                .count(Materialized.as("word-counts"))
                .toStream()
                .to(topic + "-counts", Produced.with(Serdes.String(), Serdes.Long()));
        in.groupByKey()
                .windowedBy(TimeWindows.ofSizeWithNoGrace(Duration.ofMinutes(10)))
                .count(Materialized.as("user-windows"))
                .toStream((w, v) -> w.key() + "@" + w.window().start())
                .to(topic + "-windows", Produced.with(Serdes.String(), Serdes.Long()));
        KafkaStreams streams = new KafkaStreams(b.build(), p);
        streams.setUncaughtExceptionHandler(e -> {
            e.printStackTrace();
            return org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });
        return streams;
    }

    static Map<String, Long> read(String bootstrap, String topic, String isolation) {
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, isolation);
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, LongDeserializer.class.getName());
        Map<String, Long> latest = new TreeMap<>();
        try (KafkaConsumer<String, Long> consumer = new KafkaConsumer<>(p)) {
            List<TopicPartition> parts = new ArrayList<>();
            for (PartitionInfo info : consumer.partitionsFor(topic)) {
                parts.add(new TopicPartition(topic, info.partition()));
            }
            consumer.assign(parts);
            consumer.seekToBeginning(parts);
            Map<TopicPartition, Long> end = consumer.endOffsets(parts);
            long deadline = System.currentTimeMillis() + 30_000;
            while (System.currentTimeMillis() < deadline
                    && parts.stream().anyMatch(tp -> consumer.position(tp) < end.get(tp))) {
                for (ConsumerRecord<String, Long> r : consumer.poll(Duration.ofMillis(200))) {
                    latest.put(r.key(), r.value());
                }
            }
        }
        return latest;
    }
}
