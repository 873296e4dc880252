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

# Voices for the demo archive: the held-out test speakers of ../shared/corpora when present, else synthetic.
DEMO_VOICES := $(if $(wildcard $(CORPORA)/ravdess),--corpus ravdess=$(CORPORA)/ravdess --corpus tess=$(CORPORA)/tess --split test,)

demo: setup
	$(BIN)/ser make-archive $(DEMO_VOICES) --calls 8 --out $(DEMO_OUT)/archive
	$(BIN)/ser score --archive $(DEMO_OUT)/archive/audio --out $(DEMO_OUT)/reports
	$(BIN)/ser report --reports $(DEMO_OUT)/reports

test: setup
	$(BIN)/pytest -q

bench: setup
	$(BIN)/python bench/extract.py

clean:
	rm -rf $(DEMO_OUT) .pytest_cache
