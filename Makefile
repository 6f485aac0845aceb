# The README's commands. Each target creates .venv with the python on PATH and installs the host
# and every bundled plugin (editable) with what they need, so a fresh clone needs only Python and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PLUGINS := plugins/caf_common plugins/caf_adapter plugins/ack_consumer plugins/result_consumer \
	plugins/caf_simulator
STAMP := $(VENV)/.installed
# a third-party plugin (not bundled, opt-in): `make test` installs it and runs its own tests
EXAMPLE := examples/order-audit-plugin

.PHONY: demo test lint bench install clean

$(STAMP): pyproject.toml $(wildcard plugins/*/pyproject.toml) $(EXAMPLE)/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,server]' $(foreach p,$(PLUGINS) $(EXAMPLE),-e $(p))
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/jetplug caf demo -c examples/caf-demo.toml

test: $(STAMP)
	$(BIN)/python -m pytest
	cd $(EXAMPLE) && ../../$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check core plugins tests bench examples conftest.py
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/run.py --repeat 5
	$(BIN)/python bench/shutdown.py

clean:
	rm -rf $(VENV) .jetplug
