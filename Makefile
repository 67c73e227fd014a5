# watcher: the two commands README.md promises, and a few helpers.
#   make demo   live local demo of a zero-downtime deploy (and a rollback) under load
#   make test   unit + end-to-end tests on real Docker, Compose, Caddy, Redis and registry
#   make lint   ruff: the lint rules and the format in pyproject.toml
PY := .venv/bin/python

.PHONY: setup services lint test unit faults demo bench clean-services

setup:
	bash scripts/install.sh

services: setup
	bash scripts/services.sh start

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

test: services
	$(PY) -m pytest -q -p no:cacheprovider tests/unit tests/integration tests/browser tests/faults

unit: setup
	$(PY) -m pytest -q -p no:cacheprovider tests/unit

faults: services
	$(PY) -m pytest -q -p no:cacheprovider tests/faults

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
