# One entry point for everything: `make run` (local stack) and `make test`; `make help` lists the targets.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

# The interpreter .venv is built with. Chalice takes the Lambda runtime from the Python that
# runs it (python3.13 here; docs/operations.md), so this is the deployed runtime too: 3.13,
# else 3.12, found on PATH or in pyenv's versions; never the machine's default 3.11.
# Override with `make test PYTHON=/path/to/python3.13`.
ifeq ($(origin PYTHON),undefined)
PYTHON := $(shell for v in 3.13 3.12; do \
  for c in python$$v $$(pyenv root 2>/dev/null || echo "$${PYENV_ROOT:-$$HOME/.pyenv}")/versions/$$v*/bin/python$$v; do \
    if "$$c" -c '' >/dev/null 2>&1; then command -v "$$c"; exit 0; fi; done; done)
endif
NO_PYTHON := error: no Python 3.13 found (nor 3.12, the oldest accepted: it deploys python3.12): install 3.13 (pyenv install 3.13, or your system's python3.13 package), or pass PYTHON=/path/to/python3.13
STAGE  ?= dev
# pytest's processes in make test (pytest-xdist): one per core; TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= auto
# chalice package (make package, make test) needs a region, though the export names none:
# us-east-1 stands in when none is set. The targets that call AWS (table, redrive) drop
# this stand-in and use yours: AWS_DEFAULT_REGION or AWS_PROFILE's (boto3 and chalice
# ignore AWS_REGION); without one they stop with one line saying so.
export AWS_DEFAULT_REGION ?= us-east-1
YOUR_REGION := $(if $(filter file,$(origin AWS_DEFAULT_REGION)),env -u AWS_DEFAULT_REGION)

.DEFAULT_GOAL := help
.PHONY: help venv checkov-venv lock system-deps lint test client-test run package table checkov validate redrive bench reliability clean

help: ## List the targets
	@awk 'BEGIN {FS = ":[^#]*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# Installs come only from the locks (exact versions, every file's sha256): requirements.txt
# is what ships in the Lambda, requirements-dev.txt the rest; both are made by `make lock`
# from requirements*.in. The lock pins pip itself (chalice 1.34 requires pip<26.3).
#
# uv installs them (seconds where pip takes minutes): the uv that requirements-dev.txt pins,
# hash-checked, which pip installs into .venv first. Where it cannot be had (no uv wheel
# for this platform), or with INSTALL_WITH=pip, pip installs the locks instead.
PIP_INSTALL  := -m pip install -q --require-hashes
UV           := $(VENV)/bin/uv
UV_VERSION   := $(shell sed -n 's/^uv==\([^ ]*\).*/\1/p' requirements-dev.txt)
INSTALL_WITH ?= uv

# $(call install_lock,VIRTUALENV,LOCK): LOCK into VIRTUALENV, exactly (uv pip sync removes
# what the lock does not list), saying first what it does.
define install_lock
@if [ "$(INSTALL_WITH)" = uv ] && [ -x $(UV) ]; then \
	  echo "$(1): installing $(2) with uv $(UV_VERSION) ($$(grep -c '^[a-z]' $(2)) packages, hashes checked)"; \
	  $(UV) pip sync -q --require-hashes --python $(1)/bin/python $(2); \
	else \
	  echo "$(1): installing $(2) with pip ($$(grep -c '^[a-z]' $(2)) packages, hashes checked; a minute or more)"; \
	  $(1)/bin/python $(PIP_INSTALL) -r $(2); \
	fi
endef

# A .venv left by an older checkout on another interpreter is rebuilt, not reused.
$(STAMP): requirements.txt requirements-dev.txt
	@test -n "$(PYTHON)" || { echo "$(NO_PYTHON)"; exit 1; }
	@if [ -x $(PY) ] && [ "$$($(PY) -V)" != "$$($(PYTHON) -V)" ]; then \
	  echo "$(VENV) runs $$($(PY) -V), not $(PYTHON): rebuilding it"; rm -rf $(VENV); fi
	@test -x $(PY) || { echo "$(VENV): creating it with $$($(PYTHON) -V) ($(PYTHON))"; $(PYTHON) -m venv $(VENV); }
	@if [ "$(INSTALL_WITH)" = uv ] && [ "$$($(UV) --version 2>/dev/null)" != "uv $(UV_VERSION)" ]; then \
	  echo "$(VENV): installing uv $(UV_VERSION) with pip (pinned and hash-checked in requirements-dev.txt)"; \
	  awk '/^uv==/ {p = 1} p {print; if ($$0 !~ /\\$$/) exit}' requirements-dev.txt > $(VENV)/uv-requirement.txt; \
	  $(PY) $(PIP_INSTALL) -r $(VENV)/uv-requirement.txt \
	    || echo "$(VENV): uv $(UV_VERSION) could not be installed; pip installs the rest"; \
	fi
	$(call install_lock,$(VENV),requirements-dev.txt)
	@touch $(STAMP)
	@echo "$(VENV): ready"

venv: $(STAMP) ## Create .venv and install requirements-dev.txt (the dev lock)

# checkov in its own virtualenv: its dependency pins clash with chalice's and moto's.
# .venv's uv installs it (hence .venv first).
CHECKOV_VENV  ?= .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed

$(CHECKOV_STAMP): infra/requirements-checkov.txt $(STAMP)
	@test -n "$(PYTHON)" || { echo "$(NO_PYTHON)"; exit 1; }
	@if [ -x $(CHECKOV_VENV)/bin/python ] && [ "$$($(CHECKOV_VENV)/bin/python -V)" != "$$($(PYTHON) -V)" ]; then \
	  echo "$(CHECKOV_VENV) runs $$($(CHECKOV_VENV)/bin/python -V), not $(PYTHON): rebuilding it"; \
	  rm -rf $(CHECKOV_VENV); fi
	@test -x $(CHECKOV_VENV)/bin/python \
	  || { echo "$(CHECKOV_VENV): creating it with $$($(PYTHON) -V) ($(PYTHON))"; $(PYTHON) -m venv $(CHECKOV_VENV); }
	$(call install_lock,$(CHECKOV_VENV),infra/requirements-checkov.txt)
	@touch $(CHECKOV_STAMP)
	@echo "$(CHECKOV_VENV): ready"

checkov-venv: $(CHECKOV_STAMP) ## Create .venv-checkov from infra/requirements-checkov.txt

# Re-resolve the locks from requirements*.in (PyPI, Python 3.13, the Lambda runtime): existing pins are kept
# unless an .in file asks otherwise; `make lock LOCK_ARGS=--upgrade` (or
# `--upgrade-package NAME`) moves them. The Lambda lock is resolved for the Lambda's
# platform; the dev lock takes what ships at exactly the Lambda lock's versions.
UV_COMPILE := $(VENV)/bin/uv pip compile -q --generate-hashes --python-version 3.13 \
	--custom-compile-command "make lock" $(LOCK_ARGS)

lock: venv ## Re-resolve requirements*.txt from requirements*.in (LOCK_ARGS=--upgrade to move pins)
	$(UV_COMPILE) --python-platform x86_64-manylinux_2_17 requirements.in -o requirements.txt
	$(UV_COMPILE) --universal requirements-dev.in -o requirements-dev.txt
	$(UV_COMPILE) --universal infra/requirements-checkov.in -o infra/requirements-checkov.txt

# Debian packages the tests need (the browser test drives Debian's chromium).
system-deps: ## Install Debian's chromium for the browser test (as root), if missing
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "note: /usr/bin/chromium is missing (apt-get install chromium); the browser test will skip"; fi; \
	fi
	@if ! command -v node >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null; \
	  else echo "error: node is missing (apt-get install nodejs npm): the client's tests need it"; exit 1; fi; \
	fi

lint: venv ## ruff check, ruff format --check, mypy --strict (deployed code, local stack, infra, tests, bench)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy chalicelib app.py local_gateway infra tests bench ws_proxy_testing

# pytest runs beside the client module's tests (much of their time is spent waiting on
# sockets and npm): its output is kept in build/pytest.log and printed after them, so its
# summary is the last line; make fails if either fails.
test: venv checkov-venv system-deps lint $(CLIENT_STAMP) ## lint, type checks and every test (the client's too)
	@mkdir -p build
	@$(PY) -m pytest -q -n $(TEST_WORKERS) > build/pytest.log 2>&1 & pytest=$$!; \
	  $(MAKE) --no-print-directory client-test; client=$$?; \
	  wait $$pytest; status=$$?; cat build/pytest.log; \
	  if [ $$client -ne 0 ]; then echo "make test: the client module's tests failed (above)"; exit 1; fi; \
	  exit $$status

# The client module (client/): its devDependencies (ws, typescript) from package-lock.json,
# the declarations type-checked, then node's test runner: unit tests on a fake clock, and
# integration tests against the local stack (python -m local_gateway) over real sockets.
CLIENT_STAMP := client/node_modules/.installed

$(CLIENT_STAMP): client/package.json client/package-lock.json
	cd client && npm ci --no-audit --no-fund --loglevel=error
	touch $(CLIENT_STAMP)

client-test: venv system-deps $(CLIENT_STAMP) ## The client module: tsc, node unit and integration tests
	cd client && node_modules/.bin/tsc -p tsconfig.json
	cd client && node --test test/unit/*.test.js
	cd client && node --test test/integration/*.test.js

# The local stack in the foreground (docs/local-stack.md); flags: make run ARGS="--port 4001 -v".
run: venv ## The local stack in the foreground (ARGS="--port 4001 -v")
	$(PY) -m local_gateway $(ARGS)

# The Terraform export for chalice stage $(STAGE): build/terraform/ (docs/operations.md).
package: venv ## The Terraform export for STAGE (default dev) into build/terraform/
	$(PY) -m infra.build --stage $(STAGE) --out build/terraform
	$(PY) -m infra.runtimes --export build/terraform

# checkov over the export, as make test runs it, with its findings printed.
checkov: package checkov-venv ## checkov over the export, findings printed
	$(CHECKOV_VENV)/bin/checkov -d build/terraform --config-file .checkov.yaml --compact --quiet

# The export through the real AWS provider: terraform init (from a local provider mirror,
# found or TF_PROVIDER_MIRROR=DIR), validate, then apply and destroy against a moto server.
validate: package ## The export through terraform init/validate, then apply and destroy on moto
	$(PY) -m infra.validate --export build/terraform

# Failed deliver/push/fanout events from the dead-letter queue back to their functions
# (infra/redrive.py): make redrive QUEUE_URL=https://sqs... ARGS="--dry-run" (then without it).
redrive: venv ## Re-invoke failed events from the dead-letter queue (QUEUE_URL=..., ARGS=--dry-run)
	$(YOUR_REGION) $(PY) -m infra.redrive $(if $(QUEUE_URL),--queue-url $(QUEUE_URL)) $(ARGS)

# The connections table for `chalice deploy --stage $(STAGE)`, created once (idempotent),
# in your region (AWS_DEFAULT_REGION or AWS_PROFILE's) with your credentials.
table: venv ## Create the connections table for chalice deploy --stage STAGE (idempotent)
	$(YOUR_REGION) $(PY) -m infra.table --stage $(STAGE)

# Benchmarks against the replaced proxy's way (on demand, never part of `make test`);
# writes bench/RESULTS.md, bench/results.json and bench/fanout.png.
bench: venv ## Benchmarks (about 4 minutes; writes bench/RESULTS.md)
	$(PY) -m bench

clean: ## Remove build/ and tool caches
	rm -rf build .pytest_cache .mypy_cache .ruff_cache

# The full reliability suite: 10,000 fuzz cases per property, faults and load (loopback only).
reliability: venv ## The full reliability suite (fuzz, faults, load)
	RELIABILITY_EXAMPLES=$${RELIABILITY_EXAMPLES:-10000} RELIABILITY_FULL=1 $(PY) -m pytest -q tests/reliability
