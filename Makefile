# crm-intel: every target sets itself up from the repo's own files.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA_DIR ?= data
MAVEN_DIR ?= ../shared/datasets/maven_crm
CDNOW_FILE ?= ../shared/datasets/cdnow/CDNOW_sample.txt
PYTEST_ARGS ?=
# The suite keeps both cores busy on two pytest-xdist workers; each takes whole test files, so a
# module's fixtures are built once (tests/conftest.py starts the slowest files first).
TEST_WORKERS ?= 2
PORT ?= 3000
FROM ?=
FORMAT ?= contract

.DEFAULT_GOAL := help

help: ## List every target with what it does
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## Create .venv and install crm-intel with its dev extra

demo: $(STAMP) ## Main job on embedded defaults: demo CRM → features → both models → attribution report → scoring API
	$(BIN)/crm-intel simulate --data-dir $(DATA_DIR) --seed 7 --lifetime-truth
	$(BIN)/crm-intel features build --data-dir $(DATA_DIR)
	$(BIN)/crm-intel features apply --data-dir $(DATA_DIR)
	$(BIN)/crm-intel features materialize --data-dir $(DATA_DIR)
	$(BIN)/crm-intel train lead --data-dir $(DATA_DIR)
	$(BIN)/crm-intel train churn --data-dir $(DATA_DIR)
	$(BIN)/crm-intel attribution run --data-dir $(DATA_DIR) --out $(DATA_DIR)/attribution/credit.parquet
	$(BIN)/crm-intel attribution report --data-dir $(DATA_DIR) --out $(DATA_DIR)/attribution/report.html
	$(BIN)/crm-intel report funnel --data-dir $(DATA_DIR) --out $(DATA_DIR)/reports/funnel.html
	$(BIN)/crm-intel value accounts --data-dir $(DATA_DIR) --out $(DATA_DIR)/value/accounts.csv
	@if [ -f "$(CDNOW_FILE)" ]; then \
		$(BIN)/crm-intel value customers --data-dir $(DATA_DIR) --purchases $(CDNOW_FILE) \
			--calibration-end 1997-09-30 --holdout-end 1998-06-30 --out $(DATA_DIR)/value/customers.csv; \
	else echo "($(CDNOW_FILE) not found: skipping the customer value example)"; fi
	@if [ -d "$(MAVEN_DIR)" ]; then \
		$(BIN)/crm-intel import --maven $(MAVEN_DIR) --data-dir $(DATA_DIR)/maven; \
	else echo "($(MAVEN_DIR) not found: skipping the Maven CRM import)"; fi
	@echo "Attribution report for marketers: $(DATA_DIR)/attribution/report.html"
	@echo "Funnel cockpit for sales and marketing: $(DATA_DIR)/reports/funnel.html"
	@echo "Account value: $(DATA_DIR)/value/accounts.html"
	@echo "Models and runs: $(BIN)/mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db"
	@echo "Notebooks: $(BIN)/jupyter lab notebooks/"
	@# prints "starting…" at once, then the address and a curl example once /readyz answers
	$(BIN)/crm-intel serve --data-dir $(DATA_DIR) --port $(PORT)

quickstart: $(STAMP) ## Your CRM's export → a serving API: make quickstart FROM=DIR FORMAT=salesforce|hubspot|contract|maven
	@if [ -z "$(FROM)" ]; then \
		echo "give FROM=<folder of your CRM's export> and FORMAT=salesforce|hubspot|contract|maven"; \
		exit 2; \
	fi
	$(BIN)/crm-intel quickstart --from $(FROM) --format $(FORMAT) --data-dir $(DATA_DIR) --port $(PORT)

test: $(STAMP) ## Run the whole test suite (unit, integration, model)
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

test-unit: $(STAMP) ## Run only the fast unit tests
	$(BIN)/pytest -m unit -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

lint: $(STAMP) ## ruff (lint + format check), mypy and the layer contract (lint-imports)
	$(BIN)/ruff check crm simulator features training serving reports crm_intel monitoring tests benchmarks
	$(BIN)/ruff format --check crm simulator features training serving reports crm_intel monitoring tests benchmarks
	$(BIN)/mypy crm simulator features training serving reports crm_intel monitoring
	$(BIN)/lint-imports

format: $(STAMP) ## Format and autofix with ruff
	$(BIN)/ruff format crm simulator features training serving reports crm_intel monitoring tests benchmarks
	$(BIN)/ruff check --fix crm simulator features training serving reports crm_intel monitoring tests benchmarks

bench-simulate: $(STAMP) ## Benchmark: simulate 10 million interactions (time, peak memory)
	$(BIN)/python benchmarks/simulate.py

bench-features: $(STAMP) ## Benchmark: feature build, training set, materialize, online read (vs Feast)
	$(BIN)/python benchmarks/features.py

bench-features-scale: $(STAMP) ## Benchmark: feature build at 10M and 100M interactions, DuckDB vs Spark local vs pandas (~1 h, ~15 GB of /tmp)
	$(BIN)/python benchmarks/features.py --by-engine --sizes 10M 20M 100M --pandas-max 20M

bench-online: $(STAMP) ## Benchmark: materialise 100k leads x 64 features and read one lead, SQLite vs Redis (needs redis-server)
	$(BIN)/python benchmarks/online_store.py

bench-train: $(STAMP) ## Benchmark: train on 1M lead snapshots (vs sklearn HistGradientBoosting)
	$(BIN)/python benchmarks/train.py

bench-attribution: $(STAMP) ## Benchmark: 1M journeys per model and the journey families (vs ChannelAttribution; bench extra)
	$(BIN)/pip install -q -e '.[dev,bench]'
	$(BIN)/python benchmarks/attribution.py
	$(BIN)/python benchmarks/attribution_families.py --journeys 120000 --seeds 1 2 3 --bootstrap 20
	$(BIN)/python benchmarks/attribution_families.py --journeys 1000000 --seeds 1 --no-candidates \
		--out benchmarks/results/attribution-families-1m.json

bench-pages: $(STAMP) ## Benchmark: write the attribution page and the funnel cockpit on the demo CRM (time, weight)
	$(BIN)/python benchmarks/pages.py

bench-value: $(STAMP) ## Benchmark: BG/NBD and Gamma-Gamma on CDNOW's sample and master file (fit time, holdout error)
	$(BIN)/python benchmarks/customer_value.py

bench-serve: $(STAMP) ## Benchmark: scoring API latency/throughput (vs mlflow models serve), loopback only
	$(BIN)/python benchmarks/serve.py

bench-dedupe: $(STAMP) ## Benchmark: duplicate leads in 1M lead records with Splink on DuckDB (time, memory, precision/recall)
	$(BIN)/python benchmarks/dedupe.py

bench: bench-simulate bench-features bench-online bench-train bench-attribution bench-pages bench-value bench-serve bench-dedupe ## Run every benchmark (writes benchmarks/results/*.json)

clean: ## Remove the data directory and caches (keeps .venv)
	rm -rf $(DATA_DIR) .pytest_cache .ruff_cache .mypy_cache

.PHONY: help install demo test test-unit lint format bench bench-simulate bench-features bench-features-scale bench-online bench-train bench-attribution bench-pages bench-value bench-serve bench-dedupe clean
