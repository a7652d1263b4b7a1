# dnx — the two quickstart commands are `make demo` and `make test`; both create .venv themselves.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO   ?= build/demo

.PHONY: venv demo test bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,plot,simplify]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/dnx models
	mkdir -p $(DEMO)
	$(BIN)/dnx export densenet121 -o $(DEMO)/densenet121.onnx

test: $(STAMP)
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python -m dnx.benchmarks.suite

clean:
	rm -rf $(VENV) build .pytest_cache
