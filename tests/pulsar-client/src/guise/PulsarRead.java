package guise;

import java.nio.charset.StandardCharsets;
import java.util.Base64;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.apache.pulsar.client.api.Consumer;
import org.apache.pulsar.client.api.Message;
import org.apache.pulsar.client.api.PulsarClient;
import org.apache.pulsar.client.api.SubscriptionInitialPosition;

/**
 * Reads every message of a topic (all partitions of a partitioned one) from the earliest with
 * the official Java client, until none comes for IDLE_MS, and prints them as one JSON array.
 *
 * <pre>PulsarRead SERVICE_URL TOPIC IDLE_MS</pre>
 */
public final class PulsarRead {
    public static void main(String[] args) throws Exception {
        StringBuilder out = new StringBuilder("[");
        try (PulsarClient client = PulsarClient.builder().serviceUrl(args[0]).build();
                Consumer<byte[]> consumer = client.newConsumer()
                        .topic(args[1])
                        .subscriptionName("java-direct-reader")
                        .subscriptionInitialPosition(SubscriptionInitialPosition.Earliest)
                        .subscribe()) {
            int idle = Integer.parseInt(args[2]);
            Message<byte[]> m;
            while ((m = consumer.receive(idle, TimeUnit.MILLISECONDS)) != null) {
                if (out.length() > 1) {
                    out.append(',');
                }
                out.append("{\"key\":").append(m.hasKey() ? quote(m.getKey()) : "null");
                out.append(",\"data\":").append(quote(Base64.getEncoder().encodeToString(m.getData())));
                out.append(",\"event_time\":").append(m.getEventTime());
                out.append(",\"topic\":").append(quote(m.getTopicName()));
                out.append(",\"properties\":{");
                boolean first = true;
                for (Map.Entry<String, String> p : m.getProperties().entrySet()) {
                    out.append(first ? "" : ",").append(quote(p.getKey())).append(':').append(quote(p.getValue()));
                    first = false;
                }
                out.append("},\"null_value\":")
                        .append(m.getData().length == 0 && "1".equals(m.getProperty("guise.null")));
                out.append('}');
                consumer.acknowledge(m);
            }
        }
        System.out.println(out.append(']'));
    }

    private static String quote(String s) {
        StringBuilder q = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            if (c == '"' || c == '\\') {
                q.append('\\').append(c);
            } else if (c < 0x20) {
                q.append(String.format("\\u%04x", (int) c));
            } else {
                q.append(c);
            }
        }
        return q.append('"').toString();
    }
}
