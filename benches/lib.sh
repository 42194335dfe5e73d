# Shared by the benchmark scripts (sourced from the repository root, after WORK is set): the
# processes to stop (PIDS) and the EXIT trap that stops them and removes $WORK (kept on failure
# or with KEEP_LOGS=1), a section heading, waiting for a Guise host's /health, a process's CPU
# seconds, and the machine line every result starts with.
PIDS=()
cleanup() {
    local rc=$?
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [[ "${KEEP_LOGS:-0}" == 1 || $rc -ne 0 ]]; then echo "logs kept in $WORK" >&2; else rm -rf "$WORK"; fi
    exit $rc
}
trap cleanup EXIT

say() { printf '\n== %s\n' "$*"; }
wait_health() { # ADMIN_PORT PID
    for _ in $(seq 1200); do
        if python3 -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$1/health', timeout=1)" 2>/dev/null; then return 0; fi
        kill -0 "$2" 2>/dev/null || { echo "guise (pid $2) exited; see $WORK" >&2; return 1; }
        sleep 0.1
    done
    echo "guise on admin port $1 did not become healthy" >&2
    return 1
}
cpu_secs() { awk '{printf "%.2f", ($14 + $15) / 100}' "/proc/$1/stat"; }

say "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), Linux $(uname -r); $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); source: $(git rev-parse --short HEAD)"
