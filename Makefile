# The two commands of the README: `make demo` and `make test`.
# Each installs everything it needs first (idempotent: a stamp records the install).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.mwsim-installed
# The example adapter for another build of MultiWorld (docs/runtimes.md, "Testing another build").
OTHER  := examples/multiworld-0.2.0

# Library scenarios the test command also replays on real processes, where they must
# pass: tests/real/test_other_torch.py replays them on MultiWorld's own patch and on the
# worlds layer over another torch, tests/real/test_cluster_real.py on a Ray cluster (the
# whole library runs on the model; tests/real replays every fault and scale kind for
# real, among them the host crash and the all-reduce losing a member of
# explicit-crash-host.yaml and allreduce-lose-member.yaml). The GPU tier replays them on
# NCCL.
CORE_REAL := scenarios/fanin-mixed.yaml scenarios/pipeline-host-crash.yaml \
             scenarios/fanin-slow.yaml \
             scenarios/regressions/finding-early-loss-freezes-watchdog.yaml \
             scenarios/partition-cut-from-store.yaml scenarios/partition-members-cut-apart.yaml

.PHONY: install demo test test-gpu lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt tools/install-system.sh $(OTHER)/pyproject.toml
	sh tools/install-system.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	extras=multiworld,dev,ray; if dpkg -s libnetfilter-queue-dev >/dev/null 2>&1; then extras=multiworld,dev,ray,net; \
	else echo "mwsim: no libnetfilter-queue-dev: degraded links cannot add delay"; fi; \
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt \
	  -e ".[$$extras]"
	$(BIN)/python -m mwsim.internal.multiworld_setup
	test -d $(OTHER)/build/multiworld || $(BIN)/python -m pip install --quiet \
	  --disable-pip-version-check --no-deps --target $(OTHER)/build multiworld==0.2.0
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e $(OTHER)
	touch $@

demo: install
	$(BIN)/mwsim run scenarios/fanin-crash-one.yaml --out out/demo

test: install
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest
	$(BIN)/python -m pytest scenarios --mwsim-mode=sim -q

# The GPU tier (a runner with NVIDIA GPUs: .github/workflows/gpu.yml): gpu_tests/ and the
# core library on NCCL; each writes JUnit XML, histories, reports and timelines under out/gpu.
test-gpu: install
	mkdir -p out/gpu
	$(BIN)/python -m pytest gpu_tests -p no:cacheprovider --junitxml=out/gpu/junit-gpu-tests.xml
	$(BIN)/python -m pytest $(CORE_REAL) scenarios/gpu-faults.yaml --mwsim-mode=real \
	  --mwsim-backend=nccl --mwsim-out=out/gpu/library --junitxml=out/gpu/junit-library.xml

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: install
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) out .pytest_cache .hypothesis $(OTHER)/build
