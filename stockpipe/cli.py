"""What every door shares: argument types that validate before any network or Spark work, `build_config` (argparse
in, HarvestConfig out), logging that never shows the key, the `door` skeleton that turns a user-facing error into one
readable line and an exit code, and tables people can read."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from stockpipe import DEFAULT_TICKERS
from stockpipe.config import FAST_CONCURRENCY, SAMPLE_CONCURRENCY, SPLITS_TABLE, FileEndpoint, HarvestConfig, Source
from stockpipe.errors import KeyNotFoundError, MissingKeyError, PipelineError, UsageError
from stockpipe.flatfiles.store import BUCKET as FLATFILES_BUCKET
from stockpipe.flatfiles.store import DEFAULT_URL as DEFAULT_FLATFILES_URL
from stockpipe.flatfiles.store import Credentials, S3Endpoint
from stockpipe.landing import default_landing_path
from stockpipe.layout import PARTITIONED, Layout
from stockpipe.market_calendar import new_york_today, trading_days
from stockpipe.massive import DEFAULT_BASE_URL, FREE_TIER_CALLS_PER_MINUTE, redact
from stockpipe.paths import beside, local_path, require_delta_log
from stockpipe.runlog import Run
from stockpipe.sample.source import SampleFlatFiles, SampleSource
from stockpipe.session import is_databricks

log = logging.getLogger("stockpipe")

# Exchange symbols: ASCII letters and digits with '.' or '-' classes (BRK.B, BF-B). Nothing path-like gets through.
# Matched before any case change: str.upper() turns some non-ASCII letters into ASCII ("ß" -> "SS").
TICKER_PATTERN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9]|[.\-](?=[A-Za-z0-9])){0,11}")
API_KEY_VARIABLES = ("MASSIVE_API_KEY", "POLYGON_API_KEY")
# The flat files' credentials: not the REST key (the provider's help says so; some accounts reuse it as the secret).
S3_VARIABLES = ("MASSIVE_S3_ACCESS_KEY_ID", "MASSIVE_S3_SECRET_ACCESS_KEY")
S3_SECRET_KEYS = ("massive_s3_access_key_id", "massive_s3_secret_access_key")  # their names in a secret scope
# "delta-spark" is accepted too: it is the name every summary prints, so a user can pass it straight back.
ENGINES = ("auto", "spark", "delta-spark", "delta-rs")


# Most tickers hold at most this many symbols; a list file of the whole market holds ~11,000.
MAX_TICKER_FILE_BYTES = 1 << 20


def parse_tickers(text: str) -> tuple[str, ...]:
    """Comma-separated symbols, or `@FILE`: one a line, `#` starting a comment. A symbol is taken in capitals unless
    it mixes cases on purpose, as the provider's preferred shares do (`MRTpA`); class shares keep their dot
    (`BRK.B`)."""
    if text.startswith("@"):
        return _ticker_file(text[1:])
    return _symbols([raw.strip() for raw in text.split(",")], "--tickers")


def _ticker_file(name: str) -> tuple[str, ...]:
    path = Path(name).expanduser()
    # Said back in one line whatever was typed: a name with a carriage return or a newline is shown quoted.
    name = name if name.isprintable() else repr(name)
    try:
        if path.stat().st_size > MAX_TICKER_FILE_BYTES:
            raise UsageError(f"--tickers @{name}: larger than {MAX_TICKER_FILE_BYTES:,} bytes; is it a list of "
                             "symbols?")
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--tickers @{name}: cannot read it ({getattr(exc, 'strerror', None) or exc})") from None
    found = [line.split("#", 1)[0].strip() for line in lines]
    return _symbols([symbol for symbol in found if symbol], f"--tickers @{name}")


def _symbols(raws: list[str], where: str) -> tuple[str, ...]:
    tickers: list[str] = []
    for raw in raws:
        if not TICKER_PATTERN.fullmatch(raw):
            raise UsageError(f"{where}: {raw!r} is not an exchange symbol (letters, digits, '.' or '-')")
        symbol = raw if raw != raw.lower() and raw != raw.upper() else raw.upper()
        if symbol not in tickers:
            tickers.append(symbol)
    if not tickers:
        raise UsageError(f"{where}: give at least one symbol")
    return tuple(tickers)


def parse_date(text: str, flag: str) -> dt.date:
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            raise ValueError
        return dt.date.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{flag}: {text!r} is not a date (YYYY-MM-DD)") from None


def previous_session(today: dt.date) -> dt.date:
    """The last NYSE session before `today`."""
    return trading_days(today - dt.timedelta(days=14), today - dt.timedelta(days=1))[-1]


def resolve_dates(date_from: str | None, date_to: str | None, today: dt.date | None = None) -> tuple[dt.date, dt.date]:
    """Inclusive range; the default is the last 5 calendar days up to New York today, like the starter."""
    today = today or new_york_today()
    end = parse_date(date_to, "--to") if date_to is not None else today
    start = parse_date(date_from, "--from") if date_from is not None else end - dt.timedelta(days=4)
    if start > end:
        raise UsageError(f"--from {start} is after --to {end}")
    if end > today:
        raise UsageError(f"--to {end} is in the future (New York today is {today})")
    if start.year < 2000:
        raise UsageError(f"--from {start} is before 2000: the calendar and the API start later")
    return start, end


def validate_table_path(text: str, flag: str = "--table-path") -> str:
    if not text or not text.strip():
        raise UsageError(f"{flag}: empty path")
    if any(ch in text for ch in "`'\"\n\r\x00"):
        raise UsageError(f"{flag}: {text!r} contains a quote, backquote or control character")
    local = local_path(text)
    if local is None:
        return text.rstrip("/")  # only Spark can reach it: the engine checks it when it is opened
    path = local.expanduser().resolve()
    if path == Path(path.anchor) or path == Path.home().resolve():
        raise UsageError(f"{flag}: refusing {path}: a table needs a folder of its own")
    if path.exists() and not path.is_dir():
        raise UsageError(f"{flag}: {path} is a file, not a table folder")
    return str(path)


def require_writable(path: str, flag: str = "--table-path") -> None:
    """A table folder this run can create or write into, checked before any call or Spark start, so a mistyped path
    (`/proc/x`, a file's name with `/x` after it, a read-only disk) is one line and exit 2 instead of a traceback
    after the fetch. The check makes a folder in the nearest existing one and removes it at once: nothing stays."""
    local = local_path(path)
    if local is None:
        return  # only Spark can reach it: the engine answers for it when it is opened
    target = local.expanduser()
    existing = target
    try:
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
    except OSError as exc:
        raise UsageError(f"{flag}: cannot use {target}: {exc.strerror or exc}") from None
    if not existing.is_dir():
        raise UsageError(f"{flag}: cannot use {target}: {existing} is a file, not a folder")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".stocks-write-check-", dir=existing))
    except OSError as exc:
        raise UsageError(f"{flag}: cannot create {target}: {existing} does not take new folders "
                         f"({exc.strerror or exc})") from None


def table_path_or_default(value: str | None, default: Callable[[], str], flag: str = "--table-path") -> str:
    """The user's path, validated (an empty one is an error, not the default), or the default."""
    return validate_table_path(value, flag) if value is not None else default()


def existing_table_path(value: str | None, base_path: Callable[[str], str]) -> str:
    """--table-path of a table that must already exist (default: the fixed table), checked before Spark starts."""
    path = table_path_or_default(value, lambda: base_path("stocks_fixed"))
    require_delta_log(path)
    return path


def api_key_from_env() -> str | None:
    for name in API_KEY_VARIABLES:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit 2 through UsageError, like every other bad input."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def new_parser(description: str, verbose: str) -> argparse.ArgumentParser:
    """A door's parser; `verbose` says what -v adds to that door's log."""
    parser = _Parser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help=f"log diagnostics: {verbose}")
    return parser


def default_table(name: str) -> str:
    """A table's default path as --help shows it: the value, not the function that computes it."""
    return f"$STOCKS_BASE_PATH/{name}, else delta_tables/{name}"


def add_engine_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--engine", choices=ENGINES, default="auto",
        help="Delta engine: spark (delta-spark), delta-rs, or auto (delta-spark when its jars load) [auto]",
    )


def add_harvest_args(parser: argparse.ArgumentParser, table: str, *, flatfiles: bool = False) -> None:
    parser.add_argument("--tickers", default=",".join(DEFAULT_TICKERS),
                        help="comma-separated symbols, or @FILE (one a line, # comments) [the eight]")
    parser.add_argument("--from", dest="date_from", metavar="YYYY-MM-DD", help="first day [to minus 4 days]")
    parser.add_argument("--to", dest="date_to", metavar="YYYY-MM-DD",
                        help="last day, inclusive [New York today; with --source flatfiles, the session before it: "
                             "the latest a day's file is published for]")
    parser.add_argument(
        "--source", choices=("api", "sample", "flatfiles") if flatfiles else ("api", "sample"),
        help="api (needs MASSIVE_API_KEY or POLYGON_API_KEY) or sample (offline loopback fake)"
        + (", or flatfiles (the provider's daily files: a day of every ticker a file; needs MASSIVE_S3_ACCESS_KEY_ID"
           " and MASSIVE_S3_SECRET_ACCESS_KEY, and without them serves the sample market's files offline)"
           if flatfiles else "") + " [api when a key is set, else sample]",
    )
    if flatfiles:
        parser.add_argument("--flatfiles-url", metavar="URL",
                            help=f"the flat files' S3 endpoint, bucket {FLATFILES_BUCKET} [{DEFAULT_FLATFILES_URL}]")
        parser.add_argument("--universe", choices=("list", "market"), default="list",
                            help="list: the --tickers; market: every ticker each day's flat file holds (with "
                            "--source flatfiles) [list]")
    parser.add_argument("--base-url", help="API origin [MASSIVE_BASE_URL or https://api.massive.com]")
    parser.add_argument(
        "--calls-per-minute", type=positive_int,
        help=f"pacing: calls allowed per rolling minute [{FREE_TIER_CALLS_PER_MINUTE} for the API; unpaced for sample]",
    )
    parser.add_argument(
        "--concurrency", type=positive_int,
        help="calls in flight at once, all sharing one rate-limit window and one 429 back-off [1 at up to 60 calls "
        f"a minute (the free tier's {FREE_TIER_CALLS_PER_MINUTE}), {SAMPLE_CONCURRENCY} for the sample unpaced, "
        f"{FAST_CONCURRENCY} when faster]",
    )
    parser.add_argument("--table-path", help=f"Delta table folder [{default_table(table)}]")
    parser.add_argument("--landing-path", help="raw page landing zone [<table-path>_landing]")
    parser.add_argument("--refetch", action="store_true", help="ignore landed pages and fetch everything again")
    parser.add_argument(
        "--sample-faults", action="store_true",
        help="with --source sample: inject the imperfections of real feeds (a bad print, missing minutes, a malformed "
        "bar, a short answer) so the quality checks and the quarantine have something to show",
    )
    parser.add_argument("--secret-scope", help="Databricks secret scope holding the API key"
                        + (f" (and the flat files' {' and '.join(S3_SECRET_KEYS)})" if flatfiles else ""))
    parser.add_argument("--secret-key", default="massive_api_key", help="key name in --secret-scope")
    add_engine_arg(parser)


class RedactFilter(logging.Filter):
    """Belt and braces: the key travels only in a header, but no log record may ever show it."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            message = record.getMessage()
            for secret in self.secrets:
                message = message.replace(secret, "***")
            record.msg, record.args = message, None
        return True


def setup_logging(verbose: bool = False, secrets: Iterable[str] = ()) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    environment = [api_key_from_env() or "", *(os.environ.get(name, "") for name in S3_VARIABLES)]
    handler.addFilter(RedactFilter([*secrets, *environment]))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    level = logging.DEBUG if verbose else logging.INFO
    for name in ("stockpipe", "databricks_utils", "__main__"):
        logging.getLogger(name).setLevel(level)
    for noisy in ("py4j", "urllib3", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def door(parser: argparse.ArgumentParser, argv: list[str] | None, body: Callable[[argparse.Namespace, Run], int],
         script: str) -> int:
    """Every door's main(): parse, set up logging, run the body with its `Run` (whose row in pipeline_runs is written
    as it starts and replaced as it ends, whatever happened); a user-facing failure is one line and an exit code
    (see `run`)."""

    def main() -> int:
        arguments = list(sys.argv[1:] if argv is None else argv)
        args = parser.parse_args(argv)
        setup_logging(args.verbose)
        this_run = Run(script, arguments, secrets=[api_key_from_env() or "",
                                                   *(os.environ.get(name, "") for name in S3_VARIABLES)])
        code, message = 1, None
        try:
            code = body(args, this_run)
            message = next(iter(this_run.errors or this_run.warnings), None) or "; ".join(this_run.notes) or None
            return code
        except PipelineError as exc:
            code, message = exc.exit_code, str(exc)
            raise
        except KeyboardInterrupt:
            code, message = 130, "interrupted"
            raise
        except Exception as exc:  # a bug: logged as failed, then the traceback a bug deserves
            code, message = 1, f"{type(exc).__name__}: {exc}"
            raise
        finally:
            this_run.finish(code, message)

    return run(main)


def mask_secrets(run: Run, cfg: HarvestConfig) -> None:
    """Every secret the run was configured with masked in what it logs and writes (the REST key, the flat files'
    credentials, wherever they came from), and where its data comes from recorded."""
    secrets = [cfg.api_key]
    if isinstance(cfg.flatfiles, S3Endpoint):
        secrets += [cfg.flatfiles.credentials.access_key_id, cfg.flatfiles.credentials.secret_access_key]
    for handler in logging.getLogger().handlers:
        for found in handler.filters:
            if isinstance(found, RedactFilter):
                found.secrets += [s for s in secrets if s and s not in found.secrets]
    if cfg.flatfiles is not None:
        url = cfg.flatfiles.url if isinstance(cfg.flatfiles, S3Endpoint) else "http://127.0.0.1"
        run.calls_api(cfg.flatfiles.name, url)
    else:
        run.calls_api(cfg.source, cfg.base_url)
    run.secrets += [s for s in secrets if s]


def report_errors(lines: Sequence[str], this_run: Run | None = None, *, warnings: Sequence[str] = (),
                  strict: bool = False) -> int:
    """The run's exit code, after one stderr line for each reason: every `lines` entry (a real failure: a rejected
    key, an unreachable API, retries exhausted, a guard tripped) is an `error:` and makes it 1; every `warnings`
    entry (what the key's plan refused) is a `warning:` and leaves it 0, or, with `strict`, an `error:` that makes
    it 1. The key is masked."""
    key = api_key_from_env() or ""
    for line in warnings:
        print(f"{'error' if strict else 'warning'}: {redact(line, key)}", file=sys.stderr)
    for line in lines:
        print(f"error: {redact(line, key)}", file=sys.stderr)
    if this_run is not None:
        this_run.errors, this_run.warnings = list(lines), list(warnings)
    return 1 if lines or (strict and warnings) else 0


def run(main: Callable[[], int]) -> int:
    """Map user-facing failures to one line on stderr and an exit code; tracebacks are for bugs only."""
    try:
        return main()
    except PipelineError as exc:
        # The client already redacts at the source; the environment's key is masked once more here.
        message = redact(str(exc), api_key_from_env() or "")
        print(f"{'error' if exc.exit_code else 'warning'}: {message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted: landed pages are kept; rerun to resume", file=sys.stderr)
        return 130


def build_config(
    args: argparse.Namespace,
    *,
    default_table_path: Callable[[], str],
    secret: Callable[[str, str], str | None],
    layout: Layout = PARTITIONED,
) -> HarvestConfig:
    """Argparse in, config out: everything the user typed is validated before any network or Spark work."""
    tickers = parse_tickers(args.tickers)
    date_to_text = args.date_to
    if args.source == "flatfiles" and date_to_text is None:
        # A day's file is published about 11:00 New York the next day: the latest a run can take is the previous
        # session, so a nightly run is not partial every night for want of today's file.
        date_to_text = previous_session(new_york_today()).isoformat()
    date_from, date_to = resolve_dates(args.date_from, date_to_text)
    table_path = table_path_or_default(args.table_path, default_table_path)
    landing_path = table_path_or_default(args.landing_path, lambda: default_landing_path(table_path), "--landing-path")
    splits_path = table_path_or_default(getattr(args, "splits_path", None), lambda: beside(table_path, SPLITS_TABLE),
                                        "--splits-path")
    for path, flag in ((table_path, "--table-path"), (landing_path, "--landing-path"), (splits_path, "--splits-path")):
        require_writable(path, flag)
    api_key = api_key_from_env() or ""
    if not api_key and args.secret_scope:
        api_key = secret(args.secret_scope, args.secret_key) or ""
    if not api_key and args.source not in ("sample", "flatfiles") and is_databricks():
        # A job on a cluster that quietly harvested sample data into the real table would look like it worked.
        looked = (f"secret scope {args.secret_scope!r}, key {args.secret_key!r}" if args.secret_scope else
                  "no --secret-scope given, and neither " + " nor ".join(API_KEY_VARIABLES) + " is set")
        raise KeyNotFoundError(looked)
    if getattr(args, "universe", "list") == "market" and args.source != "flatfiles":
        raise UsageError("--universe market needs --source flatfiles: the REST API would take ~11,000 calls a night "
                         "(37 hours on the free key); market_daily.py stores the whole market's daily bars")
    if args.source == "flatfiles":
        return _flatfiles_config(args, tickers, date_from, date_to, table_path, landing_path, splits_path, layout,
                                 api_key, secret)
    source: Source = "api" if args.source == "api" or (args.source is None and api_key) else "sample"
    if source == "api" and not api_key:
        raise MissingKeyError()
    if args.source is None:
        log.info(
            "source: %s", "the Massive API (key from the environment)" if source == "api"
            else "offline sample data from a loopback fake of the Massive API (set MASSIVE_API_KEY for real data)"
        )
    base_url = args.base_url or os.environ.get("MASSIVE_BASE_URL") or DEFAULT_BASE_URL
    if not base_url.startswith(("http://", "https://")):
        raise UsageError(f"--base-url: {base_url!r} is not an http(s) URL")
    return HarvestConfig(
        tickers=tickers, date_from=date_from, date_to=date_to, table_path=table_path, landing_path=landing_path,
        splits_path=splits_path,
        source=source, base_url=base_url, api_key=api_key, calls_per_minute=args.calls_per_minute,
        layout=layout, refetch=args.refetch,
        concurrency=args.concurrency,
        allow_shrink=getattr(args, "allow_shrink", False),
        allow_mixed_source=getattr(args, "allow_mixed_source", False),
        sample_faults=args.sample_faults,
        # The one place a run's source is chosen: the API (the client's own endpoint), or the offline sample.
        endpoint=SampleSource(tickers, args.sample_faults) if source == "sample" else None,
    )


def _flatfiles_config(args: argparse.Namespace, tickers: tuple[str, ...], date_from: dt.date, date_to: dt.date,
                      table_path: str, landing_path: str, splits_path: str, layout: Layout, api_key: str,
                      secret: Callable[[str, str], str | None]) -> HarvestConfig:
    """A flat-file run: the provider's endpoint with the S3 credentials (the environment's, or the secret scope's on
    Databricks), or, without any and off Databricks, the sample market's files from a loopback stand-in. The REST
    calls beside it (reference data) use the API key as the REST path does, or the sample's when it is the sample."""
    key_id, secret_key = (os.environ.get(name, "").strip() for name in S3_VARIABLES)
    if not (key_id and secret_key) and args.secret_scope:
        key_id, secret_key = (secret(args.secret_scope, name) or "" for name in S3_SECRET_KEYS)
    url = args.flatfiles_url
    if url is not None and not url.startswith(("http://", "https://")):
        raise UsageError(f"--flatfiles-url: {url!r} is not an http(s) URL")
    market = args.universe == "market"
    files: FileEndpoint
    if key_id and secret_key:
        files = S3Endpoint((url or DEFAULT_FLATFILES_URL).rstrip("/"), Credentials(key_id, secret_key))
    elif url is not None or is_databricks():
        where = (f"secret scope {args.secret_scope!r}, keys {' and '.join(S3_SECRET_KEYS)}" if args.secret_scope
                 else " and ".join(S3_VARIABLES) + " not set")
        raise KeyNotFoundError(f"flat-file credentials ({where})")
    else:
        log.info("source: the sample market's flat files from a loopback stand-in of the provider's S3 endpoint "
                 "(set %s for real files)", " and ".join(S3_VARIABLES))
        files = SampleFlatFiles()
    sample = files.name == "sample"
    base_url = args.base_url or os.environ.get("MASSIVE_BASE_URL") or DEFAULT_BASE_URL
    return HarvestConfig(
        tickers=() if market else tickers, date_from=date_from, date_to=date_to, table_path=table_path,
        landing_path=landing_path, splits_path=splits_path, source="flatfiles", base_url=base_url, api_key=api_key,
        calls_per_minute=args.calls_per_minute, layout=layout, refetch=args.refetch, concurrency=args.concurrency,
        allow_shrink=getattr(args, "allow_shrink", False),
        allow_mixed_source=getattr(args, "allow_mixed_source", False),
        # Reference data through the REST API: its key, or the sample's API beside the sample's files.
        endpoint=SampleSource(() if market else tickers) if sample else None,
        flatfiles=files, universe_market=market,
    )
