"""One vocabulary for what became of a ticker in a harvest: the run's report, its end summary and its row in
`pipeline_runs` all say it with these words."""

from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    SUCCESS = "success"  # every requested trading day stored
    PARTIAL = "partial"  # stored, but the key's plan refused some days (the free tier refuses today)
    FAILED = "failed"  # retries exhausted, a past range refused, or not fetched because the run stopped
    NO_BARS = "no_bars"  # the answer held no bar at all: nothing was written for it
