# Quick start:  make demo   (set up, then run the main job)  |  make test  (set up, then test)
VENV   ?= .venv
PY     := $(VENV)/bin/python
EXTRAS ?= dev,pde,spatiotemporal,llm,distributed

.PHONY: setup demo test test-slow system-deps lint bench clean

$(VENV)/.installed-$(EXTRAS): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	# The CPU build of torch first, so no dependency pulls a CUDA build.
	$(PY) -m pip install -q --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install -q --disable-pip-version-check -e '.[$(EXTRAS)]'
	touch $@

setup: $(VENV)/.installed-$(EXTRAS)

# ngspice (circuit-level tests) from Debian's packages; skipped where apt is unavailable.
system-deps:
	@command -v ngspice >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get update -qq && apt-get install -y -qq ngspice >/dev/null) \
	      || echo "warning: could not install ngspice; SPICE tests will be skipped"; \
	  else echo "note: ngspice not installed; SPICE tests will be skipped"; fi; }

demo: setup
	$(VENV)/bin/eads demo

test: setup system-deps
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n 2 --durations=15

test-slow: setup system-deps
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n 2 -m "slow and not gpu" --durations=10

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks

bench: setup
	$(PY) benchmarks/bench_core.py

clean:
	rm -rf $(VENV) .pytest_cache
