"""The few failures users must act on. `main()` maps each to one readable line and an exit code."""


class PipelineError(Exception):
    """A failure the user can act on; its message is shown as-is, without a traceback."""

    exit_code = 1


class UsageError(PipelineError):
    """Bad command-line input: nothing was fetched or written."""

    exit_code = 2


class KeyRejectedError(PipelineError):
    """The API does not know the key (401): no call with it can succeed, so the run stops."""


class ApiUnreachableError(PipelineError):
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


class EngineUnsupportedError(PipelineError):
    """The chosen storage engine cannot do what was asked (e.g. liquid clustering on delta-rs)."""


class DataLossError(PipelineError):
    """Row counts differ where they must not (e.g. before and after OPTIMIZE)."""
