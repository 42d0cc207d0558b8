# Set-up and everyday commands. `make train` and `make test` work on a fresh clone: each creates
# .venv and installs the pinned versions (constraints.txt) first.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
ARGS ?=

.PHONY: train test test-fast test-cluster bench peers docs docs-serve clean-outputs

$(BIN)/.installed: pyproject.toml setup.py constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first and exactly: any other spelling can pull a multi-GB CUDA build.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[tensorboard,test,bench,atari,video,docs]'
	touch $@

## Train PPO on MuJoCo HalfCheetah-v5 for 1M steps (pass more overrides with ARGS="seed=1 ...").
train: $(BIN)/.installed
	$(BIN)/rlrun algo=ppo env=HalfCheetah $(ARGS)

## Run the whole test suite, one pytest worker per core: 12-15 min on 2 quiet cores (738 tests: learning,
## exact resume, fault injection, real sweeps, SLURM and PostgreSQL when installed, the docs site; the long
## `cluster` ones skip, saying so: make test-cluster runs them), after the install.
test: $(BIN)/.installed
	$(BIN)/python -m pytest -q -n auto $(ARGS)

## The tests without the slow ones (learning tests, the per-algorithm resume matrix, installs).
test-fast: $(BIN)/.installed
	$(BIN)/python -m pytest -q -n auto -m "not slow" $(ARGS)

## The long tests of what runs on other machines (marker `cluster`), as root on Debian after
## `scripts/slurm_local.sh install` and `scripts/postgres_local.sh install`: a sweep through 2-minute SLURM time
## limits and requeues, a suite with a cancelled job, tuner workers as a job array on PostgreSQL, and
## scripts/gpu_check.sh rehearsed on the CPU. One at a time (the cluster's ports are fixed).
test-cluster: $(BIN)/.installed
	RLRUN_CLUSTER_TESTS=1 $(BIN)/python -m pytest -q -m cluster $(ARGS)

## Speed against Stable-Baselines3 / sb3-contrib, alternating rounds (ARGS="--algos ppo,a2c,trpo,sac,td3,dqn").
bench: $(BIN)/.installed
	$(BIN)/python scripts/bench_speed.py $(ARGS)

## The peers' venv for scripts/bench_atari.py (.venv-peers: CleanRL's ppo_atari_envpool.py from its wheel, gym 0.23.1,
## envpool 0.8.4, the same torch); ~1 minute, ~1.3 GB.
peers:
	bash scripts/setup_peers.sh

## The documentation site (docs/, mkdocs.yml) into site/, with --strict: a broken link, a missing page or a
## warning fails. The config reference and the errors page are generated from conf/ and src/ as it builds.
docs: $(BIN)/.installed
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

## The site on http://127.0.0.1:8000, rebuilt as you edit.
docs-serve: $(BIN)/.installed
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve --dev-addr 127.0.0.1:8000
