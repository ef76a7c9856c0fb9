# Both entry points create .venv/ when it is missing and install the project into it.
VENV   := .venv
PYTHON := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
# The oldest supported releases (.ci/oldest.txt) in a second environment.
OLDEST_VENV  := .venv-oldest
OLDEST_STAMP := $(OLDEST_VENV)/.installed-stamp
# The tests whose answers depend on torch's internals: dispatch-level traces, meta kernels,
# the replay rules, MemTracker, fake tensors, the launcher and its rendezvous, the zoo's library
# builders, torch's FlopCounterMode (the breakdowns' reference), torch.profiler's events.
VERSION_SENSITIVE := tests/test_replay_rules.py tests/test_device_checks.py tests/test_static.py \
	tests/test_min_input.py tests/test_memory.py tests/test_receptive.py tests/test_zoo.py tests/test_api.py \
	tests/test_distributed.py tests/test_network.py tests/test_views.py tests/test_profile.py tests/test_sweep.py

# Test workers: one per CPU this process may use, at most one per 4 GiB of memory (a worker and
# the rank processes its tests start each import torch). The tests marked `timed` judge this
# machine's own timings and load, so they run alone, after the parallel part.
JOBS := $(shell python3 -c "import os; cpus = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') \
	else os.cpu_count(); print(max(1, min(cpus, os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') >> 32)))")
PARALLEL := -n $(JOBS) --dist worksteal -m "not timed"

.PHONY: demo test test-oldest bench clean

$(STAMP): pyproject.toml
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

## The main job: the static comparison report of the whole zoo into reports/.
demo: $(STAMP)
	$(VENV)/bin/archprobe report -o reports --force --no-throughput

## The test suite.
test: $(STAMP)
	$(PYTHON) -m pytest -q $(PARALLEL)
	$(PYTHON) -m pytest -q -m timed

## The version-sensitive tests on the oldest supported torch, torchvision and timm.
test-oldest: $(OLDEST_STAMP)
	$(OLDEST_VENV)/bin/python -m pytest -q -p no:cacheprovider $(PARALLEL) $(VERSION_SENSITIVE)
	$(OLDEST_VENV)/bin/python -m pytest -q -p no:cacheprovider -m timed $(VERSION_SENSITIVE)

$(OLDEST_STAMP): pyproject.toml .ci/oldest.txt
	test -x $(OLDEST_VENV)/bin/python || python3 -m venv $(OLDEST_VENV)
	$(OLDEST_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(OLDEST_VENV)/bin/python -m pip install --quiet -c .ci/oldest.txt -e '.[test]'
	touch $(OLDEST_STAMP)

## Peer-tool comparisons (installs the optional peers).
bench: $(STAMP)
	$(PYTHON) -m pip install --quiet -e '.[test,bench]'
	$(PYTHON) benchmarks/bench_params.py
	$(PYTHON) benchmarks/bench_min_input.py
	$(PYTHON) benchmarks/bench_peers.py
	$(PYTHON) benchmarks/bench_memory.py --verify

clean:
	rm -rf $(VENV) $(OLDEST_VENV) build *.egg-info .pytest_cache
