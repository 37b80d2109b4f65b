# The two commands of the README, and what they stand on. Each target sets up what it needs from nothing:
#   make book   build the book into _build/html (creates .venv and installs lnkit[book])
#   make test   run every test (creates .venv, installs lnkit[dev], Chromium for the browser tests and bubblewrap)
#   make check  the fast tier: lint and the unit tests, no root
# Re-running is cheap: an install is redone only when pyproject.toml changes.

PYTHON ?= python3
VENV   := .venv
BIN    := $(CURDIR)/$(VENV)/bin
# nbgrader runs `alembic` from PATH, and the book's kernels must find the venv's python first.
export PATH := $(BIN):$(PATH)

.PHONY: book test check bench system clean help instructor hub-proxy gpt2-weights

help:
	@echo "make book   build the book into _build/html (open _build/html/index.html)"
	@echo "make test   run every test"
	@echo "make check  the fast tier: lint and the unit tests (no root, no sandbox, no browser; under 3 minutes)"
	@echo "make gpt2-weights  download GPT-2 small's released weights (550 MB) once, for chapter 9's comparisons"
	@echo "make instructor  install the instructor's tools (nbgrader, its lab extensions, JupyterLab) into .venv"
	@echo "make bench  time lnkit against the textbook formula and torch; writes benchmarks/results/cpu.json"

# torch comes from PyTorch's CPU wheel index: PyPI's Linux torch is a CUDA build (about twenty NVIDIA wheels, several
# GB). lnkit[torch] is installed first with that index added, then the extra without it, which keeps the torch it
# finds. --retries 1: where the index cannot be reached (a closed network with a local CPU wheel), pip moves on at
# once instead of backing off five times for every package. A torch already in .venv is kept. For the CUDA build in a
# new .venv: make test TORCH_INDEX= (PyPI's torch, a CUDA build on Linux); README.md says how to switch an existing one.
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu

# The grader (grader/, the distribution nbgrader-sandbox) goes in beside lnkit for those who grade or test: instructor,
# hub and dev; the book and a student's install never have it.
GRADER_FOR := instructor hub dev
$(VENV)/.installed-%: pyproject.toml grader/pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet --retries 1 $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX)) -e '.[torch]'
	$(VENV)/bin/python -m pip install --quiet $(if $(filter $*,$(GRADER_FOR)),-e ./grader) -e '.[$*]'
	touch $@

book: $(VENV)/.installed-book
	jupyter-book build . -W -n --keep-going

# GPT-2 small's released weights and tokenizer into the Hugging Face cache (~/.cache/huggingface/hub, or HF_HOME),
# the one download the book can use: chapter 9 puts GPT-2 beside its own small model where the cache holds them,
# and never downloads during a build. The published book's workflow runs this once and keeps the cache.
GPT2_FILES := config.json generation_config.json model.safetensors tokenizer.json tokenizer_config.json vocab.json \
              merges.txt
gpt2-weights: $(VENV)/.installed-book
	hf download gpt2 $(GPT2_FILES)

# What the tests need from Debian: Chromium for the browser tests (Playwright drives it and never downloads a browser
# of its own), and bubblewrap, the sandbox every graded student's code runs in.
system:
	@command -v chromium >/dev/null && command -v bwrap >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium bubblewrap; \
	  else echo "The tests need Debian's chromium and bubblewrap: sudo apt-get install -y chromium bubblewrap" >&2; exit 1; fi; }

# The instructor's tools in .venv: nbgrader and its lab extensions, JupyterLab, torch (CPU), the grading commands.
instructor: $(VENV)/.installed-instructor
	@echo "Installed. Next: book/instructors.md, 'The workflow' (the exchange, the configuration file, the course check)."

# JupyterHub's proxy, configurable-http-proxy, from npm into .venv/hub-proxy (not globally); the hub journey's test and
# hub/jupyterhub_config.py (LNKIT_HUB_PROXY) use it.
HUB_PROXY := $(VENV)/hub-proxy/node_modules/.bin/configurable-http-proxy
hub-proxy: $(HUB_PROXY)
$(HUB_PROXY):
	@command -v npm >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm; \
	  else echo "JupyterHub's proxy needs npm: sudo apt-get install -y npm" >&2; exit 1; fi; }
	npm install --prefix $(VENV)/hub-proxy --no-fund --no-audit --loglevel=error configurable-http-proxy

# pytest-xdist workers, each running whole files (their module fixtures set up once), the longest files first
# (tests/conftest.py): the long system tests overlap instead of queueing, and one worker's waits (servers, browsers,
# kernels starting) are the others' CPU time. On 2 quiet cores (fresh clones, one run each, an earlier commit) 3
# workers took 16.2 min and 2 took 16.9, about the same: the CPU is the limit (93-95% busy throughout). Now 3 take
# 13.2 min quiet and 21.0 under four CPU hogs; a third worker should claim a larger share of a busy machine, not
# measured against 2.
# TEST_WORKERS=0 runs everything in one process.
TEST_WORKERS ?= 3
test: $(VENV)/.installed-dev system hub-proxy
	python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

# The fast tier, for every change: ruff, then the unit tests (tests/unit: no root, no sandbox, no browser, no book).
check: $(VENV)/.installed-dev
	ruff check .
	python -m pytest tests/unit

# Side-by-side timings as ratios (python -m benchmarks --help for options; --device cuda for the GPU section).
bench: $(VENV)/.installed-torch
	python -m benchmarks

clean:
	rm -rf _build .pytest_cache .hypothesis
