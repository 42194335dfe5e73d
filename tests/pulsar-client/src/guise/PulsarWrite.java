package guise;

import java.nio.charset.StandardCharsets;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.apache.pulsar.client.api.Producer;
import org.apache.pulsar.client.api.PulsarClient;

/**
 * Sends N messages to a topic with the official Java client, batched and asynchronous: message i
 * has key PREFIX-key-i, payload PREFIX-i, property i and event time 1600000000000 + i. Prints
 * {"sent": N} once every send is acknowledged.
 *
 * <pre>PulsarWrite SERVICE_URL TOPIC N PREFIX</pre>
 */
public final class PulsarWrite {
    public static void main(String[] args) throws Exception {
        int n = Integer.parseInt(args[2]);
        String prefix = args[3];
        try (PulsarClient client = PulsarClient.builder().serviceUrl(args[0]).build();
                Producer<byte[]> producer = client.newProducer()
                        .topic(args[1])
                        .enableBatching(true)
                        .batchingMaxPublishDelay(5, TimeUnit.MILLISECONDS)
                        .create()) {
            CompletableFuture<?>[] sends = new CompletableFuture<?>[n];
            for (int i = 0; i < n; i++) {
                sends[i] = producer.newMessage()
                        .key(prefix + "-key-" + i)
                        .value((prefix + "-" + i).getBytes(StandardCharsets.UTF_8))
                        .property("i", Integer.toString(i))
                        .eventTime(1_600_000_000_000L + i)
                        .sendAsync();
            }
            CompletableFuture.allOf(sends).get(60, TimeUnit.SECONDS);
        }
        System.out.println("{\"sent\":" + n + "}");
    }
}
