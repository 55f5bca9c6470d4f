# Two commands matter: `make demo` and `make test`. Both create the virtual
# environment and install everything they need on a fresh machine.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PROTOS := $(wildcard proto/ceir/v1/*.proto)

.PHONY: demo test lint proto proto-check bench bench-scale install browser clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --group dev -e .
	touch $(STAMP)

install: $(STAMP)

# Headless Chromium renders the simulation report (report.png beside
# report.html) and runs its test; installed from Debian's packages when
# missing and apt-get is usable (as root), otherwise both are skipped.
browser:
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		echo "installing chromium (renders the simulation report)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else \
		echo "chromium is not installed (Debian: sudo apt-get install chromium):" \
			"no report.png, and the report render test is skipped"; \
	fi

# First every decision rule on a small register over mutual TLS, then the
# five operator nodes deciding 100,000 devices' attaches for a minute, then a
# short handover of the register from Telkomsel to Kemenperin under traffic,
# whose evidence is checked as a regulator would.
demo: $(STAMP) browser
	$(BIN)/python -m ceir.demo
	$(BIN)/ceir-sim attach --devices 100000 --rate 2000 --duration 60 \
		--mode synchronize --phase notify --report demo-data/report
	$(BIN)/ceir-sim drill handover --report demo-data/drill
	$(BIN)/ceir custody verify demo-data/drill/evidence

test: $(STAMP) browser
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
