# The two newcomer commands: `make demo` and `make test`. Each sets up .venv itself (idempotent) first.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_OUT ?= demo-out
CORPORA ?= ../shared/corpora

export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER := 0
export TF_CPP_MIN_LOG_LEVEL := 2
unexport RAY_ADDRESS

.PHONY: setup demo test bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

demo: setup
	$(BIN)/python -m jobs.demo --out $(DEMO_OUT) --corpora $(CORPORA)

test: setup
	$(BIN)/pytest -q

bench: setup
	$(BIN)/python bench/extract.py

clean:
	rm -rf $(DEMO_OUT) .pytest_cache
