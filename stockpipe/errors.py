"""The few failures users must act on. `main()` maps each to one readable line and an exit code."""


class PipelineError(Exception):
    """A failure the user can act on; its message is shown as-is, without a traceback."""

    exit_code = 1


class UsageError(PipelineError):
    """Bad command-line input: nothing was fetched or written."""

    exit_code = 2


class KeyRejectedError(PipelineError):
    """The API refused the key (401) or the plan (403). Retrying cannot help."""


class FetchFailedError(PipelineError):
    """A ticker could not be fetched after the bounded retries."""

    def __init__(self, ticker: str, reason: str) -> None:
        super().__init__(f"{ticker}: {reason}")
        self.ticker = ticker
        self.reason = reason


class NotDeltaTableError(PipelineError):
    """The path holds no Delta table."""


class EngineUnsupportedError(PipelineError):
    """The chosen storage engine cannot do what was asked (e.g. liquid clustering on delta-rs)."""


class DataLossError(PipelineError):
    """Row counts differ where they must not (e.g. before and after OPTIMIZE)."""
