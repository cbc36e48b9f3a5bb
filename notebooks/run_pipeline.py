# Databricks notebook source
# MAGIC %md
# MAGIC # The stock pipeline, from a notebook
# MAGIC
# MAGIC For a student who uploads this folder (or clones it as a Git folder) instead of deploying the bundle: the
# MAGIC fixed harvester, the daily table, maintenance of every pipeline table and the external table, in order (a step
# MAGIC that fails stops the rest), then the daily table, the last runs and the last harvest's outcome per ticker. Set
# MAGIC the widgets above: the volume that holds the tables, and the secret scope holding the Massive API key (leave it
# MAGIC empty to run on the offline sample data). A day the key's plan refuses (the free tier refuses today) is a
# MAGIC warning and exit 0: the run is `partial` in `pipeline_runs`, not failed.

# COMMAND ----------

# MAGIC %pip install -r ../requirements-databricks.txt

# COMMAND ----------

dbutils.widgets.text("volume_path", "/Volumes/workspace/dataexpert/stocks", "Volume for the tables")
dbutils.widgets.text("secret_scope", "", "Secret scope with the API key (empty: sample data)")
dbutils.widgets.text("secret_key", "api_key", "Key name in the scope")
dbutils.widgets.text("catalog", "workspace", "Catalog for the external table")

# COMMAND ----------

import os
import sys

# The doors live in the repository's root, one folder up from this notebook.
root = os.path.abspath(os.path.join(os.getcwd(), ".."))
if root not in sys.path:
    sys.path.insert(0, root)

volume = dbutils.widgets.get("volume_path").rstrip("/")
secret_scope = dbutils.widgets.get("secret_scope").strip()
key_flags = ["--secret-scope", secret_scope, "--secret-key", dbutils.widgets.get("secret_key")] if secret_scope else []
table = f"{volume}/stocks_fixed"

# COMMAND ----------

import daily_bars
import external_table
import fixed_stock_harvester
import maintenance

source = ["--source", "api" if secret_scope else "sample"]
steps = [
    ("fixed harvester", fixed_stock_harvester.main, ["--table-path", table, *source, *key_flags]),
    ("daily table", daily_bars.main, ["--table-path", table]),
    ("maintenance", maintenance.main, ["--table-path", table, "--all", "--retain-hours", "168"]),
    ("external table", external_table.main, ["--table-path", table, "--catalog", dbutils.widgets.get("catalog")]),
]
exit_codes = {}
for name, main, argv in steps:
    exit_codes[name] = main(argv)
    print(f"{name}: exit {exit_codes[name]}")
    if exit_codes[name] != 0:  # 1: a real failure, 2: bad input; each said why in its `error:` lines above
        raise RuntimeError(f"the pipeline stopped at the {name} (exit {exit_codes[name]}): {exit_codes}")

# COMMAND ----------

display(spark.read.format("delta").load(f"{volume}/stocks_daily").orderBy("ticker", "trade_date"))

# COMMAND ----------

runs = spark.read.format("delta").load(f"{volume}/pipeline_runs")
display(runs.orderBy("started_at", ascending=False).limit(10)
        .select("started_at", "script", "status", "exit_code", "duration_s", "rows_written", "message"))

# COMMAND ----------

last_harvest = runs.filter("script = 'fixed_stock_harvester'").orderBy("started_at", ascending=False).limit(1)
display(last_harvest.selectExpr("run_id", "explode(ticker_outcomes) AS o").select("run_id", "o.*"))
