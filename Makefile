# Two commands from a fresh clone: `make demo` and `make test`. Each builds .venv from requirements.txt when it is
# missing or older than requirements.txt.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The Spark 4 / Spark Connect lane: its own venv, so the default lane keeps Spark 3.5.
VENV4 := .venv-spark4
BIN4 := $(VENV4)/bin
STAMP4 := $(VENV4)/.installed
DEMO_RANGE := --from 2024-01-08 --to 2024-01-12

.PHONY: demo dashboard test test-fast test-connect coverage bench evidence lint clean

$(STAMP): requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $(STAMP)

$(STAMP4): requirements-spark4.txt
	test -x $(BIN4)/python || $(PYTHON) -m venv $(VENV4)
	$(BIN4)/python -m pip install --quiet --disable-pip-version-check -r requirements-spark4.txt
	touch $(STAMP4)

# The five scripts in one process, so they share one Spark session (stockpipe/demo.py prints each one's command:
# broken_stock_harvester.py and fixed_stock_harvester.py --source sample $(DEMO_RANGE), then daily_bars.py,
# maintenance.py and external_table.py, each runnable alone).
demo: $(STAMP)
	$(BIN)/python -m stockpipe.demo $(DEMO_RANGE)

# The dashboard on http://127.0.0.1:8501 (loopback only; add --server.address to share it), over the demo tables,
# which it builds first when they are missing.
dashboard: $(STAMP)
	test -d delta_tables/stocks_daily/_delta_log || $(MAKE) demo
	$(BIN)/python dashboard.py --server.address 127.0.0.1 --server.headless true --browser.gatherUsageStats false

# The whole suite on Spark 3.5 classic. Each engine is proved where the code branches by engine (the storage
# contract, maintenance, registering a name, clustering, history, commit races: on both); everything else runs once,
# on delta-rs (see tests/conftest.py). The ten slowest tests are printed, so growth shows where it happens.
test: $(STAMP)
	$(BIN)/python -m pytest -q --durations=10

# The developer loop (under a minute): everything but what is marked slow, i.e. the end-to-end modules, every
# delta-spark case, and the scenarios that cost seconds each (the market's derived tables, the storage contract's
# maintenance and many-partition cases, real-time pacing); `make test` and CI run them all.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

# Spark 4.0 through a local Spark Connect server (Java 17), as Databricks serverless runs it: what Connect changes,
# i.e. the tests marked `connect` (the storage contract on both engines, compat, sessions, the Spark transforms and
# bar rules, maintenance and the external table, the notebook, and the doors end to end once per engine).
# delta-spark's cases need Delta 4.0 jars: DELTA_JARS_DIR, or Maven.
test-connect: $(STAMP4)
	SPARK_REMOTE="local[2]" $(BIN4)/python -m pytest -q -m connect --durations=10

# Line and branch coverage of each lane (child processes included), as `make test` and `make test-connect` run them;
# slower than the plain runs (coverage traces every line). Reports in .coverage-lanes/.
COVERAGE_DIR := .coverage-lanes
coverage: $(STAMP) $(STAMP4)
	rm -rf $(COVERAGE_DIR) && mkdir -p $(COVERAGE_DIR)
	COVERAGE_FILE=$(COVERAGE_DIR)/classic $(BIN)/python -m coverage run -m pytest -q
	SPARK_REMOTE="local[2]" COVERAGE_FILE=$(COVERAGE_DIR)/connect $(BIN4)/python -m coverage run -m pytest -q -m connect
	for lane in classic connect; do \
		$(BIN)/python -m coverage combine -q --data-file=$(COVERAGE_DIR)/$$lane && \
		$(BIN)/python -m coverage report --data-file=$(COVERAGE_DIR)/$$lane > $(COVERAGE_DIR)/$$lane.txt && \
		echo "$$lane: $$(tail -1 $(COVERAGE_DIR)/$$lane.txt)"; \
	done

bench: $(STAMP)
	$(BIN)/python -m benchmarks.bench

# The outputs and pictures analysis.md and docs/ quote, regenerated from scratch on sample data (about 12 minutes on
# delta-spark; the dashboard's screenshot needs Debian's chromium).
EVIDENCE := docs/evidence
evidence: $(STAMP)
	rm -rf delta_tables && mkdir -p $(EVIDENCE)
	$(BIN)/python broken_stock_harvester.py --source sample $(DEMO_RANGE) > $(EVIDENCE)/broken.txt
	$(BIN)/python fixed_stock_harvester.py --source sample $(DEMO_RANGE) > $(EVIDENCE)/fixed.txt
	$(BIN)/python fixed_stock_harvester.py --source sample $(DEMO_RANGE) > $(EVIDENCE)/fixed_rerun.txt
	$(BIN)/python daily_bars.py > $(EVIDENCE)/daily.txt
	$(BIN)/python maintenance.py --json $(EVIDENCE)/maintenance_fixed.json \
		--chart $(EVIDENCE)/maintenance_fixed.png > $(EVIDENCE)/maintenance_fixed.txt
	$(BIN)/python maintenance.py --table-path delta_tables/stocks_raw \
		--chart $(EVIDENCE)/maintenance_broken.png > $(EVIDENCE)/maintenance_broken.txt
	$(BIN)/python external_table.py > $(EVIDENCE)/external_table.txt
	$(BIN)/python -m benchmarks.as_traded_demo > $(EVIDENCE)/as_traded.txt
	$(BIN)/python fixed_stock_harvester.py --source sample --from 2024-03-01 --to 2024-07-31 \
		--table-path delta_tables/market_demo/stocks_fixed > $(EVIDENCE)/market_demo.txt
	$(BIN)/python daily_bars.py --table-path delta_tables/market_demo/stocks_fixed >> $(EVIDENCE)/market_demo.txt
	$(BIN)/python fixed_stock_harvester.py --source sample --sample-faults $(DEMO_RANGE) \
		--table-path delta_tables/faults_demo/stocks_fixed > $(EVIDENCE)/faults_demo.txt
	$(BIN)/python daily_bars.py --table-path delta_tables/faults_demo/stocks_fixed >> $(EVIDENCE)/faults_demo.txt
	$(BIN)/python -m benchmarks.evidence_charts --base delta_tables --market-base delta_tables/market_demo \
		--faults-base delta_tables/faults_demo --out $(EVIDENCE)
	$(BIN)/python -m benchmarks.dashboard_shot --base delta_tables/market_demo --out docs/dashboard.png \
		> $(EVIDENCE)/dashboard.txt

# Style and types: ruff, then mypy over the package, the doors and the benchmarks (settings in pyproject.toml).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m mypy

clean:
	rm -rf delta_tables spark-warehouse metastore_db derby.log .pytest_cache
