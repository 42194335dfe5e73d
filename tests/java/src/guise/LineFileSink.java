package guise;

import java.io.BufferedWriter;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.OutputStreamWriter;
import java.nio.charset.StandardCharsets;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigDef;
import org.apache.kafka.connect.connector.Task;
import org.apache.kafka.connect.errors.ConnectException;
import org.apache.kafka.connect.sink.SinkConnector;
import org.apache.kafka.connect.sink.SinkRecord;
import org.apache.kafka.connect.sink.SinkTask;

/**
 * A Kafka Connect sink connector appending each record's value, a String, as a line to a text
 * file (the tests' stand-in for {@code connect-file}).
 *
 * <pre>connector.class=guise.LineFileSink  topics=TOPIC  file=PATH</pre>
 *
 * {@code flush} (which the default {@code preCommit} calls before Connect commits the consumer's
 * offsets) writes the buffered lines and syncs the file, so every committed record is on disk.
 */
public final class LineFileSink extends SinkConnector {
    static final ConfigDef CONFIG = new ConfigDef()
            .define("file", ConfigDef.Type.STRING, ConfigDef.Importance.HIGH, "The file to append to.");

    private Map<String, String> props;

    @Override
    public void start(Map<String, String> props) {
        this.props = props;
    }

    @Override
    public Class<? extends Task> taskClass() {
        return LineTask.class;
    }

    @Override
    public List<Map<String, String>> taskConfigs(int maxTasks) {
        return List.of(props); // One file, one writer.
    }

    @Override
    public void stop() {}

    @Override
    public ConfigDef config() {
        return CONFIG;
    }

    @Override
    public String version() {
        return "1";
    }

    public static final class LineTask extends SinkTask {
        private FileOutputStream file;
        private BufferedWriter out;

        @Override
        public void start(Map<String, String> props) {
            try {
                file = new FileOutputStream(props.get("file"), true);
            } catch (IOException e) {
                throw new ConnectException(e);
            }
            out = new BufferedWriter(new OutputStreamWriter(file, StandardCharsets.UTF_8));
        }

        @Override
        public void put(Collection<SinkRecord> records) {
            try {
                for (SinkRecord r : records) {
                    out.write((String) r.value());
                    out.write('\n');
                }
            } catch (IOException e) {
                throw new ConnectException(e);
            }
        }

        @Override
        public void flush(Map<TopicPartition, OffsetAndMetadata> offsets) {
            try {
                out.flush();
                file.getFD().sync();
            } catch (IOException e) {
                throw new ConnectException(e);
            }
        }

        @Override
        public void stop() {
            if (out != null) {
                flush(Map.of());
                try {
                    out.close();
                } catch (IOException e) {
                    throw new ConnectException(e);
                }
            }
        }

        @Override
        public String version() {
            return "1";
        }
    }
}
