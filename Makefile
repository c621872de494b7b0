# Tributary developer commands. `make demo` and `make test` do all the setup on a fresh machine
# (Python 3.13 and Node 20+): a .venv with the pinned requirements and Azurite from npm.
SHELL := /bin/bash
# The app runs on Python 3.13 (README, "Python version"): the first interpreter below that runs.
# pyenv's shim for python3.13 exists even when 3.13 is not selected, so each one is tried.
PYTHON ?= $(shell for p in python3.13 $$HOME/.pyenv/versions/3.13*/bin/python3.13 /usr/local/bin/python3.13 /usr/bin/python3.13; do \
	"$$p" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' 2>/dev/null && { echo "$$p"; break; }; done)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | cksum | cut -d' ' -f1)
NODE_STAMP := node_modules/.installed-$(shell cksum < package.json | cut -d' ' -f1)
# The FunctionRpc protos the tests speak to the real worker with (tests/worker/protos.py says why apart).
PROTOS_STAMP := $(VENV)/worker-protos/.installed-$(shell cksum < tests/worker/protos.py | cut -d' ' -f1)

# Local runs talk to Azurite unless the environment or local.settings.json says otherwise.
export AzureWebJobsStorage ?= UseDevelopmentStorage=true

.PHONY: help venv node worker-protos kernels azurite azurite-stop demo test lint typecheck unit reliability bench fuzz clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(STAMP): requirements.txt requirements-dev.txt
	@test -n "$(PYTHON)" || { echo "Python 3.13 not found: install it (pyenv install 3.13) or pass PYTHON=/path/to/python3.13" >&2; exit 1; }
	@$(PY) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' 2>/dev/null || { rm -rf $(VENV); $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@rm -f $(VENV)/.installed-* && touch $@

$(NODE_STAMP): package.json
	npm install --no-audit --no-fund --loglevel=error
	@rm -f node_modules/.installed-* && touch $@

venv: $(STAMP) ## Create .venv with the pinned requirements

$(PROTOS_STAMP): $(STAMP) tests/worker/protos.py
	$(PY) -m tests.worker.protos $(VENV)/worker-protos
	@rm -f $(VENV)/worker-protos/.installed-* && touch $@

worker-protos: $(PROTOS_STAMP) ## Extract the Functions worker's compiled protos into .venv/worker-protos (tests only)

node: $(NODE_STAMP) ## Install Azurite from npm (pinned in package.json)

kernels: venv ## Build the pipeline's loops ahead of time (needs a C compiler; skipped when current)
	@$(PY) -m shared.pipeline.aot --optional

azurite: venv node ## Start Azurite in the background on 10000-10002 (idempotent)
	@$(PY) -m shared.dev.azurite start

azurite-stop: venv ## Stop the Azurite that `make azurite` started
	@$(PY) -m shared.dev.azurite stop

demo: kernels azurite ## Generate a day of Capture files into Azurite and run the whole pipeline
	$(PY) -m shared demo

lint: venv ## ruff
	$(PY) -m ruff check $(wildcard shared databricks_jobs tests function_app.py bench)

typecheck: venv ## mypy (strict on shared/ and databricks_jobs/)
	$(PY) -m mypy

test: venv node worker-protos kernels lint typecheck ## Lint, type-check and run the tests (they start their own Azurite)
	$(PY) -m pytest

unit: venv ## The unit tests only: no Node, no Azurite, no kernel build (numba compiles the loops)
	$(PY) -m pytest tests/unit -m "not azurite and not spark"

# The long reliability cases (tests/reliability, marked slow): make test runs the fast ones.
RELIABILITY_FIGURES := .reliability/figures.jsonl
reliability: venv node kernels ## Faults, races, soak and properties at length (and `make fuzz` if defined); prints a table of figures
	@mkdir -p .reliability && rm -f $(RELIABILITY_FIGURES)
	@status=0; \
	TRIBUTARY_LONG=1 TRIBUTARY_RELIABILITY_REPORT=$(abspath $(RELIABILITY_FIGURES)) \
		$(PY) -m pytest tests/reliability -q -p no:cacheprovider || status=1; \
	if grep -qE '^fuzz:' $(MAKEFILE_LIST); then $(MAKE) fuzz || status=1; \
	else echo "make fuzz: not defined (yet); decoder fuzzing skipped"; fi; \
	$(PY) -m tests.reliability.report $(RELIABILITY_FIGURES) || status=1; \
	exit $$status

bench: venv node kernels ## Run the benchmark; writes bench/results/latest.json and a chart
	$(PY) -m bench

# The fuzz campaign (tests/fuzz/): not part of `make test`. Seeds: the generator's files, and
# the real Capture files read in place when ../shared/real-world is present. Findings (crashes,
# hangs past -timeout, memory past -rss_limit_mb) land in $(FUZZ_DIR)/findings/.
FUZZ_SECONDS ?= 300
FUZZ_DIR ?= .fuzz
REAL_CAPTURE := $(wildcard $(CURDIR)/../shared/real-world/capture)
fuzz: venv kernels ## Fuzz the decode path for FUZZ_SECONDS (default 300) with atheris
	@mkdir -p $(FUZZ_DIR)/corpus $(FUZZ_DIR)/findings
	$(PY) -m tests.fuzz.seeds $(FUZZ_DIR)/seeds
	$(PY) -m tests.fuzz.fuzz_decode -max_total_time=$(FUZZ_SECONDS) -timeout=30 -rss_limit_mb=3072 \
		-max_len=131072 -print_final_stats=1 -artifact_prefix=$(FUZZ_DIR)/findings/ \
		$(FUZZ_DIR)/corpus $(FUZZ_DIR)/seeds $(REAL_CAPTURE)

clean: ## Remove local data (not the venv)
	rm -rf .azurite .lake .capture .demo .fuzz
