# Both entry points create .venv/ when it is missing and install the project into it.
VENV   := .venv
PYTHON := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test bench clean

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
	$(PYTHON) -m pytest -q

## Peer-tool comparisons (installs the optional peers).
bench: $(STAMP)
	$(PYTHON) -m pip install --quiet -e '.[test,bench]'
	$(PYTHON) benchmarks/bench_params.py
	$(PYTHON) benchmarks/bench_min_input.py
	$(PYTHON) benchmarks/bench_peers.py
	$(PYTHON) benchmarks/bench_memory.py --verify

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
