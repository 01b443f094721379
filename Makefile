# One entry point for everything: `make run` (local stack) and `make test`.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
STAGE  ?= dev
export AWS_DEFAULT_REGION ?= us-east-1

.PHONY: venv checkov-venv system-deps lint test client-test run package table checkov bench reliability clean

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade 'pip<26.3'  # chalice 1.34 requires pip<26.3
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $(STAMP)

venv: $(STAMP)

# checkov in its own virtualenv: its dependency pins clash with chalice's and moto's.
CHECKOV_VENV  ?= .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed

$(CHECKOV_STAMP): infra/requirements-checkov.txt
	test -x $(CHECKOV_VENV)/bin/python || python3 -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install -q --upgrade pip
	$(CHECKOV_VENV)/bin/python -m pip install -q -r infra/requirements-checkov.txt
	touch $(CHECKOV_STAMP)

checkov-venv: $(CHECKOV_STAMP)

# Debian packages the tests need (the browser test drives Debian's chromium).
system-deps:
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

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy chalicelib app.py local_gateway infra

test: venv checkov-venv system-deps lint client-test
	$(PY) -m pytest -q

# The client module (client/): its devDependencies (ws, typescript) from package-lock.json,
# the declarations type-checked, then node's test runner: unit tests on a fake clock, and
# integration tests against the local stack (python -m local_gateway) over real sockets.
CLIENT_STAMP := client/node_modules/.installed

$(CLIENT_STAMP): client/package.json client/package-lock.json
	cd client && npm ci --no-audit --no-fund --loglevel=error
	touch $(CLIENT_STAMP)

client-test: venv system-deps $(CLIENT_STAMP)
	cd client && node_modules/.bin/tsc -p tsconfig.json
	cd client && node --test test/unit/*.test.js
	cd client && node --test test/integration/*.test.js

# The local stack in the foreground (README, "Local stack"); flags: make run ARGS="--port 4001 -v".
run: venv
	$(PY) -m local_gateway $(ARGS)

# The Terraform export for chalice stage $(STAGE): build/terraform/ (README, "Deploy").
package: venv
	$(PY) -m infra.build --stage $(STAGE) --out build/terraform

# checkov over the export, as make test runs it, with its findings printed.
checkov: package checkov-venv
	$(CHECKOV_VENV)/bin/checkov -d build/terraform --config-file .checkov.yaml --compact --quiet

# The connections table for `chalice deploy --stage $(STAGE)`, created once (idempotent).
# Region and credentials are boto3's (AWS_PROFILE, AWS_REGION): the us-east-1 default
# above is for chalice package only, so it is dropped here unless you set it yourself.
table: venv
	$(if $(filter file,$(origin AWS_DEFAULT_REGION)),env -u AWS_DEFAULT_REGION) $(PY) -m infra.table --stage $(STAGE)

# Benchmarks against the replaced proxy's way (on demand, never part of `make test`);
# writes bench/RESULTS.md, bench/results.json and bench/fanout.png.
bench: venv
	$(PY) -m bench

clean:
	rm -rf build .pytest_cache .mypy_cache .ruff_cache

# The full reliability suite: 10,000 fuzz cases per property, faults and load (loopback only).
reliability: venv
	RELIABILITY_EXAMPLES=$${RELIABILITY_EXAMPLES:-10000} RELIABILITY_FULL=1 $(PY) -m pytest -q tests/reliability
