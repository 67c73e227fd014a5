# watcher: the two commands README.md promises, and a few helpers.
#   make demo   live local demo of a zero-downtime deploy (and a rollback) under load
#   make test   unit + end-to-end tests on real Docker, Compose, Caddy, Redis and registry
#   make lint   ruff: the lint rules and the format in pyproject.toml
#   make corpus the real stacks' shapes alone (tests/corpus), with their table
#   make swarm  the tests on a real 3-node Docker Swarm (tests/swarm; root: namespaces, dockerds)
PY := .venv/bin/python
# The suite starts thousands of Python processes (the CLI, workers, load generators): each would
# compile watcher's modules again where PYTHONDONTWRITEBYTECODE is set (as on our CI machine).
unexport PYTHONDONTWRITEBYTECODE
PYTEST := $(PY) -m pytest -q -p no:cacheprovider
# The tests mostly wait on Docker, so more xdist workers than cores pay (WORKERS=1: one at a time).
WORKERS ?= 4
RESULTS := tests/artifacts
# The swarm tests in `make test`: all of tests/swarm, after the rest (beside it their dockerds
# took the CPU timing-bound tests need), three modules at a time (each module starts its own
# swarm; two left the CPU half idle).
SWARM_IN_CI := tests/swarm
SWARMS := 3

# $(call tests,PATHS[,SWARM]): the tests of PATHS side by side on $(WORKERS) workers, then those
# marked serial alone (they restart the Docker engine, or bound times tightly), then the swarm
# tests SWARM on $(SWARMS) workers with nothing else running, then the 20 slowest of all; fails if any
# run did (exit 5, nothing collected, too).
define tests
	@rm -f $(RESULTS)/junit-*.xml; mkdir -p $(RESULTS); \
	$(PYTEST) -n $(WORKERS) --dist loadscope -m "not serial" --junitxml=$(RESULTS)/junit-side.xml $(1); \
	side=$$?; \
	$(PYTEST) -m serial --junitxml=$(RESULTS)/junit-serial.xml $(1); \
	alone=$$?; \
	swarm=0; \
	if [ -n "$(2)" ]; then \
		WATCHER_SWARM_MAX=$(SWARMS) $(PYTEST) -n $(SWARMS) --dist loadscope --junitxml=$(RESULTS)/junit-swarm.xml $(2); swarm=$$?; \
	fi; \
	$(PY) -m tests.harness.durations $(RESULTS)/junit-*.xml; \
	echo "side by side: exit $$side; serial: exit $$alone; swarm: exit $$swarm"; \
	[ $$side -eq 0 ] && [ $$alone -eq 0 ] && [ $$swarm -eq 0 ]
endef

.PHONY: setup services lint test unit faults corpus swarm demo bench clean-services

setup:
	bash scripts/install.sh

services: setup
	bash scripts/services.sh start

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

test: services
	$(call tests,tests/unit tests/integration tests/security tests/corpus tests/browser tests/faults,$(SWARM_IN_CI))

unit: setup
	$(PYTEST) -n $(WORKERS) --durations=20 tests/unit

faults: services
	$(call tests,tests/faults)

corpus: services
	$(PYTEST) -n $(WORKERS) --dist loadscope tests/corpus

# Each module starts its own swarm (about 100 MB and a few seconds of CPU per node); at most
# WATCHER_SWARM_MAX swarms run on the machine at once, so more workers than that only wait.
swarm: services
	WATCHER_SWARM_MAX=$(SWARMS) $(PYTEST) -n $(SWARMS) --dist loadscope tests/swarm

demo: services
	$(PY) scripts/demo.py $(if $(filter-out 0,$(KEEP)),--keep)

bench: services
	$(PY) -m pip install -q --disable-pip-version-check -e '.[bench]'
	$(PY) benchmarks/testapp.py
	$(PY) benchmarks/swap.py
	$(PY) benchmarks/queue_latency.py --json benchmarks/results/queue_latency.json
	$(PY) benchmarks/push_to_live.py
	$(PY) benchmarks/webhook_rps.py
	$(PY) benchmarks/receipt_cost.py
	$(PY) benchmarks/bake.py
	$(PY) benchmarks/health_detection.py
	$(PY) benchmarks/footprint.py
	$(PY) benchmarks/deploy_plot.py

clean-services:
	bash scripts/services.sh stop
