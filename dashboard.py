"""The dashboard: the pipeline's tables in a browser, read with delta-rs (no JVM, no writes).

    make dashboard                  # builds the demo tables first when they are missing
    streamlit run dashboard.py      # tables under STOCKS_BASE_PATH (default delta_tables)

The market on its latest stored day: top movers by total return, volatility leaders, and the alerts (the warn and fail
rows of quality_checks); daily candlesticks from stocks_daily (as traded or split-adjusted) with volume and the 20-
and 50-day moving averages; one day's minute bars from stocks_fixed with the pre-market, regular and post-market
sessions shaded and 5-, 15- and 60-minute moving averages; operations: the last harvest at a glance and the last runs
from pipeline_runs, each run's outcome per ticker and its failing checks; each table's health. Each view reads only
what it shows: the market and daily views stocks_daily, the intraday view one (ticker, trade_date) file.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import altair as alt
import pandas as pd
import pyarrow.compute as pc
import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `streamlit run` puts the script's folder first anyway

from stockpipe.market_calendar import session_hours
from stockpipe.readers import Health, health, open_table, partitions, read

TABLES = ("stocks_fixed", "stocks_splits", "stocks_dividends", "stocks_official_daily", "stocks_daily",
          "pipeline_runs", "quality_checks", "stocks_quarantine")
HARVESTED = "python fixed_stock_harvester.py"
MAKES = {
    "stocks_fixed": HARVESTED, "stocks_splits": HARVESTED, "stocks_dividends": HARVESTED,
    "stocks_official_daily": HARVESTED, "quality_checks": HARVESTED,
    "stocks_quarantine": f"{HARVESTED} (when a bar breaks a rule)",
    "stocks_daily": "python daily_bars.py",
    "pipeline_runs": "any script (every run appends a row)",
}
# Tables a fresh demo may lack without anything being wrong: no bar was bad.
OPTIONAL = {"stocks_quarantine"}
ALERTS_SHOWN = 50
LEADERS = 10
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
# A chart of one bar a row keeps a readable height however few the rows: this many pixels a row, at least MIN_BARS.
BAR_ROW_PX = 28
MIN_BARS = 6

# How each kind of column reads in a table: the units and formats a reader expects, an empty cell for a missing value.
Kind = str  # "price" | "return" | "share" | "count" | "volume" | "text" | "date" | "time"
_FORMATS: dict[str, Callable[[Any], str]] = {
    "price": lambda v: f"{v:,.2f}",
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


def market(frame: pd.DataFrame, alerts: pd.DataFrame | None) -> None:
    """The latest stored day at a glance: top movers by total return, volatility leaders, and the alerts."""
    today = latest_day(frame)
    st.subheader(f"Top movers on {today['trade_date'].max()}")
    movers = today.sort_values("total_return", ascending=False)[
        ["ticker", "close", "daily_return", "dividend", "total_return"]].head(LEADERS)
    if movers["total_return"].notna().any():
        bars = alt.Chart(movers.dropna(subset=["total_return"])).mark_bar().encode(
            x=alt.X("total_return:Q", title="total return", axis=alt.Axis(format="%")),
            y=alt.Y("ticker:N", sort="-x", title=None),
            color=alt.condition("datum.total_return >= 0", alt.value("#2e7d32"), alt.value("#c62828")),
            tooltip=["ticker", alt.Tooltip("total_return:Q", format="+.2%"), alt.Tooltip("dividend:Q")],
        ).properties(height=BAR_ROW_PX * max(len(movers), MIN_BARS) + 30)
        st.altair_chart(bars, width="stretch")
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
    with market_tab:
        if daily_table is None:
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


main()
