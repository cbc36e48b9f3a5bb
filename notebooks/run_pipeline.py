# Databricks notebook source
# MAGIC %md
# MAGIC # The stock pipeline, from a notebook
# MAGIC
# MAGIC For a student who uploads this folder (or clones it as a Git folder) instead of deploying the bundle: the
# MAGIC fixed harvester, the daily table, maintenance and the external table, in order, then the daily table and the
# MAGIC last runs. Set the widgets above: the volume that holds the tables, and the secret scope holding the Massive
# MAGIC API key (leave it empty to run on the offline sample data).

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

steps = [
    ("fixed harvester", fixed_stock_harvester.main, ["--table-path", table, *key_flags]),
    ("daily table", daily_bars.main, ["--table-path", table]),
    ("maintenance", maintenance.main, ["--table-path", table, "--retain-hours", "168"]),
    ("external table", external_table.main, ["--table-path", table, "--catalog", dbutils.widgets.get("catalog")]),
]
exit_codes = {}
for name, main, argv in steps:
    exit_codes[name] = main(argv)
    print(f"{name}: exit {exit_codes[name]}")
# A partial harvest (exit 1: the free tier refuses the current day) stored the rest; anything else stops here.
if any(code not in (0, 1) for code in exit_codes.values()) or exit_codes["daily table"] != 0:
    raise RuntimeError(f"the pipeline failed: {exit_codes}")

# COMMAND ----------

display(spark.read.format("delta").load(f"{volume}/stocks_daily").orderBy("ticker", "trade_date"))

# COMMAND ----------

display(spark.read.format("delta").load(f"{volume}/pipeline_runs").orderBy("started_at", ascending=False).limit(10))
