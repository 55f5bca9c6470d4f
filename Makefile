# Two commands matter: `make demo` and `make test`. Both create the virtual
# environment and install everything they need on a fresh machine.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PROTOS := $(wildcard proto/ceir/v1/*.proto)

.PHONY: demo test lint proto proto-check bench bench-scale install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --group dev -e .
	touch $(STAMP)

install: $(STAMP)

# First every decision rule on a small register over mutual TLS, then the
# five operator nodes deciding 100,000 devices' attaches for a minute, then a
# short handover of the register from Telkomsel to Kemenperin under traffic,
# whose evidence is checked as a regulator would.
demo: $(STAMP)
	$(BIN)/python -m ceir.demo
	$(BIN)/ceir-sim attach --devices 100000 --rate 2000 --duration 60 \
		--mode synchronize --phase notify --report demo-data/report
	$(BIN)/ceir-sim drill handover --report demo-data/drill
	$(BIN)/ceir custody verify demo-data/drill/evidence

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/buf lint

# Regenerate the Python code and type stubs in ceir/v1 from proto/.
proto: $(STAMP)
	rm -f ceir/v1/*_pb2*.py ceir/v1/*_pb2*.pyi
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m grpc_tools.protoc -Iproto \
		--python_out=. --grpc_python_out=. \
		--mypy_out=. --mypy_grpc_out=. \
		$(PROTOS)

# Fails when the committed generated code differs from what proto/ gives.
proto-check: proto
	git diff --exit-code -- ceir/v1
	test -z "$$(git status --porcelain -- ceir/v1)"

bench: $(STAMP)
	$(BIN)/python -m benchmarks

# A register of 100,000,000 IMEIs: memory, database size, import rate and
# restart time (tens of minutes, about 30 GB of disk; CI does not run it).
# SCALE_ARGS=--quick loads 1,000,000.
bench-scale: $(STAMP)
	$(BIN)/python -m benchmarks --only scale $(SCALE_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache demo-data
