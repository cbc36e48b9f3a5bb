"""The few failures users must act on. `main()` maps each to one readable line and an exit code."""


class PipelineError(Exception):
    """A failure the user can act on; its message is shown as-is, without a traceback."""

    exit_code = 1


class UsageError(PipelineError):
    """Bad command-line input: nothing was fetched or written."""

    exit_code = 2


class MissingKeyError(UsageError):
    """The real API was asked for without a key."""

    def __init__(self) -> None:
        super().__init__("--source api needs MASSIVE_API_KEY or POLYGON_API_KEY (or --secret-scope on Databricks)")


class MixedSourceError(UsageError):
    """A sample run asked to write into a table the API filled."""

    def __init__(self, path: str) -> None:
        super().__init__(
            f"{path} holds bars from the Massive API: refusing to add sample bars to it (use another --table-path, "
            "--source api, or --allow-mixed-source)"
        )


class KeyNotFoundError(PipelineError):
    """On Databricks, a harvest found no API key where it looked: it stops rather than fill the real table with
    sample data (exit 1: the job's configuration, not the command line, is wrong)."""

    def __init__(self, looked: str) -> None:
        super().__init__(f"no Massive API key found ({looked}); nothing was fetched or written. Add the key to the "
                         "secret scope, or pass --source sample for the offline demo")


class NoTradingDayError(PipelineError):
    """The range holds no trading day (a weekend, a holiday): nothing to fetch or write. Not a failure (exit 0), but
    the one line the user needs, in place of a line per ticker."""

    exit_code = 0

    def __init__(self, date_from: object, date_to: object) -> None:
        super().__init__(no_trading_day_line(date_from, date_to))


def no_trading_day_line(date_from: object, date_to: object) -> str:
    between = f"on {date_from}" if date_from == date_to else f"from {date_from} to {date_to}"
    return f"no NYSE trading day {between} (weekends and market holidays): nothing fetched, nothing written"


class StopError(PipelineError):
    """No further call can succeed, so no further ticker is fetched; what was fetched before is still stored."""


class KeyRejectedError(StopError):
    """The API does not know the key (401): no call with it can succeed, so the run stops."""


class ApiUnreachableError(StopError):
    """No call could connect to the API (refused, unknown host, no route) and none ever has in this run: every other
    ticker would fail the same way, so the run gives up on them at once."""


class FetchFailedError(PipelineError):
    """A ticker could not be fetched after the bounded retries."""

    def __init__(self, ticker: str, reason: str) -> None:
        super().__init__(f"{ticker}: {reason}")
        self.ticker = ticker
        self.reason = reason


class PlanRefusedError(FetchFailedError):
    """HTTP 403: the key's plan does not cover this one request (a timeframe, a data set). Other tickers and other
    dates can still succeed, so only this request fails."""


class NotDeltaTableError(PipelineError):
    """The path holds no Delta table."""

    def __init__(self, path: str) -> None:
        super().__init__(f"{path} is not a Delta table (no _delta_log): run the fixed harvester first")
        self.path = path


class EngineUnsupportedError(PipelineError):
    """The chosen storage engine cannot do what was asked."""


class ClusteringUnsupportedError(EngineUnsupportedError):
    """Liquid clustering asked of an engine that cannot create it (delta-rs). Exit 2 wherever it is found, before
    the fetch (--engine delta-rs) or after it (auto chose delta-rs): the fix is on the command line."""

    exit_code = 2

    def __init__(self, engine: str) -> None:
        super().__init__(
            f"--layout clustered needs liquid clustering (delta-spark 3.2+ or Databricks); the {engine} engine cannot "
            "create it: use --engine spark, or --layout partitioned (landed pages are kept, so a rerun makes no new "
            "call)"
        )


class DataLossError(PipelineError):
    """Row counts differ where they must not (e.g. before and after OPTIMIZE)."""
