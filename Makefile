# The two commands a fresh machine needs (see README):
#   make demo   set everything up and run the live demo
#   make test   set everything up and run the whole test suite (what CI runs)

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
KAFKA  := bash deploy/kafka/kafka.sh

.PHONY: setup demo test test-unit broker-start broker-stop clean bench bench-quick

$(BIN)/flitfeed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

setup: $(BIN)/flitfeed
	$(KAFKA) install

demo: setup
	$(BIN)/flitfeed demo

# Starts the project's own broker, runs every test (unit and integration), and stops the
# broker again only if this run started it.
test: setup
	@was_running=0; $(KAFKA) status >/dev/null 2>&1 && was_running=1; \
	$(KAFKA) start || exit 1; \
	$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	[ $$was_running = 1 ] || $(KAFKA) stop; \
	exit $$rc

test-unit: $(BIN)/flitfeed
	$(BIN)/python -m pytest -m "not integration" $(PYTEST_ARGS)

broker-start: setup
	$(KAFKA) start && $(BIN)/flitfeed topics create

broker-stop:
	$(KAFKA) stop

clean:
	$(KAFKA) clean || true
	rm -rf var

# Benchmarks (issue 5; see BENCHMARKS.md). `make bench` runs every benchmark in full mode (about 15 min on
# a quiet 2-core machine, plus ~7 min once to embed the cached 100k-flit corpus) and writes JSON to
# benchmarks/results/; `make bench-quick` is the CI smoke mode. Both start the project's broker for the
# end-to-end benchmark and stop it again only if they started it. BENCH_ARGS is passed to every benchmark.
BENCHES := embedding index ranker user_memory end_to_end
BENCH_BOOTSTRAP ?= 127.0.0.1:$${FLITFEED_KAFKA_PORT:-9092}

bench bench-quick: setup
	@mode=$(if $(filter bench-quick,$@),--quick,); suffix=$(if $(filter bench-quick,$@),-quick,); \
	was_running=0; $(KAFKA) status >/dev/null 2>&1 && was_running=1; \
	$(KAFKA) start || exit 1; rc=0; \
	for b in $(BENCHES); do \
	  echo "== benchmarks.$$b $$mode"; \
	  $(BIN)/python -m benchmarks.$$b $$mode --json benchmarks/results/$$b$$suffix.json \
	    $$( [ $$b = end_to_end ] && echo --bootstrap $(BENCH_BOOTSTRAP) ) $(BENCH_ARGS) || rc=1; \
	done; \
	[ $$was_running = 1 ] || $(KAFKA) stop; \
	$(BIN)/python -m benchmarks.report benchmarks/results $$mode $$( [ -z "$$mode" ] && echo --update BENCHMARKS.md ); \
	exit $$rc
