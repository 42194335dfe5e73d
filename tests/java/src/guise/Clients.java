package guise;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.CreateTopicsOptions;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.clients.admin.GroupListing;
import org.apache.kafka.clients.admin.ListOffsetsResult;
import org.apache.kafka.clients.admin.LogDirDescription;
import org.apache.kafka.clients.admin.MemberDescription;
import org.apache.kafka.clients.admin.NewPartitions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.ProducerState;
import org.apache.kafka.clients.admin.RecordsToDelete;
import org.apache.kafka.clients.admin.ReplicaInfo;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.KafkaFuture;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * Scenarios of the Java client ({@code kafka-clients}), run by the Rust tests against Guise and
 * against Apache Kafka alike. Each prints one JSON line: what a client observed, in a shape the
 * tests can compare between the two brokers.
 *
 * <pre>
 * Clients produce BOOTSTRAP TOPIC COUNT [KEY=VALUE producer properties...]
 * Clients consume BOOTSTRAP TOPIC GROUP COUNT [KEY=VALUE consumer properties...]
 * Clients admin BOOTSTRAP OPS_JSON [KEY=VALUE admin properties...]
 * Clients txn BOOTSTRAP TOPIC TRANSACTIONAL_ID STEPS [KEY=VALUE producer properties...]
 * </pre>
 *
 * {@code txn} runs a transactional producer through STEPS, comma-separated: {@code send:N} (begin a
 * transaction if none is open, send N records, flush), {@code commit}, {@code abort}, {@code fence}
 * (a second producer with the same transactional id initializes; the first is now a zombie and
 * goes on with the steps that follow), {@code leave} (exit now, with the transaction open). One
 * result per step: what it produced or the error the client saw.
 *
 * {@code admin} runs a list of operations ({@code {"op": "create", ...}}) in order and prints one
 * result per operation: {@code {"ok": ...}} or {@code {"error": "ExceptionClass", "message": ...}}.
 */
public final class Clients {
    static final ObjectMapper JSON = new ObjectMapper();
    static final JsonNodeFactory NODES = JsonNodeFactory.instance;

    public static void main(String[] args) throws Exception {
        JsonNode out;
        switch (args[0]) {
            case "produce" -> out = produce(args[1], args[2], Integer.parseInt(args[3]), props(args, 4));
            case "consume" -> out = consume(args[1], args[2], args[3], Integer.parseInt(args[4]), props(args, 5));
            case "admin" -> out = admin(args[1], JSON.readTree(args[2]), props(args, 3));
            case "txn" -> out = txn(args[1], args[2], args[3], args[4], props(args, 5));
            default -> throw new IllegalArgumentException("unknown scenario " + args[0]);
        }
        System.out.println(JSON.writeValueAsString(out));
        System.out.flush();
        // Client threads (metadata refresh, the admin's network thread) must not keep us alive.
        Runtime.getRuntime().halt(0);
    }

    static Properties props(String[] args, int from) {
        Properties p = new Properties();
        for (int i = from; i < args.length; i++) {
            int eq = args[i].indexOf('=');
            p.setProperty(args[i].substring(0, eq), args[i].substring(eq + 1));
        }
        return p;
    }

    /** An idempotent producer (the Java client's default) sending COUNT records, key k{i%7}. */
    static JsonNode produce(String bootstrap, String topic, int count, Properties extra) throws Exception {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "30000");
        p.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, "20000");
        p.putAll(extra);
        // guise.value.bytes (ours, not the client's): pad each value to this many bytes.
        int pad = Integer.parseInt((String) p.getOrDefault("guise.value.bytes", "0"));
        p.remove("guise.value.bytes");
        ArrayNode sent = NODES.arrayNode();
        ObjectNode out = NODES.objectNode();
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(p)) {
            List<Future<RecordMetadata>> futures = new ArrayList<>();
            for (int i = 0; i < count; i++) {
                String value = "v" + i;
                if (value.length() < pad) {
                    value = value + "x".repeat(pad - value.length());
                }
                futures.add(producer.send(new ProducerRecord<>(topic, "k" + (i % 7), value)));
            }
            producer.flush();
            // The longest throttle the brokers reported (quotas), in ms.
            out.put("throttle_max", metric(producer.metrics(), "producer-metrics", "produce-throttle-time-max"));
            for (Future<RecordMetadata> f : futures) {
                try {
                    RecordMetadata m = f.get();
                    sent.add(NODES.arrayNode().add(m.partition()).add(m.offset()));
                } catch (ExecutionException e) {
                    sent.add(error(e.getCause()));
                }
            }
        }
        out.set("sent", sent);
        return out;
    }

    static KafkaProducer<String, String> transactional(String bootstrap, String id, Properties extra) {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, id);
        p.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "30000");
        p.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, "20000");
        p.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, "30000");
        p.putAll(extra);
        return new KafkaProducer<>(p);
    }

    /** A transactional producer through STEPS (see the class comment). */
    static JsonNode txn(String bootstrap, String topic, String id, String steps, Properties extra) throws Exception {
        ArrayNode out = NODES.arrayNode();
        KafkaProducer<String, String> producer = transactional(bootstrap, id, extra);
        KafkaProducer<String, String> fencer = null;
        producer.initTransactions();
        boolean open = false;
        int next = 0;
        for (String step : steps.split(",")) {
            ObjectNode r = NODES.objectNode();
            r.put("step", step);
            try {
                if (step.startsWith("send:")) {
                    if (!open) {
                        producer.beginTransaction();
                        open = true;
                    }
                    List<Future<RecordMetadata>> futures = new ArrayList<>();
                    for (int n = Integer.parseInt(step.substring(5)); n > 0; n--, next++) {
                        futures.add(producer.send(new ProducerRecord<>(topic, "k" + (next % 7), "v" + next)));
                    }
                    producer.flush();
                    ArrayNode sent = NODES.arrayNode();
                    for (Future<RecordMetadata> f : futures) {
                        RecordMetadata m = f.get();
                        sent.add(NODES.arrayNode().add(m.partition()).add(m.offset()));
                    }
                    r.set("sent", sent);
                } else if (step.equals("commit")) {
                    producer.commitTransaction();
                    open = false;
                    r.put("ok", true);
                } else if (step.equals("abort")) {
                    producer.abortTransaction();
                    open = false;
                    r.put("ok", true);
                } else if (step.equals("fence")) {
                    fencer = transactional(bootstrap, id, extra);
                    fencer.initTransactions();
                    r.put("ok", true);
                } else if (step.equals("leave")) {
                    out.add(r.put("ok", true));
                    System.out.println(JSON.writeValueAsString(out));
                    System.out.flush();
                    Runtime.getRuntime().halt(0);
                } else {
                    throw new IllegalArgumentException("unknown step " + step);
                }
            } catch (ExecutionException e) {
                r.setAll(error(e.getCause()));
            } catch (org.apache.kafka.common.KafkaException e) {
                r.setAll(error(e));
            }
            out.add(r);
        }
        producer.close(Duration.ofSeconds(5));
        if (fencer != null) {
            fencer.close(Duration.ofSeconds(5));
        }
        return out;
    }

    /** A client metric's value as a number (0 when absent or not a number, e.g. NaN). */
    static double metric(Map<org.apache.kafka.common.MetricName, ? extends org.apache.kafka.common.Metric> metrics,
            String group, String name) {
        for (var e : metrics.entrySet()) {
            if (e.getKey().group().equals(group) && e.getKey().name().equals(name)) {
                Object v = e.getValue().metricValue();
                if (v instanceof Double d && !d.isNaN() && !d.isInfinite()) {
                    return d;
                }
            }
        }
        return 0;
    }

    /**
     * A group member polling until COUNT records arrived (or 30 s passed), then committing. A
     * client error (e.g. an authorization failure) is the result, as {@code {"error": ...}}.
     */
    static JsonNode consume(String bootstrap, String topic, String group, int count, Properties extra) {
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        p.putAll(extra);
        ArrayNode records = NODES.arrayNode();
        ObjectNode committed = NODES.objectNode();
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(p)) {
            return consumeWith(consumer, topic, count, records, committed);
        } catch (org.apache.kafka.common.KafkaException e) {
            return error(e);
        }
    }

    static JsonNode consumeWith(
            KafkaConsumer<String, String> consumer, String topic, int count, ArrayNode records, ObjectNode committed) {
        consumer.subscribe(List.of(topic));
        long deadline = System.currentTimeMillis() + 30_000;
        while (records.size() < count && System.currentTimeMillis() < deadline) {
            for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(200))) {
                records.add(NODES.arrayNode().add(r.partition()).add(r.offset()).add(r.key()).add(r.value())
                        .add(r.timestampType().toString()));
            }
        }
        consumer.commitSync();
        double throttle = metric(consumer.metrics(), "consumer-fetch-manager-metrics", "fetch-throttle-time-max");
        Set<TopicPartition> assigned = consumer.assignment();
        for (Map.Entry<TopicPartition, OffsetAndMetadata> e : consumer.committed(assigned).entrySet()) {
            if (e.getValue() != null) {
                committed.put(String.valueOf(e.getKey().partition()), e.getValue().offset());
            }
        }
        ObjectNode out = NODES.objectNode();
        out.set("records", records);
        out.set("committed", committed);
        out.put("throttle_max", throttle);
        return out;
    }

    static JsonNode admin(String bootstrap, JsonNode ops, Properties extra) {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "30000");
        p.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "20000");
        p.putAll(extra);
        ArrayNode results = NODES.arrayNode();
        try (Admin admin = Admin.create(p)) {
            for (JsonNode op : ops) {
                try {
                    results.add(NODES.objectNode().set("ok", run(admin, op)));
                } catch (ExecutionException e) {
                    results.add(error(e.getCause()));
                } catch (Exception e) {
                    results.add(error(e));
                }
            }
        }
        return results;
    }

    static ObjectNode error(Throwable t) {
        ObjectNode e = NODES.objectNode();
        e.put("error", t.getClass().getSimpleName());
        e.put("message", String.valueOf(t.getMessage()));
        return e;
    }

    /** Per-key outcomes of a map of futures: "ok" or the error, keyed by the map's key. */
    static <K> ObjectNode outcomes(Map<K, ? extends KafkaFuture<?>> futures) throws InterruptedException {
        ObjectNode out = NODES.objectNode();
        for (Map.Entry<K, ? extends KafkaFuture<?>> e : new TreeMap<>(futures).entrySet()) {
            try {
                e.getValue().get();
                out.put(e.getKey().toString(), "ok");
            } catch (ExecutionException x) {
                out.set(e.getKey().toString(), error(x.getCause()));
            }
        }
        return out;
    }

    static Map<String, String> strings(JsonNode obj) {
        Map<String, String> m = new HashMap<>();
        if (obj != null) {
            obj.fields().forEachRemaining(e -> m.put(e.getKey(), e.getValue().asText()));
        }
        return m;
    }

    static List<String> list(JsonNode arr) {
        List<String> l = new ArrayList<>();
        if (arr != null) {
            arr.forEach(n -> l.add(n.asText()));
        }
        return l;
    }

    static JsonNode run(Admin admin, JsonNode op) throws Exception {
        switch (op.get("op").asText()) {
            case "create": {
                List<NewTopic> topics = new ArrayList<>();
                for (JsonNode t : op.get("topics")) {
                    int partitions = t.path("partitions").asInt(-1);
                    short rf = (short) t.path("rf").asInt(-1);
                    NewTopic nt = new NewTopic(t.get("name").asText(),
                            partitions < 0 ? java.util.Optional.empty() : java.util.Optional.of(partitions),
                            rf < 0 ? java.util.Optional.empty() : java.util.Optional.of(rf));
                    topics.add(nt.configs(strings(t.get("configs"))));
                }
                CreateTopicsOptions options = new CreateTopicsOptions().validateOnly(op.path("validateOnly").asBoolean());
                return outcomes(admin.createTopics(topics, options).values());
            }
            case "delete":
                return outcomes(admin.deleteTopics(list(op.get("names"))).topicNameValues());
            case "createPartitions":
                return outcomes(admin.createPartitions(
                        Map.of(op.get("topic").asText(), NewPartitions.increaseTo(op.get("total").asInt()))).values());
            case "describeTopics": {
                ObjectNode out = NODES.objectNode();
                for (Map.Entry<String, KafkaFuture<TopicDescription>> e :
                        new TreeMap<>(admin.describeTopics(list(op.get("names"))).topicNameValues()).entrySet()) {
                    try {
                        TopicDescription d = e.getValue().get();
                        ObjectNode t = NODES.objectNode();
                        t.put("internal", d.isInternal());
                        ArrayNode parts = t.putArray("partitions");
                        for (TopicPartitionInfo info : d.partitions()) {
                            parts.add(NODES.objectNode()
                                    .put("partition", info.partition())
                                    .put("leader", info.leader() == null ? -1 : info.leader().id())
                                    .put("replicas", info.replicas().size())
                                    .put("isr", info.isr().size()));
                        }
                        out.set(e.getKey(), t);
                    } catch (ExecutionException x) {
                        out.set(e.getKey(), error(x.getCause()));
                    }
                }
                return out;
            }
            case "listTopics": {
                ArrayNode out = NODES.arrayNode();
                new java.util.TreeSet<>(admin.listTopics().names().get()).forEach(out::add);
                return out;
            }
            case "describeConfigs": {
                ConfigResource r = new ConfigResource(ConfigResource.Type.TOPIC, op.get("topic").asText());
                Config config = admin.describeConfigs(List.of(r)).all().get().get(r);
                ObjectNode out = NODES.objectNode();
                List<ConfigEntry> entries = new ArrayList<>(config.entries());
                entries.sort((a, b) -> a.name().compareTo(b.name()));
                for (ConfigEntry e : entries) {
                    out.set(e.name(), NODES.objectNode()
                            .put("value", e.value())
                            .put("source", e.source().name())
                            .put("readOnly", e.isReadOnly())
                            .put("sensitive", e.isSensitive()));
                }
                return out;
            }
            case "alterConfigs": {
                ConfigResource r = new ConfigResource(ConfigResource.Type.TOPIC, op.get("topic").asText());
                List<AlterConfigOp> alter = new ArrayList<>();
                strings(op.get("set")).forEach((k, v) ->
                        alter.add(new AlterConfigOp(new ConfigEntry(k, v), AlterConfigOp.OpType.SET)));
                list(op.get("delete")).forEach(k ->
                        alter.add(new AlterConfigOp(new ConfigEntry(k, null), AlterConfigOp.OpType.DELETE)));
                admin.incrementalAlterConfigs(Map.of(r, alter)).all().get();
                return NODES.textNode("ok");
            }
            case "listOffsets": {
                TopicPartition tp = new TopicPartition(op.get("topic").asText(), op.path("partition").asInt(0));
                JsonNode spec = op.get("spec");
                OffsetSpec s = switch (spec.asText()) {
                    case "earliest" -> OffsetSpec.earliest();
                    case "latest" -> OffsetSpec.latest();
                    case "max" -> OffsetSpec.maxTimestamp();
                    default -> OffsetSpec.forTimestamp(spec.asLong());
                };
                ListOffsetsResult.ListOffsetsResultInfo info = admin.listOffsets(Map.of(tp, s)).partitionResult(tp).get();
                return NODES.objectNode().put("offset", info.offset()).put("timestamp", info.timestamp());
            }
            case "deleteRecords": {
                TopicPartition tp = new TopicPartition(op.get("topic").asText(), op.path("partition").asInt(0));
                long low = admin.deleteRecords(Map.of(tp, RecordsToDelete.beforeOffset(op.get("before").asLong())))
                        .lowWatermarks().get(tp).get().lowWatermark();
                return NODES.numberNode(low);
            }
            case "describeCluster": {
                DescribeClusterResult c = admin.describeCluster();
                ObjectNode out = NODES.objectNode();
                ArrayNode nodes = out.putArray("nodes");
                for (Node n : c.nodes().get()) {
                    nodes.add(NODES.objectNode().put("id", n.id()).put("host", n.host()).put("port", n.port()));
                }
                out.put("controller", c.controller().get().id());
                out.put("hasClusterId", c.clusterId().get() != null);
                return out;
            }
            case "listGroups": {
                ArrayNode out = NODES.arrayNode();
                Collection<GroupListing> groups = admin.listGroups().all().get();
                groups.stream().map(GroupListing::groupId).sorted().forEach(out::add);
                return out;
            }
            case "describeGroup": {
                String g = op.get("group").asText();
                ConsumerGroupDescription d = admin.describeConsumerGroups(List.of(g)).describedGroups().get(g).get();
                ObjectNode out = NODES.objectNode();
                out.put("state", d.groupState().toString());
                out.put("protocol", d.partitionAssignor());
                out.put("coordinator", d.coordinator() == null ? -1 : d.coordinator().id());
                ArrayNode members = out.putArray("members");
                for (MemberDescription m : d.members()) {
                    members.add(m.assignment().topicPartitions().size());
                }
                return out;
            }
            case "groupOffsets": {
                String g = op.get("group").asText();
                ObjectNode out = NODES.objectNode();
                Map<TopicPartition, OffsetAndMetadata> offsets =
                        admin.listConsumerGroupOffsets(g).partitionsToOffsetAndMetadata().get();
                new TreeMap<>(toStrings(offsets)).forEach(out::put);
                return out;
            }
            case "describeProducers": {
                // What must be equal on any broker: epochs and sequences, not ids or clocks.
                TopicPartition tp = new TopicPartition(op.get("topic").asText(), op.path("partition").asInt(0));
                ArrayNode out = NODES.arrayNode();
                for (ProducerState p : admin.describeProducers(List.of(tp)).partitionResult(tp).get().activeProducers()) {
                    out.add(NODES.objectNode()
                            .put("epoch", p.producerEpoch())
                            .put("lastSequence", p.lastSequence())
                            .put("hasTimestamp", p.lastTimestamp() > 0)
                            .put("coordinatorEpoch", p.coordinatorEpoch().orElse(-1))
                            .put("txnStart", p.currentTransactionStartOffset().orElse(-1)));
                }
                return out;
            }
            case "describeLogDirs": {
                // The broker's log dirs; of each, the partitions of topics named with `prefix`.
                String prefix = op.get("prefix").asText();
                int node = admin.describeCluster().nodes().get().iterator().next().id();
                Map<String, LogDirDescription> dirs = admin.describeLogDirs(List.of(node)).allDescriptions().get().get(node);
                ObjectNode out = NODES.objectNode();
                out.put("dirs", dirs.size());
                for (LogDirDescription d : dirs.values()) {
                    out.put("error", d.error() == null ? "none" : d.error().getClass().getSimpleName());
                    out.put("totalBytesKnown", d.totalBytes().isPresent());
                    out.put("usableBytesKnown", d.usableBytes().isPresent());
                    ObjectNode parts = out.putObject("partitions");
                    new TreeMap<>(toNames(d.replicaInfos())).forEach((name, info) -> {
                        if (name.startsWith(prefix)) {
                            parts.set(name, NODES.objectNode()
                                    .put("sizePositive", info.size() > 0)
                                    .put("offsetLag", info.offsetLag())
                                    .put("future", info.isFuture()));
                        }
                    });
                }
                return out;
            }
            case "deleteGroups":
                return outcomes(admin.deleteConsumerGroups(list(op.get("groups"))).deletedGroups());
            case "alterScram": {
                // upsert: [{user, mechanism, iterations, password}], delete: [{user, mechanism}]
                List<org.apache.kafka.clients.admin.UserScramCredentialAlteration> changes = new ArrayList<>();
                for (JsonNode u : op.path("upsert")) {
                    org.apache.kafka.clients.admin.ScramMechanism m =
                            org.apache.kafka.clients.admin.ScramMechanism.fromMechanismName(u.get("mechanism").asText());
                    changes.add(new org.apache.kafka.clients.admin.UserScramCredentialUpsertion(u.get("user").asText(),
                            new org.apache.kafka.clients.admin.ScramCredentialInfo(m, u.get("iterations").asInt()),
                            u.get("password").asText()));
                }
                for (JsonNode d : op.path("delete")) {
                    changes.add(new org.apache.kafka.clients.admin.UserScramCredentialDeletion(d.get("user").asText(),
                            org.apache.kafka.clients.admin.ScramMechanism.fromMechanismName(d.get("mechanism").asText())));
                }
                return outcomes(admin.alterUserScramCredentials(changes).values());
            }
            case "describeScram": {
                // users: [..] (absent: all) → {user: [[mechanism, iterations], ..]} or {error}
                List<String> users = op.has("users") ? list(op.get("users")) : null;
                var result = users == null ? admin.describeUserScramCredentials() : admin.describeUserScramCredentials(users);
                ObjectNode out = NODES.objectNode();
                try {
                    for (var e : new TreeMap<>(result.all().get()).entrySet()) {
                        ArrayNode infos = out.putArray(e.getKey());
                        for (var i : e.getValue().credentialInfos()) {
                            infos.add(NODES.arrayNode().add(i.mechanism().mechanismName()).add(i.iterations()));
                        }
                    }
                } catch (ExecutionException x) {
                    return error(x.getCause());
                }
                return out;
            }
            case "alterQuotas": {
                // entries: [{entity: {"user": NAME|null, "client-id": NAME|null}, set: {KEY: VALUE},
                // remove: [KEY]}], validateOnly → {entity: "ok" | {error}}
                List<org.apache.kafka.common.quota.ClientQuotaAlteration> changes = new ArrayList<>();
                for (JsonNode e : op.path("entries")) {
                    Map<String, String> entity = new HashMap<>();
                    e.get("entity").fields().forEachRemaining(f -> entity.put(f.getKey(), f.getValue().isNull() ? null : f.getValue().asText()));
                    List<org.apache.kafka.common.quota.ClientQuotaAlteration.Op> ops = new ArrayList<>();
                    e.path("set").fields().forEachRemaining(f -> ops.add(new org.apache.kafka.common.quota.ClientQuotaAlteration.Op(f.getKey(), f.getValue().asDouble())));
                    e.path("remove").forEach(k -> ops.add(new org.apache.kafka.common.quota.ClientQuotaAlteration.Op(k.asText(), null)));
                    changes.add(new org.apache.kafka.common.quota.ClientQuotaAlteration(new org.apache.kafka.common.quota.ClientQuotaEntity(entity), ops));
                }
                var options = new org.apache.kafka.clients.admin.AlterClientQuotasOptions().validateOnly(op.path("validateOnly").asBoolean(false));
                Map<String, KafkaFuture<Void>> byEntity = new HashMap<>();
                admin.alterClientQuotas(changes, options).values()
                        .forEach((entity, f) -> byEntity.put(new TreeMap<>(entity.entries()).toString(), f));
                return outcomes(byEntity);
            }
            case "describeQuotas": {
                // components: [{type, match: "exact"|"default"|"any", name}], strict
                // → {entity: {KEY: VALUE}} or {error}
                List<org.apache.kafka.common.quota.ClientQuotaFilterComponent> components = new ArrayList<>();
                for (JsonNode c : op.path("components")) {
                    String type = c.get("type").asText();
                    components.add(switch (c.get("match").asText()) {
                        case "exact" -> org.apache.kafka.common.quota.ClientQuotaFilterComponent.ofEntity(type, c.get("name").asText());
                        case "default" -> org.apache.kafka.common.quota.ClientQuotaFilterComponent.ofDefaultEntity(type);
                        default -> org.apache.kafka.common.quota.ClientQuotaFilterComponent.ofEntityType(type);
                    });
                }
                var filter = op.path("strict").asBoolean(false)
                        ? org.apache.kafka.common.quota.ClientQuotaFilter.containsOnly(components)
                        : org.apache.kafka.common.quota.ClientQuotaFilter.contains(components);
                ObjectNode out = NODES.objectNode();
                try {
                    Map<String, Map<String, Double>> found = new TreeMap<>();
                    admin.describeClientQuotas(filter).entities().get()
                            .forEach((entity, values) -> found.put(new TreeMap<>(entity.entries()).toString(), new TreeMap<>(values)));
                    found.forEach((entity, values) -> {
                        ObjectNode v = out.putObject(entity);
                        values.forEach(v::put);
                    });
                } catch (ExecutionException x) {
                    return error(x.getCause());
                }
                return out;
            }
            default:
                throw new IllegalArgumentException("unknown admin op " + op);
        }
    }

    static Map<String, ReplicaInfo> toNames(Map<TopicPartition, ReplicaInfo> infos) {
        Map<String, ReplicaInfo> m = new HashMap<>();
        infos.forEach((tp, i) -> m.put(tp.toString(), i));
        return m;
    }

    static Map<String, Long> toStrings(Map<TopicPartition, OffsetAndMetadata> offsets) {
        Map<String, Long> m = new HashMap<>();
        offsets.forEach((tp, o) -> m.put(tp.toString(), o == null ? -1 : o.offset()));
        return m;
    }
}
