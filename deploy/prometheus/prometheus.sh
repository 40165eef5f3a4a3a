#!/usr/bin/env bash
# A local Prometheus for flitfeed: Debian's `prometheus` package, run as a plain process.
#
#   deploy/prometheus/prometheus.sh install   apt-get install prometheus (idempotent; skipped when installed)
#   deploy/prometheus/prometheus.sh start     render the config and start it on 127.0.0.1:$FLITFEED_PROMETHEUS_PORT
#   deploy/prometheus/prometheus.sh stop|status
#   deploy/prometheus/prometheus.sh check     promtool check config + check rules
#
# Environment: FLITFEED_PROMETHEUS_PORT (default 9090), FLITFEED_PROMETHEUS_DATA (default var/prometheus),
# FLITFEED_METRICS_TARGETS_DIR (default var/data/metrics-targets: where the services announce themselves),
# FLITFEED_PROMETHEUS_SCRAPE_INTERVAL (default 5s).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
PORT="${FLITFEED_PROMETHEUS_PORT:-9090}"
DATA="${FLITFEED_PROMETHEUS_DATA:-$ROOT/var/prometheus}"
TARGETS="${FLITFEED_METRICS_TARGETS_DIR:-$ROOT/var/data/metrics-targets}"
INTERVAL="${FLITFEED_PROMETHEUS_SCRAPE_INTERVAL:-5s}"
PIDFILE="$DATA/prometheus.pid"

installed() { command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; }

install() {
  if installed; then return 0; fi
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  # The package's own service is not wanted: flitfeed runs Prometheus as a plain process.
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
    $sudo systemctl stop prometheus || true
  fi
  installed
}

render() {
  mkdir -p "$DATA" "$TARGETS"
  rm -rf "$DATA/rules"; cp -r "$HERE/rules" "$DATA/rules"
  sed -e "s#__TARGETS_DIR__#$TARGETS#" -e "s#scrape_interval: 5s#scrape_interval: $INTERVAL#" \
      -e "s#evaluation_interval: 5s#evaluation_interval: $INTERVAL#" "$HERE/prometheus.yml" > "$DATA/prometheus.yml"
}

running() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

start() {
  installed || { echo "prometheus is not installed: run '$0 install'" >&2; exit 3; }
  if running; then echo "prometheus already running (pid $(cat "$PIDFILE")) on port $PORT"; return 0; fi
  render
  prometheus --config.file="$DATA/prometheus.yml" --storage.tsdb.path="$DATA/tsdb" \
    --web.listen-address="127.0.0.1:$PORT" --web.enable-lifecycle >"$DATA/prometheus.log" 2>&1 &
  echo $! > "$PIDFILE"
  for _ in $(seq 1 100); do
    if curl -fsS "http://127.0.0.1:$PORT/-/ready" >/dev/null 2>&1; then
      echo "prometheus ready at http://127.0.0.1:$PORT (targets from $TARGETS)"; return 0
    fi
    running || break
    sleep 0.2
  done
  echo "prometheus did not become ready; see $DATA/prometheus.log" >&2; tail -20 "$DATA/prometheus.log" >&2; exit 1
}

stop() {
  if running; then kill "$(cat "$PIDFILE")"; for _ in $(seq 1 50); do running || break; sleep 0.1; done; fi
  rm -f "$PIDFILE"
}

check() {
  installed || { echo "promtool is not installed: run '$0 install'" >&2; exit 3; }
  render
  promtool check config "$DATA/prometheus.yml"
  promtool check rules "$HERE"/rules/*.yml
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  status) if running; then echo "running (pid $(cat "$PIDFILE")) on port $PORT"; else echo "stopped"; exit 1; fi ;;
  check) check ;;
  *) echo "usage: $0 install|start|stop|status|check" >&2; exit 2 ;;
esac
