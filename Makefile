# The two commands of the README. Both create .venv when it is missing and install megagrow into it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export DS_ACCELERATOR ?= cpu
export OMP_NUM_THREADS ?= 2

.PHONY: install test demo lint clean

$(BIN)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $@

install: $(BIN)/.installed

test: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q --durations=15

demo: install
	$(BIN)/megagrow-prep sample
	$(BIN)/megagrow plan show configs/demo-apollo.yaml
	$(BIN)/megagrow train configs/demo.yaml
	$(BIN)/megagrow train configs/demo-apollo.yaml
	@echo
	$(BIN)/megagrow report runs/demo-gpt-tiny runs/demo-gpt-tiny-apollo
	@echo "Results: runs/demo-gpt-tiny and runs/demo-gpt-tiny-apollo (metrics.jsonl, tb/, config.yaml, checkpoints/)"
	@echo "         view with: $(BIN)/tensorboard --logdir runs"

lint: install
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache *.egg-info
