# Two commands matter (see README.md):
#   make run   - set up a virtualenv, create a demo project and card, start the engine
#   make test  - set up the virtualenv if needed and run the whole test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: run test setup demo bench

$(BIN)/ivr: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(BIN)/ivr

setup: $(BIN)/ivr

demo: setup
	$(BIN)/ivr demo

run: demo
	IVR_TALK_CLOCK_CAP=0 $(BIN)/ivr serve   # the demo: ivr call compresses time (README, Security)

test: setup
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/pip install --quiet -e '.[test,bench]'
	$(BIN)/python -m bench
