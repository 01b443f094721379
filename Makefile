# One entry point for everything: `make run` (local stack) and `make test`.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
STAGE  ?= dev
export AWS_DEFAULT_REGION ?= us-east-1

.PHONY: venv system-deps lint test run package table bench reliability clean

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $(STAMP)

venv: $(STAMP)

# Debian packages the tests need (the browser test drives Debian's chromium).
system-deps:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "note: /usr/bin/chromium is missing (apt-get install chromium); the browser test will skip"; fi; \
	fi

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy chalicelib app.py

test: venv system-deps lint
	$(PY) -m pytest -q

run: venv
	$(PY) -m local_gateway

# Benchmarks against the replaced proxy's way (on demand, never part of `make test`);
# writes bench/RESULTS.md, bench/results.json and bench/fanout.png.
bench: venv
	$(PY) -m bench

clean:
	rm -rf build .pytest_cache .mypy_cache .ruff_cache
