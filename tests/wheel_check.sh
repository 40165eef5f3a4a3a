#!/usr/bin/env bash
# The built wheel works on its own (what `make test` checks after the test suite; `make test-wheel` alone).
#
#   1. builds the wheel (pip wheel, isolated build) from a copy of the package sources, so the checkout
#      gets no build/ or *.egg-info;
#   2. installs it without dependencies into a fresh virtualenv; the dependencies come from .venv's
#      site-packages, appended to sys.path by a .pth file (.venv's own .pth files, among them the editable
#      install's finder, are not processed that way, so nothing of the checkout becomes importable);
#   3. from a directory outside the checkout: `flitfeed --help`; `flitfeed broker start|status|stop` with the
#      script the wheel ships, on free ports, its data where an installed wheel keeps it (not site-packages);
#      and the unit tests and doctests against the installed package (tests/conftest.py refuses to run if
#      flitfeed is imported from anywhere but that virtualenv).
#
# Usage: bash tests/wheel_check.sh [PYTEST ARGS...]
# Environment: WHEEL_CHECK_PYTHON  the interpreter whose packages are the dependencies (default .venv/bin/python)
#              WHEEL_CHECK_BROKER  0 skips the broker start/stop (default 1)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${WHEEL_CHECK_PYTHON:-$REPO/.venv/bin/python}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/flitfeed-wheel.XXXXXX")"
VENV="$WORK/venv"
BROKER_ENV=()

log() { printf 'wheel_check: %s\n' "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }

cleanup() {
    if ((${#BROKER_ENV[@]})); then
        env "${BROKER_ENV[@]}" "$VENV/bin/flitfeed" broker stop >/dev/null 2>&1 || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# --- 1. build ------------------------------------------------------------------------------------------------
log "building the wheel"
"$PY" - "$REPO" "$WORK/src" <<'EOF'
"""Copy pyproject.toml, README.md and every directory pyproject.toml maps a package to."""
import shutil
import sys
import tomllib
from pathlib import Path

repo, dest = Path(sys.argv[1]), Path(sys.argv[2])
dest.mkdir(parents=True)
for name in ("pyproject.toml", "README.md"):
    shutil.copy2(repo / name, dest / name)
dirs = set(tomllib.loads((repo / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"].values())
for d in sorted(d for d in dirs if not any(d.startswith(o + "/") for o in dirs)):
    shutil.copytree(repo / d, dest / d, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
EOF
"$PY" -m pip wheel --quiet --disable-pip-version-check --no-deps --wheel-dir "$WORK/dist" "$WORK/src" \
    || die "pip wheel could not build the wheel"
WHEEL="$(ls "$WORK"/dist/flitfeed-*.whl)"
log "built $(basename "$WHEEL")"

# --- 2. install ----------------------------------------------------------------------------------------------
"$PY" -m venv --without-pip "$VENV"
"$PY" -m pip --python "$VENV/bin/python" install --quiet --disable-pip-version-check --no-deps --no-index "$WHEEL"
SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
"$PY" -c 'import sysconfig; p = sysconfig.get_paths(); print(p["purelib"]); print(p["platlib"])' \
    >"$SITE/_flitfeed_wheel_check_deps.pth"
touch "$WORK/installed"

# --- 3. run it from elsewhere --------------------------------------------------------------------------------
mkdir "$WORK/run"
cd "$WORK/run"
"$VENV/bin/python" - "$VENV" <<'EOF' || die "the installed package is not the one in the virtualenv"
import sys
from pathlib import Path

import flitfeed
from flitfeed.kafka.local_broker import kafka_script

venv = Path(sys.argv[1]).resolve()
for path in (Path(flitfeed.__file__), kafka_script()):
    assert path.resolve().is_relative_to(venv), f"{path} is not from {venv}"
EOF
"$VENV/bin/flitfeed" --help >/dev/null || die "flitfeed --help"
log "flitfeed --help: ok"

if [[ "${WHEEL_CHECK_BROKER:-1}" != 0 ]]; then
    read -r PORT CONTROLLER_PORT < <("$PY" -c '
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))')
    # No FLITFEED_KAFKA_DATA: the script picks its default for an installed wheel, here under $WORK/xdg.
    BROKER_ENV=(-u FLITFEED_KAFKA_DATA "XDG_DATA_HOME=$WORK/xdg" "FLITFEED_KAFKA_PORT=$PORT"
                "FLITFEED_KAFKA_CONTROLLER_PORT=$CONTROLLER_PORT" "FLITFEED_BOOTSTRAP_SERVERS=127.0.0.1:$PORT")
    env "${BROKER_ENV[@]}" "$VENV/bin/flitfeed" broker start >/dev/null || die "flitfeed broker start"
    status="$(env "${BROKER_ENV[@]}" "$VENV/bin/flitfeed" broker status)" || die "flitfeed broker status: $status"
    env "${BROKER_ENV[@]}" "$VENV/bin/flitfeed" broker stop || die "flitfeed broker stop"
    BROKER_ENV=()
    [[ -f "$WORK/xdg/flitfeed/kafka/kafka.log" ]] || die "the broker's data is not in \$XDG_DATA_HOME/flitfeed/kafka"
    written="$(find "$SITE/flitfeed" -newer "$WORK/installed" -not -name '*.pyc' -not -type d)"
    [[ -z "$written" ]] || die "the broker wrote into site-packages: $written"
    log "flitfeed broker start/status/stop: ok"
fi

log "unit tests and doctests against $SITE/flitfeed"
FLITFEED_TEST_INSTALLED="$VENV" "$VENV/bin/python" -m pytest -c "$REPO/pyproject.toml" --rootdir "$REPO" \
    -o pythonpath= --import-mode=append -p no:cacheprovider -m "not integration" -q "$@" \
    "$REPO/tests" "$SITE/flitfeed"
