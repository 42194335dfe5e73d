package guise.bench;

import java.util.Arrays;
import java.util.Properties;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/**
 * Transactions with the Java client (kafka-clients 4.4, its defaults but linger.ms=5): for each
 * size in SIZES (records per transaction), transactions back to back for SECS seconds on
 * partition 0 of TOPIC: begin, N sends of SIZE_BYTES-byte values, commit. Prints one JSON line per
 * size: transactions, records, seconds, commit latency (commitTransaction: the flush of the last
 * records, EndTxn and whatever the broker does before answering) p50 / p99 / max in ms.
 *
 * <pre>TxnPerf BOOTSTRAP TOPIC SIZES SECS SIZE_BYTES</pre>
 */
public final class TxnPerf {
    public static void main(String[] args) throws Exception {
        String bootstrap = args[0], topic = args[1];
        int secs = Integer.parseInt(args[3]), valueBytes = Integer.parseInt(args[4]);
        byte[] value = new byte[valueBytes];
        Arrays.fill(value, (byte) 'x');
        for (String n : args[2].split(",")) {
            int perTxn = Integer.parseInt(n);
            Properties p = new Properties();
            p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
            p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
            p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
            p.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, topic + "-java-" + perTxn + "-" + ProcessHandle.current().pid());
            p.put(ProducerConfig.LINGER_MS_CONFIG, "5");
            long[] commits = new long[1 << 20];
            int txns = 0;
            long records = 0;
            long start = System.nanoTime();
            try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(p)) {
                producer.initTransactions();
                while (System.nanoTime() - start < TimeUnit.SECONDS.toNanos(secs) && txns < commits.length) {
                    producer.beginTransaction();
                    for (int i = 0; i < perTxn; i++) {
                        producer.send(new ProducerRecord<>(topic, 0, null, value));
                    }
                    long t = System.nanoTime();
                    producer.commitTransaction();
                    commits[txns++] = System.nanoTime() - t;
                    records += perTxn;
                }
            }
            double elapsed = (System.nanoTime() - start) / 1e9;
            long[] sorted = Arrays.copyOf(commits, txns);
            Arrays.sort(sorted);
            java.util.function.DoubleUnaryOperator q = f -> sorted.length == 0 ? 0
                    : sorted[Math.min(sorted.length - 1, (int) Math.ceil(f * sorted.length) - 1)] / 1e6;
            System.out.printf(java.util.Locale.ROOT,
                    "{\"per_txn\":%d,\"txns\":%d,\"records\":%d,\"secs\":%.3f,\"commit_p50_ms\":%.2f,\"commit_p99_ms\":%.2f,\"commit_max_ms\":%.2f}%n",
                    perTxn, txns, records, elapsed, q.applyAsDouble(0.5), q.applyAsDouble(0.99), q.applyAsDouble(1.0));
        }
        System.out.flush();
        Runtime.getRuntime().halt(0);
    }
}
