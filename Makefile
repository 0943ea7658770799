# Two commands for a newcomer: `make up` (run the service) and `make test` (run the suite).
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV := $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
STAMP := $(VENV)/.installed
# The uv the bootstrap installs when none is on PATH; the Dockerfile's UV_VERSION is the same.
UV_VERSION := 0.13.9

.PHONY: install up test check lint format bench bench-scale clean lock chromium

# Bootstrap: uv (pip-installed if missing) -> .venv -> the hashed lock, then the project itself.
# --compile-bytecode: every process (API, webserver, daemon, each run) imports Dagster; without .pyc
# files (uv writes none by default, and PYTHONDONTWRITEBYTECODE forbids writing them later) each
# start compiles Dagster's modules from source, seconds per process.
$(STAMP): requirements-dev.lock pyproject.toml Makefile
	@command -v uv >/dev/null 2>&1 || [ -x "$(UV)" ] || $(PY) -m pip install --user --quiet uv==$(UV_VERSION) || $(PY) -m pip install --quiet uv==$(UV_VERSION)
	@UV=$$(command -v uv || echo $(HOME)/.local/bin/uv); \
	  [ -x $(BIN)/python ] || $$UV venv --quiet --python $(PY) $(VENV); \
	  $$UV pip sync --quiet --compile-bytecode --python $(BIN)/python --require-hashes requirements-dev.lock && \
	  $$UV pip install --quiet --compile-bytecode --python $(BIN)/python --no-deps -e .
	@touch $(STAMP)

install: $(STAMP)

# The browser test drives Debian's chromium (Playwright never downloads a browser): install it when missing.
# IMGPIPE_TEST_CHROMIUM points the test (and this check) at another Chromium build, e.g. a CI image's Chrome.
CHROMIUM := $(or $(IMGPIPE_TEST_CHROMIUM),/usr/bin/chromium)
chromium:
	@[ -x $(CHROMIUM) ] || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; \
	  else echo "chromium missing and not root: install it with apt-get install -y chromium" >&2; exit 1; fi; \
	  echo "installing chromium (apt-get) for the browser test"; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

up: $(STAMP)
	@exec $(BIN)/python -m image_pipeline.cli.devstack

# Tests run on TEST_WORKERS pytest-xdist workers: most end-to-end tests wait on daemons and sensors,
# not on the CPU, so three workers on two cores cut the wall time nearly in half. `--dist loadgroup` keeps
# a module whose stack is module-scoped (marked xdist_group) on one worker instead of one stack per worker.
TEST_WORKERS ?= 3
test: $(STAMP) chromium check
	@$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

# The fast checks: lint, the layer contracts (import-linter, pyproject [tool.importlinter]) and the Dagster
# definitions as dg loads them (on a throwaway DAGSTER_HOME: the repo's dagster.yaml wants PostgreSQL).
check: $(STAMP)
	@$(BIN)/ruff check .
	@$(BIN)/ruff format --check --quiet .
	@$(BIN)/lint-imports --no-cache
	@home=$$(mktemp -d) && trap 'rm -rf $$home' EXIT && printf 'telemetry:\n  enabled: false\n' > $$home/dagster.yaml && \
	  DAGSTER_HOME=$$home VIRTUAL_ENV=$(CURDIR)/$(VENV) $(BIN)/dg check defs

lint: $(STAMP)
	@$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: $(STAMP)
	@$(BIN)/ruff check --fix . && $(BIN)/ruff format .

# Benchmark (not a test): the seed's loop vs the codec limit vs our pipeline vs the make-up stack.
# Pass flags with BENCH_ARGS, e.g. make bench BENCH_ARGS="--parts 2,3 -n 100".
bench: $(STAMP)
	@$(BIN)/python -m bench.run $(BENCH_ARGS)

# Scale-out benchmark (not a test): Celery workers (pinned/unpinned), cost per chunk step per executor,
# event-log rows per 10,000 URLs, small-request latency, CeleryRunLauncher. Needs PostgreSQL, RabbitMQ and
# Redis (IMGPIPE_TEST_REDIS_URL). Flags with BENCH_ARGS, e.g. make bench-scale BENCH_ARGS="--parts a --photos 640".
bench-scale: $(STAMP)
	@$(BIN)/python -m bench.scale $(BENCH_ARGS)

# Re-pin after editing pyproject.toml (hashes, no download addresses). requirements.lock: the API image
# (and an in_process code location); requirements-<extra>.lock: an image that runs that executor
# (Dockerfile --build-arg LOCK=...); requirements-dev.lock: everything, for tests and benchmarks. A new
# extra's lock starts from requirements.lock (uv keeps the versions an output file already pins), so the
# packages every lock shares stay at one version.
EXTRAS := aws celery k8s
lock:
	$(UV) pip compile pyproject.toml --python-version 3.11 --generate-hashes -o requirements.lock
	for extra in $(EXTRAS); do \
	  [ -f requirements-$$extra.lock ] || cp requirements.lock requirements-$$extra.lock; \
	  $(UV) pip compile pyproject.toml --python-version 3.11 --extra $$extra --generate-hashes -o requirements-$$extra.lock || exit 1; \
	done
	$(UV) pip compile pyproject.toml --python-version 3.11 $(EXTRAS:%=--extra %) --group dev --group bench \
	  --generate-hashes -o requirements-dev.lock

clean:
	rm -rf $(VENV) .imgpipe .pytest_cache
