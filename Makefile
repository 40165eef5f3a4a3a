# The two commands a fresh machine needs (see README):
#   make demo   set everything up and run the live demo
#   make test   set everything up and run the whole test suite (what CI runs)

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
KAFKA  := bash deploy/kafka/kafka.sh
PROMETHEUS := bash deploy/prometheus/prometheus.sh

.PHONY: setup demo test test-unit test-wheel broker-start broker-stop clean audit evaluate bench bench-quick

$(BIN)/flitfeed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

setup: $(BIN)/flitfeed
	$(KAFKA) install
	@# Debian's prometheus + promtool (apt-get, idempotent): the demo starts it, the metric tests need it.
	$(PROMETHEUS) install || echo "warning: prometheus not installed; the demo runs without it and make test fails its checks" >&2

demo: setup
	$(BIN)/flitfeed demo

# Starts the project's own broker, runs every test (unit and integration), and stops the
# broker again only if this run started it; then checks the built wheel on its own (WHEEL_CHECK=0 skips that).
WHEEL_CHECK ?= 1
test: setup
	@was_running=0; $(KAFKA) status >/dev/null 2>&1 && was_running=1; \
	$(KAFKA) start || exit 1; \
	FLITFEED_REQUIRE_PROMETHEUS=1 $(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	[ $$was_running = 1 ] || $(KAFKA) stop; \
	[ "$(WHEEL_CHECK)" = 0 ] || bash tests/wheel_check.sh || rc=1; \
	exit $$rc

test-unit: $(BIN)/flitfeed
	$(BIN)/python -m pytest -m "not integration" $(PYTEST_ARGS)

# The built wheel, installed into a fresh virtualenv, run from outside the checkout: `flitfeed --help`,
# `flitfeed broker start|stop` with the script it ships, the unit tests (tests/wheel_check.sh; 2-4 min on 2 cores).
test-wheel: $(BIN)/flitfeed
	bash tests/wheel_check.sh

broker-start: setup
	$(KAFKA) start && $(BIN)/flitfeed topics create

broker-stop:
	$(KAFKA) stop

# Streaming evaluation on the whole of ml-latest-small (~40 min on 2 cores); reproduces docs/evaluation/.
# EVAL_EVENTS=20000 replays only the first 20,000 ratings (~7 min).
DATASET ?= ../shared/data/ml-latest-small
EVAL_EVENTS ?=
evaluate: $(BIN)/flitfeed
	$(BIN)/flitfeed evaluate $(DATASET) --out docs/evaluation/ml-latest-small $(if $(EVAL_EVENTS),--events $(EVAL_EVENTS),) --jobs 3

clean:
	$(KAFKA) clean || true
	rm -rf var

# Audits the pinned dependencies (as installed in .venv) against the PyPI advisory database.
# pip-audit lives in its own virtualenv so that its dependencies never shift the project's pins.
PIP_AUDIT_VERSION := 2.10.1
AUDIT_VENV := .venv-audit
# pypi (the PyPI JSON API) or osv (api.osv.dev); --strict fails when a package could not be checked.
AUDIT_SERVICE ?= pypi
audit: $(BIN)/flitfeed
	test -x $(AUDIT_VENV)/bin/pip-audit || $(PYTHON) -m venv $(AUDIT_VENV)
	$(AUDIT_VENV)/bin/pip install --quiet pip-audit==$(PIP_AUDIT_VERSION)
	$(BIN)/pip freeze --exclude-editable > $(AUDIT_VENV)/requirements.txt
	$(AUDIT_VENV)/bin/pip-audit --strict --no-deps --disable-pip --progress-spinner off --vulnerability-service $(AUDIT_SERVICE) \
	    -r $(AUDIT_VENV)/requirements.txt

# Benchmarks (issue 5; see BENCHMARKS.md). `make bench` runs every benchmark in full mode (about 15 min on
# a quiet 2-core machine, plus ~7 min once to embed the cached 100k-flit corpus) and writes JSON to
# benchmarks/results/; `make bench-quick` is the CI smoke mode. Both start the project's broker for the
# end-to-end benchmark and stop it again only if they started it. BENCH_ARGS is passed to every benchmark.
BENCHES := embedding index ranker user_memory end_to_end hops
BENCH_BOOTSTRAP ?= 127.0.0.1:$${FLITFEED_KAFKA_PORT:-9092}

bench bench-quick: setup
	@mode=$(if $(filter bench-quick,$@),--quick,); suffix=$(if $(filter bench-quick,$@),-quick,); \
	was_running=0; $(KAFKA) status >/dev/null 2>&1 && was_running=1; \
	$(KAFKA) start || exit 1; rc=0; \
	for b in $(BENCHES); do \
	  echo "== benchmarks.$$b $$mode"; \
	  $(BIN)/python -m benchmarks.$$b $$mode --json benchmarks/results/$$b$$suffix.json \
	    $$( case $$b in end_to_end|hops) echo --bootstrap $(BENCH_BOOTSTRAP);; esac ) $(BENCH_ARGS) || rc=1; \
	done; \
	[ $$was_running = 1 ] || $(KAFKA) stop; \
	$(BIN)/python -m benchmarks.report benchmarks/results $$mode $$( [ -z "$$mode" ] && echo --update BENCHMARKS.md ); \
	exit $$rc
