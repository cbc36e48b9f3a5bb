"""The dashboard: the pipeline's tables in a browser, read with delta-rs (no JVM, no writes).

    make dashboard                  # builds the demo tables first when they are missing
    python dashboard.py             # tables under STOCKS_BASE_PATH (default delta_tables); any `streamlit run` option
    streamlit run dashboard.py      # the same page; its first visitor waits for the page's imports

`python dashboard.py` starts Streamlit's server in this process after the page's libraries (pandas, altair, Arrow,
delta-rs) are imported here, so the first page a visitor opens does not wait for them (about 2 s on two cores).

The market: where the whole market's derived tables are stored (stocks_market_daily, stocks_market_breadth), any
stored day (the latest first) with its top movers up and down among names above a minimum price and dollar volume,
the most active by dollar volume, the breadth line over time, and a search for any ticker's split-adjusted history;
otherwise the harvested tickers on their latest stored day: top movers by total return, volatility leaders. Both
with the alerts (the warn and fail rows of quality_checks). Daily candlesticks from stocks_daily (as traded or
split-adjusted) with volume and the 20- and 50-day moving averages; one day's minute bars from stocks_fixed with
the pre-market, regular and post-market sessions shaded and 5-, 15- and 60-minute moving averages; operations: the
last harvest at a glance and the last runs from pipeline_runs, each run's outcome per ticker and its failing checks;
each table's health. Each view reads only what it shows: the whole market one day's file of stocks_market_daily
(partitioned by trade_date) and the small breadth table, a searched ticker its rows of the chosen span; the eight
tickers' market and daily views stocks_daily, the intraday view one (ticker, trade_date) file.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import altair as alt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `streamlit run` puts the script's folder first anyway

from stockpipe.config import BREADTH_TABLE, MARKET_DAILY_TABLE
from stockpipe.market_calendar import session_hours
from stockpipe.readers import Health, health, open_table, partitions, read


def serve(options: list[str]) -> int:
    """Streamlit's server for this page, in this process: `streamlit run dashboard.py <options>`, with the modules
    imported above already loaded, so each run of the page (the first visitor's too) finds them."""
    from streamlit.web import cli as streamlit_cli

    sys.argv = ["streamlit", "run", str(Path(__file__).resolve()), *options]
    return int(streamlit_cli.main() or 0)


if __name__ == "__main__":
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    if get_script_run_ctx(suppress_warning=True) is None:  # `python dashboard.py [options]`, not a run of the page
        sys.exit(serve(sys.argv[1:]))

TABLES = ("stocks_fixed", "stocks_splits", "stocks_dividends", "stocks_official_daily", "stocks_daily",
          "pipeline_runs", "quality_checks", "stocks_quarantine", MARKET_DAILY_TABLE, BREADTH_TABLE)
HARVESTED = "python fixed_stock_harvester.py"
MAKES = {
    "stocks_fixed": HARVESTED, "stocks_splits": HARVESTED, "stocks_dividends": HARVESTED,
    "stocks_official_daily": HARVESTED, "quality_checks": HARVESTED,
    "stocks_quarantine": f"{HARVESTED} (when a bar breaks a rule)",
    "stocks_daily": "python daily_bars.py",
    "pipeline_runs": "any script (every run appends a row)",
    MARKET_DAILY_TABLE: "python market_daily.py", BREADTH_TABLE: "python market_daily.py",
}
# Tables a fresh demo may lack without anything being wrong: no bar was bad; the whole market was not fetched (the
# eight tickers' demo does without it).
OPTIONAL = {"stocks_quarantine", MARKET_DAILY_TABLE, BREADTH_TABLE}
ALERTS_SHOWN = 50
LEADERS = 10
# The whole market's movers are ranked among names that trade: at least this close and this dollar volume (close x
# volume) on the day, so that a $0.01 stock doubling on a few hundred dollars is not the headline. Both are the
# reader's to move.
MIN_PRICE = 1.0
DOLLAR_VOLUME_FLOORS = {"none": 0.0, "$100K": 1e5, "$1M": 1e6, "$10M": 1e7, "$100M": 1e8}
DEFAULT_FLOOR = "$1M"
MARKET_COLUMNS = ("ticker", "close", "volume", "dollar_volume", "adj_close", "daily_return", "high_52w", "low_52w",
                  "new_high", "new_low")
HISTORY_COLUMNS = ("trade_date", "close", "adj_close", "volume", "dollar_volume", "daily_return", "split_factor",
                   "high_52w", "low_52w")
SEARCH_READERS = 4
BREADTH_COLOURS = {"new highs": "#1f4e79", "new lows": "#f28e2b"}
# The intraday chart's moving averages of the minute close, in minutes.
MINUTE_AVERAGES = (5, 15, 60)
AVERAGE_COLOURS = {"close": "#1f4e79", "5 min": "#f28e2b", "15 min": "#59a14f", "60 min": "#b07aa1",
                   "sma 20": "#f28e2b", "sma 50": "#b07aa1"}
# The operations view: how many runs it lists, and what rows written before the run lifecycle call a status
# (stockpipe.runlog.OLD_STATUSES; imported from there, this page would load Spark's modules).
LAST_RUNS = 20
OLD_STATUSES = {"ok": "success"}
RUN_COLUMNS = ("run_id", "script", "started_at", "status", "exit_code", "duration_s", "tickers", "rows_written",
               "calls", "rate_limited", "engine", "message", "ticker_outcomes")
CHECK_COLUMNS = ("run_id", "ticker", "trade_date", "check", "status", "observed", "threshold", "message",
                 "checked_at")
# The daily chart's span, in months back from the last stored day (None: everything stored).
RANGES: dict[str, int | None] = {"3 months": 3, "1 year": 12, "5 years": 60, "all": None}
SESSION_COLOURS = {"pre": "#dbe9f6", "regular": "#eef5ea", "post": "#fbe3d6"}
# A chart of one bar a row keeps a readable height however few or many the rows: this many pixels a row, at least
# MIN_BARS rows' worth, plus its axis (see bar_height), each bar BAR_PX thick however few the rows (two bars do not
# swell to fill the floor); a chart over time is never lower than MIN_CHART_PX.
BAR_ROW_PX = 28
BAR_PX = 20
MIN_BARS = 6
AXIS_PX = 40
MIN_CHART_PX = 180

# How each kind of column reads in a table: the units and formats a reader expects, an empty cell for a missing value.
Kind = str  # "price" | "return" | "share" | "count" | "volume" | "dollars" | "text" | "date" | "time"


def dollars(value: float) -> str:
    """An amount of money as a reader says it, to three figures: $950, $12.3K, $4.50M, $1.20B, $1,234T."""
    for size, unit in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= size * 0.9995:
            scaled = value / size
            return f"${scaled:,.{2 if abs(scaled) < 9.995 else 1 if abs(scaled) < 99.95 else 0}f}{unit}"
    return f"${value:,.0f}"


_FORMATS: dict[str, Callable[[Any], str]] = {
    "price": lambda v: f"{v:,.2f}",
    "dollars": dollars,
    "return": lambda v: f"{100 * v:+.2f}%",  # a day's return: signed, in percent, as the charts show it
    "share": lambda v: f"{100 * v:.2f}%",  # a level that is a fraction (volatility)
    "count": lambda v: f"{int(v):,}",
    "volume": lambda v: f"{v:,.0f}",
    "text": str,
    "date": lambda v: str(v)[:10],
    "time": lambda v: f"{pd.Timestamp(v):%Y-%m-%d %H:%M}",
}


def cell(value: object, kind: Kind) -> str:
    """One value as the table shows it: formatted by its kind, empty when missing (not `None`)."""
    if value is None or (not isinstance(value, list | tuple | str) and pd.isna(value)):
        return ""
    return _FORMATS[kind](value)


def show_table(frame: pd.DataFrame, kinds: dict[str, Kind], *, wide: tuple[str, ...] = (), key: str | None = None,
               ) -> None:
    """A table with each column in its kind's format (numbers right-aligned, with thousands separators, returns in
    percent like the charts) and no `None` in empty cells. Columns are those of `kinds`, in its order, named by it
    (`label: kind` keys are `column`); `wide` columns (long text) get a medium width, so the table fits its column at
    1280 px and a long text is cut in its cell (whole in its table) rather than the table at the right edge."""
    shown = pd.DataFrame({name: [cell(v, kind) for v in frame[name]] for name, kind in kinds.items()})
    config = {name: st.column_config.TextColumn(
        name.replace("_", " "), alignment="left" if kind in ("text", "date", "time") else "right",
        width="medium" if name in wide else None) for name, kind in kinds.items()}
    st.dataframe(shown, hide_index=True, column_config=config, width="stretch", key=key)


def base_path() -> Path:
    return Path(os.environ.get("STOCKS_BASE_PATH", "delta_tables"))


def missing(name: str) -> None:
    st.info(f"No `{name}` table under `{base_path()}` yet: `{MAKES[name]}` creates it (`make demo` builds them all).")


@st.cache_data(ttl=60, show_spinner=False)
def daily(base: str, version: int) -> pd.DataFrame:
    return read(Path(base) / "stocks_daily").to_pandas()


@st.cache_data(ttl=60, show_spinner=False)
def tickers_and_days(base: str, version: int) -> dict[str, list[str]]:
    """Each ticker's stored days, once per version: from the minute table's log alone (no data file opened) when it
    is partitioned by ticker (the 5-year table's log lists 10,064 files, the page's cost if replayed on every
    redraw); a by-date table (the market) says it from the daily table, one row a ticker and day."""
    minute = Path(base) / "stocks_fixed"
    table = open_table(minute)
    if table is not None and "ticker" in table.metadata().partition_columns:
        pairs = partitions(minute, ["ticker", "trade_date"])
    else:
        source = Path(base) / "stocks_daily" if open_table(Path(base) / "stocks_daily") is not None else minute
        found = read(source, columns=["ticker", "trade_date"])
        pairs = sorted({(str(t), str(d)) for t, d in zip(found.column("ticker").to_pylist(),
                                                          found.column("trade_date").to_pylist(), strict=True)})
    days: dict[str, list[str]] = {}
    for ticker, day in pairs:
        days.setdefault(ticker, []).append(day)  # sorted pairs: each ticker's days in order
    return days


@st.cache_data(ttl=60, show_spinner=False)
def table_health(base: str, name: str, version: int | None) -> Health | None:
    return health(Path(base) / name) if version is not None else None


@st.cache_data(ttl=60, show_spinner=False)
def minutes(base: str, version: int, ticker: str, day: str) -> pd.DataFrame:
    return read(Path(base) / "stocks_fixed", where={"ticker": ticker, "trade_date": day},
                columns=["trade_ts", "open", "high", "low", "close", "volume", "market_session"]).to_pandas()


@st.cache_data(ttl=60, show_spinner=False)
def run_log(base: str, version: int) -> pd.DataFrame:
    """pipeline_runs, newest first; a log written before the run lifecycle lacks its columns (they read empty) and
    says `ok` for `success`."""
    runs = read(Path(base) / "pipeline_runs").to_pandas()
    for column in RUN_COLUMNS:
        if column not in runs:
            runs[column] = None
    runs["status"] = runs["status"].replace(OLD_STATUSES)
    return runs.sort_values("started_at", ascending=False)


@st.cache_data(ttl=60, show_spinner=False)
def failing_checks(base: str, version: int) -> pd.DataFrame:
    """The checks that did not pass (fail or warn), of every run: what a person has to look at."""
    checks = read(Path(base) / "quality_checks", columns=CHECK_COLUMNS)
    return checks.filter(pc.field("status") != "pass").to_pandas()


@st.cache_data(ttl=60, show_spinner=False)
def market_days(base: str, version: int) -> list[str]:
    """The whole market's stored days, oldest first: from the log alone when the table is partitioned by trade_date
    (the spec's layout: no data file is opened), else from its trade_date column."""
    path = Path(base) / MARKET_DAILY_TABLE
    table = open_table(path)
    if table is not None and "trade_date" in table.metadata().partition_columns:
        return [day for (day,) in partitions(path, ["trade_date"])]
    found = read(path, columns=["trade_date"]).column("trade_date")
    return sorted({str(day) for day in pc.unique(found).to_pylist()})


@st.cache_data(ttl=60, show_spinner=False)
def market_day(base: str, version: int, day: str) -> pd.DataFrame:
    """Every ticker's row of one day: that day's file alone (partition pruning on trade_date), ~11,000 rows."""
    return read(Path(base) / MARKET_DAILY_TABLE, columns=MARKET_COLUMNS, where={"trade_date": day}).to_pandas()


@st.cache_data(ttl=60, show_spinner=False)
def market_breadth(base: str, version: int) -> pd.DataFrame:
    """The breadth table, one row a day (252 a year): read whole, oldest first."""
    frame = read(Path(base) / BREADTH_TABLE).to_pandas()
    return frame.assign(trade_date=pd.to_datetime(frame["trade_date"])).sort_values("trade_date")


@st.cache_data(ttl=60, show_spinner=False)
def ticker_history(base: str, version: int, ticker: str, since: str | None) -> pd.DataFrame:
    """One ticker's rows from `since` (a day, or None for everything stored), oldest first: the day files of the
    span only (pruned by their trade_date in the log), and in each the row groups that can hold the ticker. A year
    is 252 small files: read in SEARCH_READERS threads, a share of the files each (1.1 s cold in one, 0.7 s in four
    on two cores)."""

    def reader(share: int) -> pa.Table:
        def mine(action: dict[str, Any]) -> bool:
            day = action.get("partition.trade_date")
            in_span = since is None or day is None or str(day) >= since
            return in_span and zlib.crc32(str(action["path"]).encode()) % SEARCH_READERS == share

        return read(Path(base) / MARKET_DAILY_TABLE, columns=HISTORY_COLUMNS, where={"ticker": ticker}, keep=mine)

    with ThreadPoolExecutor(SEARCH_READERS) as pool:
        found = pa.concat_tables(list(pool.map(reader, range(SEARCH_READERS)))).to_pandas()
    found = found.assign(trade_date=pd.to_datetime(found["trade_date"])).sort_values("trade_date")
    return found[found["trade_date"] >= pd.Timestamp(since)] if since else found


def outcomes_of(run: pd.Series) -> list[dict]:
    """A run's per-ticker outcomes as plain lists (Arrow hands lists to pandas as arrays); none for a run that
    fetched nothing, or was logged before outcomes were."""
    found = run["ticker_outcomes"]
    if found is None or isinstance(found, float):  # null, or NaN where the column came in empty
        return []
    return [{**o, "days_refused": list(o["days_refused"]) if o["days_refused"] is not None else []} for o in found]


def total(run: pd.Series, key: str) -> int:
    return sum(int(o.get(key) or 0) for o in outcomes_of(run))


def duration(seconds: object) -> str:
    if seconds is None or pd.isna(seconds):
        return "-"
    minutes, rest = divmod(round(float(seconds)), 60)  # type: ignore[arg-type]
    return f"{minutes} min {rest:02d} s" if minutes else f"{rest} s"


def operations(runs: pd.DataFrame, checks: pd.DataFrame | None) -> None:
    """Last night at a glance: the newest harvest's status and numbers, the last runs of every script, and one
    harvest's outcome per ticker and failing checks."""
    fails = (checks[checks["status"] == "fail"].groupby("run_id").size() if checks is not None
             else pd.Series(dtype="int64"))
    harvests = runs[runs["script"] == "fixed_stock_harvester"].head(LAST_RUNS)
    if len(harvests):
        last = harvests.iloc[0]
        outcomes = outcomes_of(last)
        st.subheader(f"Last harvest: {last['status']}")
        # Two rows of three: six metrics in one row cut the start time short at a laptop's width.
        first, second = st.columns(3), st.columns(3)
        first[0].metric("started (UTC)", f"{last['started_at']:%Y-%m-%d %H:%M}")
        first[1].metric("duration", duration(last["duration_s"]))
        first[2].metric("tickers stored", f"{sum(o['status'] in ('success', 'partial') for o in outcomes):,} of "
                                          f"{len(outcomes):,}")
        second[0].metric("days refused by the plan", f"{sum(len(o['days_refused']) for o in outcomes):,}")
        second[1].metric("quarantined bars", f"{total(last, 'quarantined'):,}")
        second[2].metric("failing checks", f"{int(fails.get(last['run_id'], 0)):,}")
        if last["message"]:
            say = {"failed": st.error, "abandoned": st.error, "partial": st.warning}.get(last["status"], st.info)
            say(str(last["message"]))
    else:
        st.info("No harvest logged yet: `python fixed_stock_harvester.py` writes its row as it starts.")
    shown = runs.head(LAST_RUNS)
    table = shown.assign(
        duration=[duration(s) for s in shown["duration_s"]],
        quarantined=[total(run, "quarantined") for _, run in shown.iterrows()],
        failing_checks=[int(fails.get(run_id, 0)) for run_id in shown["run_id"]],
    )
    st.caption("Last runs, newest first (`running`: at work, or killed before its end; the next run marks a run "
               "whose process is gone `abandoned`)")
    table = table.rename(columns={"started_at": "started (UTC)", "exit_code": "exit", "rows_written": "rows",
                                  "failing_checks": "failing checks", "rate_limited": "429s"})
    show_table(table, {"started (UTC)": "time", "script": "text", "status": "text", "exit": "count",
                       "duration": "text", "rows": "count", "quarantined": "count", "failing checks": "count",
                       "calls": "count", "429s": "count", "engine": "text", "message": "text"}, wide=("message",))
    if not len(harvests):
        return
    labels = {run["run_id"]: f"{run['started_at']:%Y-%m-%d %H:%M} {run['status']} (run {run['run_id'][:8]})"
              for _, run in harvests.iterrows()}
    chosen = st.selectbox("Harvest run", list(labels), format_func=labels.__getitem__, key="ops_run")
    run = harvests[harvests["run_id"] == chosen].iloc[0]
    outcomes = pd.DataFrame(outcomes_of(run), columns=["ticker", "status", "days_stored", "days_refused", "calls",
                                                       "rate_limited", "retries", "quarantined", "error"])
    outcomes["days_refused"] = [", ".join(map(str, days)) for days in outcomes["days_refused"]]
    show_table(outcomes.rename(columns={"days_stored": "days stored", "days_refused": "days refused",
                                        "rate_limited": "429s"}),
               {"ticker": "text", "status": "text", "days stored": "count", "days refused": "text", "calls": "count",
                "429s": "count", "retries": "count", "quarantined": "count", "error": "text"}, wide=("error",))
    if checks is None:
        st.caption("No `quality_checks` table yet: the harvest's data-quality checks write it.")
    else:
        mine = checks[checks["run_id"] == chosen].drop(columns=["run_id"])
        st.caption(f"Checks of this run that did not pass: {len(mine):,}")
        show_table(mine.sort_values(["status", "ticker", "check"]),
                   {"trade_date": "date", "ticker": "text", "check": "text", "status": "text", "observed": "price",
                    "threshold": "price", "message": "text"}, wide=("message",))


def human_size(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1024
    return f"{size:,.1f} GiB"


def when(moment: dt.datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M}"


def last_maintenance(runs_table: object, base: Path) -> str | None:
    """The newest maintenance run as pipeline_runs has it, with what it did: a run whose OPTIMIZE found nothing to
    compact commits nothing to the table's history, so this is where it shows."""
    if runs_table is None:
        return None
    runs = run_log(str(base), runs_table.version())  # type: ignore[attr-defined]
    found = runs[runs["script"] == "maintenance"]
    if not len(found):
        return "No maintenance run yet: `python maintenance.py --all` compacts and vacuums every table."
    last = found.iloc[0]
    return (f"Last maintenance run: {when(last['started_at'])} UTC, {last['status']}"
            + (f": {last['message']}" if last["message"] else ""))


def candlesticks(frame: pd.DataFrame, adjusted: bool) -> tuple[alt.LayerChart, alt.Chart]:
    """One candle per trading day (an ordinal axis: no gaps for nights and weekends), the 20- and 50-day moving
    averages over it, and volume, as two charts drawn one above the other (a concatenated chart is wider than its
    column by its own padding). The averages are of split-adjusted closes; as traded they are scaled back by each
    day's split factor, so they follow the candles whichever basis is shown."""
    prefix = "adj_" if adjusted else ""
    scale = 1.0 if adjusted else frame["split_factor"]
    frame = frame.assign(**{"sma 20": frame["sma_20"] * scale, "sma 50": frame["sma_50"] * scale})
    data = frame.rename(columns={f"{prefix}{c}": f"_{c}" for c in ("open", "high", "low", "close", "volume")})
    data = data.assign(day=pd.to_datetime(data["trade_date"]).dt.strftime("%Y-%m-%d"),
                       direction=(data["_close"] >= data["_open"]).map({True: "up", False: "down"}))
    base = alt.Chart(data).encode(
        x=alt.X("day:O", title=None, axis=alt.Axis(labelAngle=0)),
        color=alt.Color("direction:N", scale=alt.Scale(domain=["up", "down"], range=["#2e7d32", "#c62828"]),
                        legend=None),
        tooltip=[alt.Tooltip("day:O", title="day"), alt.Tooltip("_open:Q", title="open"),
                 alt.Tooltip("_high:Q", title="high"), alt.Tooltip("_low:Q", title="low"),
                 alt.Tooltip("_close:Q", title="close"), alt.Tooltip("_volume:Q", title="volume", format=",.0f")],
    )
    averages = alt.Chart(data).transform_fold(["sma 20", "sma 50"], as_=["average", "value"]).mark_line(
        strokeWidth=1.5).encode(
        x="day:O", y="value:Q",
        color=alt.Color("average:N", scale=alt.Scale(domain=["sma 20", "sma 50"],
                                                     range=[AVERAGE_COLOURS["sma 20"], AVERAGE_COLOURS["sma 50"]]),
                        legend=alt.Legend(title="moving average", orient="top")),
    )
    price = alt.layer(
        base.mark_rule().encode(y=alt.Y("_low:Q", title="price", scale=alt.Scale(zero=False)), y2="_high:Q"),
        base.mark_bar(size=14).encode(y="_open:Q", y2="_close:Q"),
        averages,
    ).resolve_scale(color="independent").properties(height=300, width="container")
    volume = base.mark_bar(size=14).encode(y=alt.Y("_volume:Q", title="volume", axis=alt.Axis(format="~s"))
                                           ).properties(height=100, width="container")
    return price, volume


def intraday(frame: pd.DataFrame, day: dt.date) -> alt.LayerChart | alt.FacetChart:
    hours = session_hours(day)
    bands = pd.DataFrame([
        {"session": "pre", "start": hours.pre_open, "end": hours.open},
        {"session": "regular", "start": hours.open, "end": hours.close},
        {"session": "post", "start": hours.close, "end": hours.post_close},
    ])
    for column in ("start", "end"):
        bands[column] = pd.to_datetime(bands[column]).dt.tz_convert("America/New_York").dt.tz_localize(None)
    frame = frame.assign(time=pd.to_datetime(frame["trade_ts"], utc=True).dt.tz_convert("America/New_York")
                         .dt.tz_localize(None))
    shading = alt.Chart(bands).mark_rect(opacity=0.7).encode(
        x=alt.X("start:T", title="New York time"), x2="end:T",
        color=alt.Color("session:N", scale=alt.Scale(domain=list(SESSION_COLOURS),
                                                     range=list(SESSION_COLOURS.values()))),
    )
    line = alt.Chart(frame).mark_line(color=AVERAGE_COLOURS["close"]).encode(
        x="time:T", y=alt.Y("close:Q", scale=alt.Scale(zero=False), title="close"),
        tooltip=["time:T", "open:Q", "high:Q", "low:Q", "close:Q", "volume:Q", "market_session:N"],
    )
    averaged = minute_averages(frame)
    names = [f"{m} min" for m in MINUTE_AVERAGES]
    folded: list[str | alt.FieldName] = list(names)
    lines = alt.Chart(averaged).transform_fold(folded, as_=["average", "value"]).mark_line(strokeWidth=1.2).encode(
        x="time:T", y="value:Q",
        color=alt.Color("average:N", scale=alt.Scale(domain=names, range=[AVERAGE_COLOURS[n] for n in names]),
                        legend=alt.Legend(title="moving average", orient="top")),
    )
    return alt.layer(shading, line, lines).resolve_scale(color="independent").properties(height=300)


def minute_averages(frame: pd.DataFrame) -> pd.DataFrame:
    """5-, 15- and 60-minute moving averages of the close over clock time (a window of minutes, not of bars: the
    thin extended hours have minutes without a bar)."""
    ordered = frame.sort_values("time").set_index("time")
    averaged = pd.DataFrame({f"{m} min": ordered["close"].rolling(f"{m}min").mean() for m in MINUTE_AVERAGES})
    return averaged.reset_index()


def latest_day(frame: pd.DataFrame) -> pd.DataFrame:
    """Each ticker's row of the latest stored day."""
    return frame[frame["trade_date"] == frame["trade_date"].max()]


def bar_height(rows: int) -> int:
    """The height of a chart of one bar a row: BAR_ROW_PX a row (ten names stay as readable as two), never fewer
    than MIN_BARS rows' worth (two bars of 28 px collapsed the chart to a line and cut its labels), plus the axis."""
    return BAR_ROW_PX * max(rows, MIN_BARS) + AXIS_PX


def return_bars(frame: pd.DataFrame, column: str, title: str, *, largest_first: bool = True) -> alt.Chart:
    """One bar a ticker for a return, green up and red down, the first in `frame`'s order at the top."""
    return alt.Chart(frame).mark_bar(size=BAR_PX).encode(
        x=alt.X(f"{column}:Q", title=title, axis=alt.Axis(format="%")),
        y=alt.Y("ticker:N", sort="-x" if largest_first else "x", title=None),
        color=alt.condition(f"datum.{column} >= 0", alt.value("#2e7d32"), alt.value("#c62828")),
        tooltip=["ticker", alt.Tooltip(f"{column}:Q", title=title, format="+.2%"),
                 *[alt.Tooltip(f"{c}:Q", format=",.2f") for c in ("close", "dividend") if c in frame]],
    ).properties(height=bar_height(len(frame)))


def market(frame: pd.DataFrame, alerts: pd.DataFrame | None) -> None:
    """The latest stored day at a glance: top movers by total return, volatility leaders, and the alerts."""
    today = latest_day(frame)
    st.subheader(f"Top movers on {today['trade_date'].max()}")
    movers = today.sort_values("total_return", ascending=False)[
        ["ticker", "close", "daily_return", "dividend", "total_return"]].head(LEADERS)
    if movers["total_return"].notna().any():
        st.altair_chart(return_bars(movers.dropna(subset=["total_return"]), "total_return", "total return"),
                        width="stretch")
    else:
        st.info("No total return on the latest day: the trading day before it is not stored.")
    show_table(movers, {"ticker": "text", "close": "price", "daily_return": "return", "dividend": "price",
                        "total_return": "return"})
    st.subheader("Volatility leaders")
    leaders = today.dropna(subset=["volatility_20"]).sort_values("volatility_20", ascending=False)[
        ["ticker", "volatility_20", "sma_20", "sma_50", "adj_close"]].head(LEADERS)
    if len(leaders):
        show_table(leaders, {"ticker": "text", "volatility_20": "share", "sma_20": "price", "sma_50": "price",
                             "adj_close": "price"})
    else:
        st.info("Volatility needs 21 consecutive stored trading days (20 daily returns): harvest a longer range.")
    alerts_view(alerts)


def alerts_view(alerts: pd.DataFrame | None) -> None:
    """The warn and fail rows of quality_checks, newest first."""
    st.subheader("Alerts")
    if alerts is None:
        st.info(f"No `quality_checks` table yet: `{MAKES['quality_checks']}` writes it.")
    elif not len(alerts):
        st.success("No check warned or failed.")
    else:
        shown = alerts.sort_values(["checked_at", "status"], ascending=[False, True]).head(ALERTS_SHOWN)
        st.caption(f"The {len(shown)} newest warn and fail rows of quality_checks ({len(alerts):,} in all)")
        show_table(shown, {"trade_date": "date", "ticker": "text", "check": "text", "status": "text",
                           "observed": "price", "message": "text"}, wide=("message",))


def eligible_movers(bars: pd.DataFrame, min_price: float, min_dollar_volume: float) -> pd.DataFrame:
    """The names a day's movers are ranked among: those with a return (their previous session stored), a close of at
    least `min_price` and a dollar volume (close x volume) of at least `min_dollar_volume`."""
    return bars[bars["daily_return"].notna() & (bars["close"] >= min_price)
                & (bars["dollar_volume"] >= min_dollar_volume)]


def whole_market(base: Path, version: int, breadth_version: int | None, alerts: pd.DataFrame | None) -> None:
    """The whole market on a chosen day (the latest first): the day in numbers, its top movers up and down among
    names that trade, the most active by dollar volume, the breadth over time, a search for any ticker, the alerts.
    Reads one day's file of stocks_market_daily, the small breadth table, and a searched ticker's span."""
    days = market_days(str(base), version)
    if not days:
        st.info(f"`{MARKET_DAILY_TABLE}` holds no day yet: `{MAKES[MARKET_DAILY_TABLE]}` fills it.")
        alerts_view(alerts)
        return
    pick, floor_column, price_column = st.columns([2, 3, 2])
    day = pick.selectbox("Day", days[::-1], index=0, key="market_day")
    floor = floor_column.select_slider("Minimum dollar volume (close × volume) for the movers",
                                       options=list(DOLLAR_VOLUME_FLOORS), value=DEFAULT_FLOOR, key="market_floor")
    min_price = price_column.number_input("Minimum close ($) for the movers", min_value=0.0, value=MIN_PRICE,
                                          step=0.5, format="%.2f", key="market_min_price")
    bars = market_day(str(base), version, day)
    breadth = market_breadth(str(base), breadth_version) if breadth_version is not None else None
    day_in_numbers(bars, breadth, day)
    movers_view(bars, day, floor, float(min_price))
    most_active_view(bars, day)
    breadth_view(breadth, day)
    search_view(base, version, days, bars, day)
    alerts_view(alerts)


def day_in_numbers(bars: pd.DataFrame, breadth: pd.DataFrame | None, day: str) -> None:
    """The day's tickers, advancers, decliners, unchanged and new 52-week highs and lows: the breadth table's row
    (one definition, the pipeline's), or counted from the day's rows where the breadth table lacks the day."""
    row = breadth[breadth["trade_date"] == pd.Timestamp(day)] if breadth is not None else None
    if row is not None and len(row):
        found = row.iloc[0]
        counts = [found[c] for c in ("tickers", "advancers", "decliners", "unchanged", "new_highs", "new_lows")]
    else:
        returns = bars["daily_return"]
        counts = [len(bars), (returns > 0).sum(), (returns < 0).sum(), (returns == 0).sum(),
                  bars["new_high"].eq(True).sum(), bars["new_low"].eq(True).sum()]
    labels = ("tickers traded", "advancers", "decliners", "unchanged", "new 52-week highs", "new 52-week lows")
    figures = dict(zip(labels, (int(c) for c in counts), strict=True))
    for column, (label, value) in zip(st.columns(len(figures)), figures.items(), strict=True):
        column.metric(label, f"{value:,}")


def movers_view(bars: pd.DataFrame, day: str, floor: str, min_price: float) -> None:
    ranked = eligible_movers(bars, min_price, DOLLAR_VOLUME_FLOORS[floor])
    st.subheader(f"Top movers on {day}")
    traded = "any dollar volume" if DOLLAR_VOLUME_FLOORS[floor] == 0 else f"{floor} or more traded (close × volume)"
    st.caption(f"Ranked by daily return (split-adjusted) among the {len(ranked):,} of {len(bars):,} tickers that "
               f"closed at ${min_price:,.2f} or more with {traded} and their previous session stored: the other "
               f"{len(bars) - len(ranked):,} are left out, so a penny stock doubling on a few trades is not the "
               "headline. Move the minimums above to widen or narrow the field.")
    halves = st.columns(2)
    for half, title, frame, largest_first in (
            (halves[0], "Gainers", ranked.nlargest(LEADERS, "daily_return"), True),
            (halves[1], "Losers", ranked.nsmallest(LEADERS, "daily_return"), False)):
        with half:
            st.markdown(f"**{title}**")
            if not len(frame):
                st.info("No ticker above the minimums has a return on this day.")
                continue
            st.altair_chart(return_bars(frame, "daily_return", "daily return", largest_first=largest_first),
                            width="stretch")
            show_table(frame.rename(columns={"daily_return": "return", "dollar_volume": "traded"}),
                       {"ticker": "text", "close": "price", "return": "return", "traded": "dollars"},
                       key=f"market_{title.lower()}")


def most_active_view(bars: pd.DataFrame, day: str) -> None:
    st.subheader(f"Most active on {day}")
    active = bars.nlargest(LEADERS, "dollar_volume")
    st.caption("By dollar volume (close × volume, as traded), whatever the price")
    data = active.assign(traded=[dollars(v) for v in active["dollar_volume"]])
    chart = alt.Chart(data).mark_bar(color="#1f4e79", size=BAR_PX).encode(
        x=alt.X("dollar_volume:Q", title="dollar volume",
                axis=alt.Axis(labelExpr="replace(format(datum.value, '$.2~s'), 'G', 'B')")),
        y=alt.Y("ticker:N", sort="-x", title=None),
        tooltip=["ticker", alt.Tooltip("traded:N", title="dollar volume"), alt.Tooltip("close:Q", format=",.2f"),
                 alt.Tooltip("daily_return:Q", title="daily return", format="+.2%")],
    ).properties(height=bar_height(len(data)))
    left, right = st.columns(2)
    left.altair_chart(chart, width="stretch")
    with right:
        show_table(active.rename(columns={"daily_return": "return", "dollar_volume": "traded"}),
                   {"ticker": "text", "close": "price", "return": "return", "volume": "volume", "traded": "dollars"},
                   key="market_active")


def breadth_view(breadth: pd.DataFrame | None, day: str) -> None:
    st.subheader("Market breadth")
    if breadth is None:
        st.info(f"No `{BREADTH_TABLE}` table yet: `{MAKES[BREADTH_TABLE]}` derives it.")
        return
    if not len(breadth):
        st.info(f"`{BREADTH_TABLE}` holds no day yet.")
        return
    net = breadth["advancers"] - breadth["decliners"]
    data = breadth.assign(net=net, ad_line=net.cumsum())
    chosen = alt.Chart(pd.DataFrame({"trade_date": [pd.Timestamp(day)]})).mark_rule(
        color="#888888", strokeDash=[4, 3]).encode(x="trade_date:T")
    line = alt.Chart(data).mark_line(color="#1f4e79").encode(
        x=alt.X("trade_date:T", title=None),
        y=alt.Y("ad_line:Q", title="advance-decline line", scale=alt.Scale(zero=False)),
        tooltip=[alt.Tooltip("trade_date:T", title="day"), alt.Tooltip("advancers:Q", format=","),
                 alt.Tooltip("decliners:Q", format=","), alt.Tooltip("unchanged:Q", format=","),
                 alt.Tooltip("net:Q", title="advancers - decliners", format="+,"),
                 alt.Tooltip("tickers:Q", format=",")],
    )
    st.altair_chart(alt.layer(line, chosen).properties(height=max(MIN_CHART_PX, 220)), width="stretch")
    st.caption(f"The advance-decline line: the running sum of each day's advancers minus decliners (names with a "
               f"return), from {breadth['trade_date'].min():%Y-%m-%d}; the dashed rule marks {day}.")
    if not breadth["with_52w_history"].gt(0).any():
        st.info("No new 52-week highs or lows yet: they need a ticker's history to reach 251 sessions back.")
        return
    folded = pd.concat([
        pd.DataFrame({"trade_date": data["trade_date"], "kind": "new highs", "count": data["new_highs"]}),
        pd.DataFrame({"trade_date": data["trade_date"], "kind": "new lows", "count": -data["new_lows"]})])
    extremes = alt.Chart(folded).mark_bar().encode(
        x=alt.X("trade_date:T", title=None),
        y=alt.Y("count:Q", title="new highs / new lows", axis=alt.Axis(labelExpr="abs(datum.value)")),
        color=alt.Color("kind:N", scale=alt.Scale(domain=list(BREADTH_COLOURS), range=list(BREADTH_COLOURS.values())),
                        legend=alt.Legend(title=None, orient="top")),
        tooltip=[alt.Tooltip("trade_date:T", title="day"), "kind:N",
                 alt.Tooltip("count:Q", title="tickers", format=",")],
    )
    st.altair_chart(alt.layer(extremes, chosen).properties(height=max(MIN_CHART_PX, 200)), width="stretch")
    st.caption("New 52-week highs (up) and lows (down), split-adjusted, among the names whose history reaches 251 "
               "sessions back (" + f"{int(data['with_52w_history'].iloc[-1]):,} on the latest day)")


def search_view(base: Path, version: int, days: list[str], bars: pd.DataFrame, day: str) -> None:
    """Any ticker's split-adjusted closes over the chosen span and its latest figures; an unknown one says so, with
    the chosen day's tickers that start like it."""
    st.subheader("Find a ticker")
    left, right = st.columns([2, 3])
    typed = left.text_input("Ticker", placeholder="any ticker, e.g. AAPL", key="market_search")
    span = right.radio("Span", list(RANGES), index=1, horizontal=True, key="market_span")
    ticker = typed.strip().upper()
    if not ticker:
        st.caption("Type any ticker of the market for its split-adjusted closes and its latest figures.")
        return
    months = RANGES[span]
    since = None if months is None else f"{pd.Timestamp(days[-1]) - pd.DateOffset(months=months):%Y-%m-%d}"
    history = ticker_history(str(base), version, ticker, since)
    if not len(history):
        near = [t for t in bars["ticker"] if str(t).startswith(ticker[:-1] or ticker)][:8]
        alike = f" Tickers like it on {day}: {', '.join(near)}" if near else ""
        st.warning(f"No ticker {ticker} in {MARKET_DAILY_TABLE}" + (f" since {since}" if since else "") + f".{alike}")
        return
    last = history.iloc[-1]
    figures = st.columns(4)
    figures[0].metric(f"{ticker} close on {last['trade_date']:%Y-%m-%d}", cell(last["close"], "price"),
                      delta=cell(last["daily_return"], "return") or None)
    figures[1].metric("dollar volume", cell(last["dollar_volume"], "dollars"))
    figures[2].metric("52-week high", cell(last["high_52w"], "price") or "-")
    figures[3].metric("52-week low", cell(last["low_52w"], "price") or "-")
    chart = alt.Chart(history).mark_line(color=AVERAGE_COLOURS["close"]).encode(
        x=alt.X("trade_date:T", title=None),
        y=alt.Y("adj_close:Q", title="split-adjusted close", scale=alt.Scale(zero=False)),
        tooltip=[alt.Tooltip("trade_date:T", title="day"), alt.Tooltip("adj_close:Q", format=",.2f"),
                 alt.Tooltip("close:Q", title="close as traded", format=",.2f"),
                 alt.Tooltip("daily_return:Q", title="daily return", format="+.2%")],
    ).properties(height=max(MIN_CHART_PX, 260))
    st.altair_chart(chart, width="stretch")
    st.caption(f"{ticker}: split-adjusted closes (as traded, divided by its later splits) over {len(history):,} "
               f"sessions, {history['trade_date'].min():%Y-%m-%d} to {last['trade_date']:%Y-%m-%d}; the figures "
               "above are of its latest stored day, as traded (52-week extremes split-adjusted, where its history "
               "reaches 251 sessions back).")


def main() -> None:
    st.set_page_config(page_title="Stock pipeline", layout="wide")
    st.title("Stock pipeline")
    base = base_path()
    st.caption(f"Tables under `{base}` (STOCKS_BASE_PATH), read with delta-rs. Prices are stored as traded; "
               "split-adjusted ones come from stocks_splits.")
    # Each table's snapshot is loaded once per redraw (the 5-year minute table's log lists 10,064 files).
    opened = {name: open_table(base / name) for name in TABLES}
    daily_table = opened["stocks_daily"]
    checks_table = opened["quality_checks"]
    alerts = failing_checks(str(base), checks_table.version()) if checks_table is not None else None
    market_tab, daily_tab, intraday_tab, ops_tab, health_tab = st.tabs(
        ["Market", "Daily", "Intraday", "Operations", "Table health"])
    market_table, breadth_table = opened[MARKET_DAILY_TABLE], opened[BREADTH_TABLE]
    with market_tab:
        if market_table is not None:  # the whole market, derived from its official daily bars
            whole_market(base, market_table.version(), breadth_table.version() if breadth_table is not None else None,
                         alerts)
        elif daily_table is None:
            missing("stocks_daily")
        else:
            market(daily(str(base), daily_table.version()), alerts)
    with daily_tab:
        if daily_table is None:
            missing("stocks_daily")
        else:
            frame = daily(str(base), daily_table.version())
            tickers = sorted(frame["ticker"].unique())
            ticker = st.selectbox("Ticker", tickers, key="ticker")
            adjusted = st.radio("Prices", ["as traded", "split-adjusted"], horizontal=True) == "split-adjusted"
            span = st.radio("Range", list(RANGES), index=1, horizontal=True)
            mine = frame[frame["ticker"] == ticker].sort_values("trade_date")
            if RANGES[span] is not None and len(mine):
                # Readable candles, and a page that draws as fast over five years as over one week.
                start = pd.Timestamp(mine["trade_date"].max()) - pd.DateOffset(months=RANGES[span])
                mine = mine[pd.to_datetime(mine["trade_date"]) > start]
            price, volume = candlesticks(mine, adjusted)
            st.altair_chart(price, width="stretch")
            st.altair_chart(volume, width="stretch")
            # The table shows the basis the chart shows: as traded, or split-adjusted (adj_* columns, sma_* as
            # computed on adjusted closes; as traded they are scaled back by the split factor, as in the chart).
            prefix = "adj_" if adjusted else ""
            basis = mine.assign(**{c: mine[f"{prefix}{c}"] for c in ("open", "high", "low", "close", "volume")})
            if not adjusted:
                basis = basis.assign(sma_20=mine["sma_20"] * mine["split_factor"],
                                     sma_50=mine["sma_50"] * mine["split_factor"])
            st.caption("Split-adjusted prices and volumes (by stocks_splits)" if adjusted else
                       "Prices and volumes as traded; the official close is the provider's daily bar")
            show_table(basis.sort_values("trade_date", ascending=False),
                       {"trade_date": "date", "open": "price", "high": "price", "low": "price", "close": "price",
                        "volume": "volume", **({} if adjusted else {"vwap": "price", "official_close": "price"}),
                        "dividend": "price", "daily_return": "return", "total_return": "return", "sma_20": "price",
                        "sma_50": "price", "volatility_20": "share"})
    with intraday_tab:
        minute_table = opened["stocks_fixed"]
        if minute_table is None:
            missing("stocks_fixed")
        else:
            stored = tickers_and_days(str(base), minute_table.version())
            tickers = sorted(stored)
            chosen = st.session_state.get("ticker")
            ticker = st.selectbox("Ticker ", tickers, index=tickers.index(chosen) if chosen in tickers else 0)
            days = stored[ticker]
            day = st.selectbox("Day", days, index=len(days) - 1)
            bars = minutes(str(base), minute_table.version(), ticker, day)
            st.altair_chart(intraday(bars, dt.date.fromisoformat(day)), width="stretch")
            counts = bars["market_session"].value_counts()
            st.caption(f"{len(bars):,} bars: " + ", ".join(f"{s} {counts.get(s, 0):,}" for s in SESSION_COLOURS)
                       + "; moving averages of the close over " + ", ".join(map(str, MINUTE_AVERAGES)) + " minutes")
    with ops_tab:
        runs_table = opened["pipeline_runs"]
        if runs_table is None:
            missing("pipeline_runs")
        else:
            operations(run_log(str(base), runs_table.version()), alerts)
    with health_tab:
        rows = []
        for name in TABLES:
            table = opened[name]
            found = table_health(str(base), name, table.version() if table is not None else None)
            never = "never" if found else None  # a maintenance that found nothing to do makes no commit
            rows.append({"table": name, "version": found.version if found else None,
                         "live files": found.live_files if found else None,
                         "size": human_size(found.total_bytes) if found else None,
                         "last OPTIMIZE (UTC)": when(found.last_optimize) if found and found.last_optimize else never,
                         "last VACUUM (UTC)": when(found.last_vacuum) if found and found.last_vacuum else never,
                         "status": "ok" if found else ("none yet" if name in OPTIONAL else f"missing: {MAKES[name]}")})
        show_table(pd.DataFrame(rows), {"table": "text", "version": "count", "live files": "count", "size": "text",
                                        "last OPTIMIZE (UTC)": "text", "last VACUUM (UTC)": "text",
                                        "status": "text"}, wide=("status",))
        maintained = last_maintenance(opened["pipeline_runs"], base)
        if maintained:
            st.caption(maintained)


if __name__ == "__main__":  # a run of the page (`streamlit run`, the server `serve` starts, AppTest) is __main__
    main()
