package guise;

import java.lang.reflect.InvocationTargetException;
import java.util.Arrays;
import java.util.Optional;

/**
 * Starts a Java peer (a Kafka broker, a Connect worker) that dies with its owner.
 *
 * <pre>Peer OWNER_PID [--format CLUSTER_ID SERVER_PROPERTIES] MAIN_CLASS ARGS...</pre>
 *
 * The test helpers share one peer between the test binaries of a {@code cargo test} run, so the
 * owner is the {@code cargo} process, not the binary that happened to start the peer: when the
 * owner exits, however it exits, the peer halts. {@code --format} formats KRaft storage in this
 * JVM first (as {@code kafka-storage.sh format}), which saves a JVM start.
 */
public final class Peer {
    public static void main(String[] args) throws Throwable {
        long owner = Long.parseLong(args[0]);
        Optional<ProcessHandle> handle = ProcessHandle.of(owner);
        if (handle.isEmpty()) {
            System.err.println("guise peer: owner " + owner + " is gone; not starting");
            Runtime.getRuntime().halt(3);
        }
        handle.get().onExit().thenRun(() -> Runtime.getRuntime().halt(0));
        int at = 1;
        if (args[at].equals("--format")) {
            // Transaction version 1 (KIP-98/KIP-447 without KIP-890's epoch bump per
            // transaction): what Guise serves, so the clients take the same path on both.
            String[] format = {
                "format", "--ignore-formatted", "-t", args[at + 1], "-c", args[at + 2],
                "--feature", "transaction.version=1"
            };
            Object code = Class.forName("kafka.tools.StorageTool")
                    .getMethod("execute", String[].class, java.io.PrintStream.class)
                    .invoke(null, format, System.err);
            if (!Integer.valueOf(0).equals(code)) {
                System.err.println("guise peer: formatting storage failed with " + code);
                Runtime.getRuntime().halt(4);
            }
            at += 3;
        }
        String[] rest = Arrays.copyOfRange(args, at + 1, args.length);
        try {
            Class.forName(args[at]).getMethod("main", String[].class).invoke(null, (Object) rest);
        } catch (InvocationTargetException e) {
            throw e.getCause();
        }
    }
}
