package guise;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.apache.kafka.common.config.ConfigDef;
import org.apache.kafka.connect.connector.Task;
import org.apache.kafka.connect.data.Schema;
import org.apache.kafka.connect.errors.ConnectException;
import org.apache.kafka.connect.source.SourceConnector;
import org.apache.kafka.connect.source.SourceRecord;
import org.apache.kafka.connect.source.SourceTask;

/**
 * A Kafka Connect source connector reading a text file line by line into a topic (the tests'
 * stand-in for {@code connect-file}, which the registry here does not serve).
 *
 * <pre>connector.class=guise.LineFileSource  file=PATH  topic=TOPIC</pre>
 *
 * Each complete line (ended by {@code \n}) becomes one record: a String value, no key, source
 * partition {@code {"file": PATH}} and source offset {@code {"line": n}}, n the number of lines
 * read so far. A restarted task skips the lines its committed offset counts, and the task polls
 * the file for appended lines.
 */
public final class LineFileSource extends SourceConnector {
    static final ConfigDef CONFIG = new ConfigDef()
            .define("file", ConfigDef.Type.STRING, ConfigDef.Importance.HIGH, "The file to read.")
            .define("topic", ConfigDef.Type.STRING, ConfigDef.Importance.HIGH, "The topic to write its lines to.");

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
        return List.of(props); // One file, one task.
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

    public static final class LineTask extends SourceTask {
        private Path file;
        private String topic;
        private Map<String, String> partition;
        /** Lines read so far: the source offset of the last record sent. */
        private long line;
        /** Where the next line starts in the file. */
        private int position;

        @Override
        public void start(Map<String, String> props) {
            file = Path.of(props.get("file"));
            topic = props.get("topic");
            partition = Map.of("file", file.toString());
            Map<String, Object> committed = context.offsetStorageReader().offset(partition);
            long resume = committed == null ? 0 : ((Number) committed.get("line")).longValue();
            byte[] bytes = read();
            while (line < resume) {
                int end = nextLineEnd(bytes);
                if (end < 0) {
                    throw new ConnectException(file + " has fewer lines than its committed offset " + resume);
                }
                position = end + 1;
                line++;
            }
        }

        @Override
        public List<SourceRecord> poll() throws InterruptedException {
            byte[] bytes = read();
            List<SourceRecord> records = new ArrayList<>();
            for (int end; (end = nextLineEnd(bytes)) >= 0; ) {
                String value = new String(bytes, position, end - position, StandardCharsets.UTF_8);
                position = end + 1;
                line++;
                records.add(new SourceRecord(partition, Map.of("line", line), topic, null, null,
                        Schema.STRING_SCHEMA, value));
            }
            if (records.isEmpty()) {
                Thread.sleep(100); // Nothing appended yet.
                return null;
            }
            return records;
        }

        private int nextLineEnd(byte[] bytes) {
            for (int i = position; i < bytes.length; i++) {
                if (bytes[i] == '\n') {
                    return i;
                }
            }
            return -1; // No line, or a line still being written.
        }

        private byte[] read() {
            try {
                return Files.readAllBytes(file);
            } catch (IOException e) {
                throw new ConnectException(e);
            }
        }

        @Override
        public void stop() {}

        @Override
        public String version() {
            return "1";
        }
    }
}
