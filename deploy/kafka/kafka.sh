#!/usr/bin/env bash
# A real single-node Apache Kafka (KRaft: broker + controller in one JVM) on
# 127.0.0.1 for development, tests and CI. No Docker, no tarball: the jars come
# from Maven Central through ./pom.xml and are cached outside the repository.
#
# Usage: kafka.sh install|start|stop|status|wait|clean
#
# Environment:
#   FLITFEED_CACHE                  jar cache root   (default ~/.cache/flitfeed)
#   FLITFEED_KAFKA_DATA             data dir         (default <repo>/var/kafka in a checkout; run from an
#                                   installed wheel, ${XDG_DATA_HOME:-~/.local/share}/flitfeed/kafka)
#   FLITFEED_KAFKA_PORT             client port      (default 9092)
#   FLITFEED_KAFKA_CONTROLLER_PORT  controller port  (default 9093)
#   FLITFEED_KAFKA_WAIT_S           readiness deadline in seconds (default 90)
#   FLITFEED_KAFKA_HEAP             JVM heap options (default -Xms256m -Xmx512m)
#   FLITFEED_KAFKA_EXTRA_CONFIG     a file of server properties appended to the generated ones (a later
#                                   key wins): extra listeners, TLS, SASL. Keep the PLAINTEXT listener on
#                                   FLITFEED_KAFKA_PORT in the listener lists: readiness is probed there.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# In a checkout this is deploy/kafka/; an installed wheel ships the same files as flitfeed/kafka/deploy/
# in site-packages, where nothing may be written.
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
if [[ -f "$REPO_ROOT/pyproject.toml" ]]; then
    DEFAULT_DATA_DIR="$REPO_ROOT/var/kafka"
else
    DEFAULT_DATA_DIR="${XDG_DATA_HOME:-$HOME/.local/share}/flitfeed/kafka"
fi

KAFKA_VERSION="$(tr -d '[:space:]' <"$SCRIPT_DIR/VERSION")"
CACHE_ROOT="${FLITFEED_CACHE:-$HOME/.cache/flitfeed}"
KAFKA_HOME="$CACHE_ROOT/kafka-$KAFKA_VERSION"
LIB_DIR="$KAFKA_HOME/lib"
# Written last by `install`, so a half-finished download is never mistaken for
# a complete one.
LIB_MARKER="$LIB_DIR/.complete"

DATA_DIR="${FLITFEED_KAFKA_DATA:-$DEFAULT_DATA_DIR}"
PORT="${FLITFEED_KAFKA_PORT:-9092}"
CONTROLLER_PORT="${FLITFEED_KAFKA_CONTROLLER_PORT:-9093}"
WAIT_S="${FLITFEED_KAFKA_WAIT_S:-90}"
HEAP_OPTS="${FLITFEED_KAFKA_HEAP:--Xms256m -Xmx512m}"
EXTRA_CONFIG="${FLITFEED_KAFKA_EXTRA_CONFIG:-}"
HOST=127.0.0.1

LOG_DIRS="$DATA_DIR/logs"
SERVER_PROPERTIES="$DATA_DIR/server.properties"
LOG4J_CONFIG="$DATA_DIR/log4j2.properties"
PID_FILE="$DATA_DIR/kafka.pid"
BROKER_LOG="$DATA_DIR/kafka.log"
LOCK_FILE="$DATA_DIR/.kafka.sh.lock"

log() { printf 'kafka.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
    cat >&2 <<EOF
usage: $(basename "$0") install|start|stop|status|wait|clean

  install  download Kafka $KAFKA_VERSION jars into $LIB_DIR (once)
  start    install if needed, format storage once, start the broker, wait until ready
  stop     stop the broker (SIGTERM, then SIGKILL after a deadline)
  status   exit 0 and print "running pid N", or exit 1 and print "stopped"
  wait     wait until the broker answers metadata requests (${WAIT_S}s deadline)
  clean    stop the broker and delete $DATA_DIR
EOF
}

# Serialises start/stop/clean on one data dir, so that concurrent callers (the
# test conftest, a developer's shell, CI) cannot launch two brokers.
take_lock() {
    mkdir -p "$DATA_DIR"
    exec 9>"$LOCK_FILE"
    flock -w 300 9 || die "timed out waiting for $LOCK_FILE"
}

install() {
    if [[ -f "$LIB_MARKER" ]]; then
        return 0
    fi
    command -v mvn >/dev/null \
        || die "mvn not found on PATH (needed once to fetch the Kafka jars; e.g. apt-get install maven)"
    mkdir -p "$KAFKA_HOME"
    exec 8>"$KAFKA_HOME/.install.lock"
    flock -w 600 8 || die "timed out waiting for another install into $KAFKA_HOME"
    if [[ -f "$LIB_MARKER" ]]; then
        exec 8>&-
        return 0
    fi

    log "downloading Kafka $KAFKA_VERSION jars into $LIB_DIR"
    local staging="$KAFKA_HOME/lib.partial.$$"
    rm -rf "$staging"
    # Maven talks on stderr like the rest of this script; stdout is kept for
    # the one-line answer of `status`.
    if ! mvn -q -B -Dstyle.color=never -f "$SCRIPT_DIR/pom.xml" "-Dkafka.version=$KAFKA_VERSION" \
        dependency:copy-dependencies "-DoutputDirectory=$staging" >&2; then
        rm -rf "$staging"
        die "maven could not fetch Kafka $KAFKA_VERSION"
    fi
    [[ -f "$staging/kafka_2.13-$KAFKA_VERSION.jar" ]] \
        || die "kafka_2.13-$KAFKA_VERSION.jar missing after download"
    rm -rf "$LIB_DIR"
    mv "$staging" "$LIB_DIR"
    touch "$LIB_MARKER"
    exec 8>&-
    log "installed $(find "$LIB_DIR" -name '*.jar' | wc -l) jars"
}

# The pid of our broker, or nothing. A pid file alone is not trusted: after a
# reboot or a crash the pid may belong to an unrelated process.
broker_pid() {
    [[ -f "$PID_FILE" ]] || return 1
    local pid
    pid="$(tr -d '[:space:]' <"$PID_FILE")"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "kafka.Kafka $SERVER_PROPERTIES" || return 1
    printf '%s\n' "$pid"
}

# A TCP connect succeeds long before the broker can serve clients (the socket is
# bound early, requests are only processed once the broker has registered and
# caught up with the metadata log). So send a real Metadata v4 request for no
# topics and require at least one live broker in the answer.
#   request: size=17 | api_key=3 | api_version=4 | correlation_id=1 |
#            client_id="ff" | topics=[] (int32 0) | allow_auto_topic_creation=0
#   reply:   size | correlation_id | throttle_time_ms | brokers count | ...
broker_ready() {
    local reply
    reply="$(timeout 3 bash -c '
        exec 3<>"/dev/tcp/$1/$2" || exit 1
        printf "\x00\x00\x00\x11\x00\x03\x00\x04\x00\x00\x00\x01\x00\x02ff\x00\x00\x00\x00\x00" >&3
        head -c 16 <&3
    ' _ "$HOST" "$PORT" 2>/dev/null | od -An -v -tu1 | tr -s ' \n' ' ')" || return 1
    local -a bytes
    read -r -a bytes <<<"$reply"
    ((${#bytes[@]} == 16)) || return 1
    local brokers=$(((bytes[12] << 24) | (bytes[13] << 16) | (bytes[14] << 8) | bytes[15]))
    ((brokers >= 1))
}

port_open() {
    timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$HOST" "$1" 2>/dev/null
}

show_log_tail() {
    if [[ -f "$BROKER_LOG" ]]; then
        log "last lines of $BROKER_LOG:"
        tail -n 60 "$BROKER_LOG" >&2
    fi
}

wait_ready() {
    local deadline=$((SECONDS + WAIT_S))
    while ((SECONDS < deadline)); do
        if broker_ready; then
            return 0
        fi
        if [[ -f "$PID_FILE" ]] && ! broker_pid >/dev/null; then
            log "broker process exited before becoming ready"
            show_log_tail
            return 1
        fi
        sleep 0.5
    done
    log "broker on $HOST:$PORT not ready after ${WAIT_S}s"
    show_log_tail
    return 1
}

write_config() {
    cat >"$SERVER_PROPERTIES" <<EOF
# Generated by deploy/kafka/kafka.sh on every start; edits are overwritten.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$CONTROLLER_PORT
listeners=PLAINTEXT://$HOST:$PORT,CONTROLLER://$HOST:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$HOST:$PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$LOG_DIRS

# One node: every internal topic must live with a single replica.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
min.insync.replicas=1

# Topics are created explicitly (flitfeed.kafka.admin.create_topics); a typo
# in a topic name must fail loudly instead of creating a stray topic.
auto.create.topics.enable=false
num.partitions=6
default.replication.factor=1
# Tests and the demo start consumers right away; do not hold the first
# rebalance back.
group.initial.rebalance.delay.ms=0

# After a restart the controller keeps the previous incarnation's
# registration until its session expires and rejects the new one until then
# (DUPLICATE_BROKER_REGISTRATION); the 9 s default would add ~10 s to every
# restart. On loopback a short session is safe.
broker.heartbeat.interval.ms=500
broker.session.timeout.ms=2500

# flit-vectors and user-states are compacted topics.
log.cleaner.enable=true
# The default 128 MiB dedupe buffer is a quarter of this broker's heap.
log.cleaner.dedupe.buffer.size=33554432
EOF
    if [[ -n "$EXTRA_CONFIG" ]]; then
        [[ -f "$EXTRA_CONFIG" ]] || die "FLITFEED_KAFKA_EXTRA_CONFIG=$EXTRA_CONFIG is not a file"
        { printf '\n# Appended from %s\n' "$EXTRA_CONFIG"; cat "$EXTRA_CONFIG"; } >>"$SERVER_PROPERTIES"
    fi

    cat >"$LOG4J_CONFIG" <<'EOF'
# Generated by deploy/kafka/kafka.sh. stdout goes to kafka.log in the data dir.
status = warn
appender.stdout.type = Console
appender.stdout.name = STDOUT
appender.stdout.layout.type = PatternLayout
appender.stdout.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.apache.name = org.apache.kafka
logger.apache.level = INFO
# Per-request and per-segment chatter drowns out what matters when a start fails.
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.cleaner.name = kafka.log.LogCleaner
logger.cleaner.level = WARN
EOF
}

java_cmd() {
    # shellcheck disable=SC2206  # HEAP_OPTS is a list of JVM flags on purpose.
    local -a heap=($HEAP_OPTS)
    printf '%s\0' java "${heap[@]}" -XX:+UseG1GC -Djava.awt.headless=true \
        "-Dlog4j2.configurationFile=$LOG4J_CONFIG" -cp "$LIB_DIR/*" "$@"
}

# What `StorageTool random-uuid` prints (16 random bytes, URL-safe base64, no
# padding) without paying for a JVM start. Kafka never hands out ids starting
# with '-' because command lines would take them for options.
new_cluster_id() {
    local id
    while :; do
        id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
        [[ "$id" == -* ]] || break
    done
    printf '%s\n' "$id"
}

format_storage() {
    if [[ -f "$LOG_DIRS/meta.properties" ]]; then
        return 0
    fi
    local cluster_id
    cluster_id="$(new_cluster_id)"
    log "formatting $LOG_DIRS (cluster id $cluster_id)"
    local -a cmd
    mapfile -d '' cmd < <(java_cmd kafka.tools.StorageTool format \
        --cluster-id "$cluster_id" --config "$SERVER_PROPERTIES" --ignore-formatted)
    if ! "${cmd[@]}" >>"$BROKER_LOG" 2>&1; then
        show_log_tail
        die "formatting the storage failed"
    fi
}

start() {
    install
    command -v java >/dev/null \
        || die "java not found on PATH (Kafka $KAFKA_VERSION needs Java 17+; e.g. apt-get install openjdk-17-jre)"
    take_lock
    local pid
    if pid="$(broker_pid)"; then
        wait_ready || exit 1
        log "already running pid $pid on $HOST:$PORT"
        return 0
    fi
    for p in "$PORT" "$CONTROLLER_PORT"; do
        if port_open "$p"; then
            die "$HOST:$p is already in use by a process this script did not start"
        fi
    done
    mkdir -p "$LOG_DIRS"
    rm -f "$PID_FILE"
    write_config
    format_storage

    local -a cmd
    mapfile -d '' cmd < <(java_cmd kafka.Kafka "$SERVER_PROPERTIES")
    # setsid: the broker must outlive the shell (and the pytest session) that
    # started it. The inner shell records its own pid and then becomes java,
    # so the pid file is right whether or not setsid had to fork.
    # The lock fd is closed for the child: a broker holding it would block
    # every later start/stop for as long as it runs.
    nohup setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$PID_FILE" "${cmd[@]}" \
        >>"$BROKER_LOG" 2>&1 </dev/null 9>&- 8>&- &
    # Let the inner shell write the pid file before wait_ready checks it.
    local waited=0
    while [[ ! -s "$PID_FILE" ]] && ((waited < 50)); do
        sleep 0.1
        waited=$((waited + 1))
    done
    if ! wait_ready; then
        stop_broker
        exit 1
    fi
    log "running pid $(broker_pid) on $HOST:$PORT (data $DATA_DIR)"
}

stop_broker() {
    local pid
    if ! pid="$(broker_pid)"; then
        rm -f "$PID_FILE"
        return 0
    fi
    log "stopping pid $pid"
    kill -TERM "$pid" 2>/dev/null || true
    # A single-node controlled shutdown takes a few seconds; give it time to
    # close the logs cleanly so the next start does not need recovery.
    local deadline=$((SECONDS + 60))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
        sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "pid $pid did not stop within 60s, sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        while kill -0 "$pid" 2>/dev/null; do
            sleep 0.1
        done
    fi
    rm -f "$PID_FILE"
}

stop() {
    take_lock
    stop_broker
}

status() {
    local pid
    if pid="$(broker_pid)"; then
        echo "running pid $pid"
        return 0
    fi
    echo "stopped"
    return 1
}

clean() {
    take_lock
    stop_broker
    exec 9>&-
    rm -rf "$DATA_DIR"
    log "removed $DATA_DIR"
}

main() {
    if (($# != 1)); then
        usage
        exit 2
    fi
    case "$1" in
        install) install ;;
        start) start ;;
        stop) stop ;;
        status) status ;;
        wait) wait_ready ;;
        clean) clean ;;
        -h | --help | help) usage ;;
        *)
            usage
            exit 2
            ;;
    esac
}

main "$@"
