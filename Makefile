# cvtune — every target installs what it needs; nothing relies on a hand-prepared machine.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_HOME ?= $(CURDIR)/.demo

.PHONY: install chromium test test-fast lint demo demo-sagemaker clean bench

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

# Headless Chromium for tests/test_browser.py: Debian's package (playwright cannot download its own
# browsers here); installed only when missing.
chromium:
	@command -v chromium >/dev/null 2>&1 || { apt-get update && apt-get install -y --no-install-recommends chromium; }

test: install chromium
	$(PY) -m pytest -q -p no:cacheprovider

test-fast: install
	$(PY) -m pytest -q -p no:cacheprovider -m "not stack"

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# The whole pipeline on the embedded default: local warm pool, throwaway AIRFLOW_HOME on SQLite.
demo: export AIRFLOW_HOME := $(DEMO_HOME)/airflow
demo: export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
demo: export AIRFLOW__CORE__LOAD_EXAMPLES := False
demo: export AIRFLOW__LOGGING__LOGGING_LEVEL := INFO
demo: export AIRFLOW_CONN_CVTUNE_DEFAULT := {"conn_type": "cvtune", "extra": {"backend": "local", "artifact_root": "$(DEMO_HOME)/artifacts", "workers": 2}}
demo: install
	rm -rf $(DEMO_HOME) && mkdir -p $(AIRFLOW_HOME)
	@echo "==> airflow db migrate (SQLite in $(AIRFLOW_HOME))"
	$(VENV)/bin/airflow db migrate > $(DEMO_HOME)/db-migrate.log 2>&1 || (tail -40 $(DEMO_HOME)/db-migrate.log; exit 1)
	@echo "==> airflow dags test cv_tuning_pipeline (log: $(DEMO_HOME)/dags-test.log)"
	$(VENV)/bin/airflow dags test cv_tuning_pipeline > $(DEMO_HOME)/dags-test.log 2>&1 || (grep -E "ERROR|Error|Traceback" -A5 $(DEMO_HOME)/dags-test.log | tail -60; exit 1)
	@grep -E "trial [0-9]+/[0-9]+ " $(DEMO_HOME)/dags-test.log | sed -E 's/^.*\] (trial .*) \[cvtune.tuner\].*$$/  \1/' | tail -5
	$(PY) include/demo_headline.py $(DEMO_HOME)/artifacts

# The same DAG on the SageMaker emulator (moto S3 + emulated training/transform jobs, scaled clock).
demo-sagemaker: install
	$(PY) include/demo_sagemaker.py $(CURDIR)/.demo-sagemaker

bench: install
	for b in warm_pool vs_gridsearch vs_optuna scale early_stopping completion bayes_vs_random import_time; do $(PY) benchmarks/$$b.py || exit 1; done

clean:
	rm -rf $(VENV) $(DEMO_HOME) .demo-sagemaker cvtune-artifacts .pytest_cache
