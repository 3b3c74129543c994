# Two set-up commands: `make demo` and `make test` (see README.md).
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
# nbgrader calls its own console scripts (alembic): keep the venv's bin first.
export PATH := $(abspath $(BIN)):$(PATH)
export PYTHONHASHSEED := 0
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c

.PHONY: demo test test-fast lessons-full measured lab site lint clean system-deps

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)

$(VENV)/.installed: pyproject.toml $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,docs]" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
	$(BIN)/python -c "import ftlab, torch, torchvision, timm, transformers, nbgrader"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (ftlab)" >/dev/null
	touch $@

# System tools (Debian/Ubuntu; root or sudo, once per machine): the grading sandbox needs
# bubblewrap; the class test (tests/test_hub.py) needs JupyterHub's proxy (npm) and a browser.
system-deps:
	@set -e; SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	missing=$$(for p in bubblewrap chromium; do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done; \
		command -v npm >/dev/null || echo "nodejs npm"); \
	if [ -n "$$missing" ]; then $$SUDO apt-get update -qq; $$SUDO apt-get install -y -qq $$missing; fi; \
	command -v configurable-http-proxy >/dev/null || $$SUDO npm install -g --silent configurable-http-proxy
	@bwrap --version && chromium --version 2>/dev/null | head -1 && echo "configurable-http-proxy $$(configurable-http-proxy --version)"

demo: $(VENV)/.installed
	$(BIN)/ftlab compare --seeds 3 --image-size 32 --max-per-class 100 --out runs/compare

# Three workers, one test file each at a time (a module fixture stays in one process). Three on a 2-core machine:
# much of the suite waits (kernels starting, the hub, the browser, Dask, time limits), and a third worker fills
# it; a fourth measured no faster (19:30 against 19:00, idle fresh clones): the suite is then CPU-bound.
# --no-loadscope-reorder keeps tests/conftest.py's order (the longest files first); by default xdist hands out
# the files with the most tests first, which started the hub and the cluster last.
WORKERS ?= 3
test: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n $(WORKERS) --dist loadfile --no-loadscope-reorder

# The edit-test loop: lint and every test except the slow ones (nbgrader runs, the hub, the cluster,
# lesson execution, end-to-end compare runs). `make test` still runs everything.
test-fast: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -m "not slow"

# Every lesson top to bottom in full mode (FTLAB_FAST=0), with the asserts that check its prose's claims; each
# lesson's seconds go into lessons/measured/lesson_times.json, which its first cell cites (tests/test_measured.py).
# Slow: tens of minutes on a 2-core CPU. One lesson: make lessons-full K=03_learning_rate (lesson 3a; 3b is
# K=03b_layerwise_rates)
# Without K it first re-measures the numbers the prose cites (`make measured`).
lessons-full: $(VENV)/.installed
	$(if $(K),,$(MAKE) measured)
	FTLAB_LESSONS_FULL=1 $(BIN)/python -m pytest tests/test_lessons.py -m slow -s -q --timeout=0 $(if $(K),-k $(K))

# The measured numbers the lessons' prose cites: lessons/measured/*.json, rewritten here (lr_story about 20 minutes,
# near_far about 13 minutes on a 2-core CPU, one torch thread). tests/test_measured.py then fails wherever
# the prose no longer agrees.
measured: $(VENV)/.installed
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/lr_story.py --write
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/near_far.py --write

lab: $(VENV)/.installed
	$(BIN)/jupyter lab lessons/

# The course website in site/ (open site/index.html): the lessons executed with their outputs, the assignments'
# student pages, the guides and the library reference. Full settings by default (the lessons' real numbers, tens
# of minutes on a 2-core CPU the first time); FAST=1 for a quick build with a banner saying so. Each mode keeps
# its executed lessons in build/site/<mode>/executed: a rebuild runs again only the lessons whose code changed
# (after a change to ftlab itself: .venv/bin/python docs/build_site.py --rerun [--fast]).
FAST ?= 0
site: $(VENV)/.installed
	$(BIN)/python docs/build_site.py $(if $(filter-out 0,$(FAST)),--fast)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache site build/site
