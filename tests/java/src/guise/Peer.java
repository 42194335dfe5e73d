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
            // Transaction version 2 (KIP-890 part 2, Kafka 4's default), as Guise finalizes
            // it by default, so the clients take the same path on both.
            String[] format = {
                "format", "--ignore-formatted", "-t", args[at + 1], "-c", args[at + 2],
                "--feature", "transaction.version=2"
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
        if (args[at].equals("org.apache.kafka.connect.cli.ConnectDistributed")) {
            unhookJettyAtShutdown();
        }
        try {
            Class.forName(args[at]).getMethod("main", String[].class).invoke(null, (Object) rest);
        } catch (InvocationTargetException e) {
            throw e.getCause();
        }
    }

    /**
     * Connect 4.4's REST server asks Jetty to stop it at shutdown ({@code setStopAtShutdown}) while
     * Connect's own shutdown hook stops it too: on SIGTERM both run at once, and now and then
     * Connect's {@code RestServer.stop} waits forever in {@code Server.join} (a test run in
     * four here; the JVM then never exits). Removing Jetty's hook once it
     * is installed leaves the stop to Connect's hook alone, which stops the REST server and then
     * the herder, as a SIGTERM is meant to.
     */
    private static void unhookJettyAtShutdown() {
        Thread watcher = new Thread(() -> {
            try {
                Thread jetty = (Thread) Class.forName("org.eclipse.jetty.util.thread.ShutdownThread")
                        .getMethod("getInstance").invoke(null);
                // Jetty hooks itself in once, when the REST server starts; it does not hook again.
                for (int i = 0; i < 6000; i++) {
                    if (Runtime.getRuntime().removeShutdownHook(jetty)) {
                        return;
                    }
                    Thread.sleep(50);
                }
                System.err.println("guise peer: Jetty's shutdown hook never appeared");
            } catch (IllegalStateException shuttingDown) {
                // Too late: the JVM is already shutting down.
            } catch (ReflectiveOperationException | InterruptedException e) {
                System.err.println("guise peer: cannot remove Jetty's shutdown hook: " + e);
            }
        }, "guise-unhook-jetty");
        watcher.setDaemon(true);
        watcher.start();
    }
}
