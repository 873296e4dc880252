# The two newcomer commands: `make demo` and `make test`. Each sets up .venv itself (idempotent) first.
# `make test-fast`: the library's unit tests and doctests only (no Ray cluster, no training), well under 2 minutes.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_OUT ?= demo-out
CORPORA ?= ../shared/corpora

export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER := 0
unexport RAY_ADDRESS

.PHONY: setup java chromium demo test test-fast bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

# Voices for the demo archive: the held-out test speakers of ../shared/corpora when present, else synthetic.
DEMO_VOICES := $(if $(wildcard $(CORPORA)/ravdess),--corpus ravdess=$(CORPORA)/ravdess --corpus tess=$(CORPORA)/tess --split test,)

demo: setup
	$(BIN)/ser make-archive $(DEMO_VOICES) --calls 8 --customer-turns 8 --out $(DEMO_OUT)/archive
	$(BIN)/ser score --archive $(DEMO_OUT)/archive/audio --out $(DEMO_OUT)/reports
	$(BIN)/ser report --reports $(DEMO_OUT)/reports --html $(DEMO_OUT)/report.html

# The Spark reader test needs a Java runtime: Debian's, installed once when `java` is missing (make test only).
java:
	command -v java >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openjdk-17-jre-headless; }

# The HTML report tests render the page in Debian's chromium: installed once when it is missing (make test only).
chromium:
	test -x /usr/bin/chromium || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-liberation; }

test: setup java chromium
	$(BIN)/pytest -q --doctest-modules ser_core tests

# tests/unit: the library on local files and a local fake S3 (no Ray, no training); tests/integration: jobs, clusters.

test-fast: setup
	$(BIN)/pytest -q --doctest-modules ser_core tests/unit

bench: setup
	$(BIN)/python bench/extract.py

clean:
	rm -rf $(DEMO_OUT) .pytest_cache
