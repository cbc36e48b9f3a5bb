"""Small quality_checks and stocks_quarantine tables in the schemas the data-quality work writes them in, for the
operations tests (maintenance --all, the dashboard's operations view) to run before that work lands."""

from __future__ import annotations

import datetime as dt

QUALITY_CHECKS = ("run_id string, ticker string, trade_date date, check string, status string, observed double, "
                  "threshold double, message string, checked_at timestamp")
QUARANTINE = ("ticker string, trade_date date, timestamp_ms long, reason string, raw string, landed_page string, "
              "position int, run_id string, source string, fetched_at timestamp")
AT = dt.datetime(2024, 1, 12, 22, 0)


def check_row(run_id: str, ticker: str, check: str, status: str, day: dt.date | None = dt.date(2024, 1, 12)) -> tuple:
    return (run_id, ticker, day, check, status, 0.5, 0.9, f"{check} {status} for {ticker}", AT)


def quarantine_row(run_id: str, ticker: str, reason: str = "ohlc_order") -> tuple:
    return (ticker, dt.date(2024, 1, 12), 1705096800000, reason, '{"o": 1, "h": 0.5}', "page-00001.json", 3, run_id,
            "sample", AT)


def write_quality(spark, storage, base, checks: list[tuple], quarantined: list[tuple]) -> None:
    """Each table in as many appends as rows: a small file per run, as the pipeline leaves them."""
    for row in checks:
        storage.write(spark.createDataFrame([row], QUALITY_CHECKS), str(base / "quality_checks"), mode="append")
    for row in quarantined:
        storage.write(spark.createDataFrame([row], QUARANTINE), str(base / "stocks_quarantine"), mode="append")
