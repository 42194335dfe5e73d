package guise;

import java.lang.reflect.InvocationTargetException;
import java.util.Arrays;
import java.util.Optional;

/**
 * Starts Apache Pulsar standalone in this JVM and halts it when its owner goes.
 *
 * <pre>PulsarPeer (OWNER_PID | --stdin) STANDALONE_ARGS...</pre>
 *
 * With an owner pid (the {@code cargo} process of a test run, which shares one Pulsar between its
 * test binaries) the peer halts when that process exits, however it exits. With {@code --stdin}
 * it halts when its standard input closes: a test that owns a Pulsar of its own keeps the pipe
 * and closes it (or dies) to stop it. Halting is what a {@code kill -9} of a broker does; every
 * test starts its standalone with fresh data.
 */
public final class PulsarPeer {
    public static void main(String[] args) throws Throwable {
        if (args[0].equals("--stdin")) {
            Thread watcher = new Thread(() -> {
                try {
                    while (System.in.read() >= 0) {
                        // Nothing is sent; only the end of the stream matters.
                    }
                } catch (java.io.IOException e) {
                    // A broken pipe ends it too.
                }
                Runtime.getRuntime().halt(0);
            }, "guise-stdin-watcher");
            watcher.setDaemon(true);
            watcher.start();
        } else {
            long owner = Long.parseLong(args[0]);
            Optional<ProcessHandle> handle = ProcessHandle.of(owner);
            if (handle.isEmpty()) {
                System.err.println("guise pulsar peer: owner " + owner + " is gone; not starting");
                Runtime.getRuntime().halt(3);
            }
            handle.get().onExit().thenRun(() -> Runtime.getRuntime().halt(0));
        }
        String[] rest = Arrays.copyOfRange(args, 1, args.length);
        try {
            Class.forName("org.apache.pulsar.PulsarStandaloneStarter")
                    .getMethod("main", String[].class)
                    .invoke(null, (Object) rest);
        } catch (InvocationTargetException e) {
            throw e.getCause();
        }
    }
}
