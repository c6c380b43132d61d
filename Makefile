# Two commands do all set-up: `make demo` runs the main job, `make test` runs the checks.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test system lint typecheck unit cli-narrow bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --upgrade pip
	@$(BIN)/python -m pip install --quiet -e '.[cli,dev,bench,etcd,store,otlp]'
	@touch $(STAMP)

# System packages: headless Chromium and its driver for the browser tests (tests/browser);
# etcd (etcd-server) for the registry on etcd (`registry = "etcd"`) and its tests; memcached for
# the apps' caches (`[[caches]]`, herd.Cache) and their tests; nats-server for herd.Store and
# herd.Events on NATS JetStream (`HERD_STORE_URL=nats://...`) and their tests; nftables and
# iproute2 (ip, tc) for `herd up --network isolated` and `herd chaos net` (docs/network.md).
# Installed with apt-get when missing and we may (root); otherwise stop with the command to run.
APT_PACKAGES := chromium chromium-driver etcd-server memcached nats-server nftables iproute2
system:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] && [ -x /usr/bin/etcd ] \
		&& [ -x /usr/bin/memcached ] && [ -x /usr/sbin/nats-server ] \
		&& [ -x /usr/sbin/nft ] && [ -x /usr/sbin/tc ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $(APT_PACKAGES); \
	else \
		echo "missing system packages; run:" >&2; \
		echo "  sudo apt-get update && sudo apt-get install -y --no-install-recommends $(APT_PACKAGES)" >&2; \
		exit 1; \
	fi

demo: $(STAMP) system
	$(BIN)/herd demo

test: $(STAMP) lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff check src tests examples benchmarks
	$(BIN)/ruff format --check src tests examples benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP) system
	$(BIN)/python -m pytest -q

# The CLI's tests where wrapping and width bite: a long temporary path, a 40-column terminal.
NARROW_TMP := /tmp/a-rather-long-temporary-directory-name-to-catch-wrapping
cli-narrow: $(STAMP)
	@mkdir -p $(NARROW_TMP)
	TMPDIR=$(NARROW_TMP) COLUMNS=40 $(BIN)/python -m pytest -q -p no:cacheprovider \
		tests/unit/test_cli.py tests/integration/test_new.py

bench: $(STAMP)
	$(BIN)/python benchmarks/overhead.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
