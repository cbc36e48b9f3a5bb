"""The dashboard: the pipeline's tables in a browser, read with delta-rs (no JVM, no writes).

    make dashboard                  # builds the demo tables first when they are missing
    streamlit run dashboard.py      # tables under STOCKS_BASE_PATH (default delta_tables)

Daily candlesticks from stocks_daily (as traded or split-adjusted) with volume; one day's minute bars from
stocks_fixed with the pre-market, regular and post-market sessions shaded; the run log; each table's health. Each
view reads only what it shows: the daily view stocks_daily, the intraday view one (ticker, trade_date) file.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path

import altair as alt
import pandas as pd
import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `streamlit run` puts the script's folder first anyway

from stockpipe.market_calendar import session_hours
from stockpipe.readers import Health, health, open_table, partitions, read

TABLES = ("stocks_fixed", "stocks_splits", "stocks_daily", "pipeline_runs")
MAKES = {
    "stocks_fixed": "python fixed_stock_harvester.py",
    "stocks_splits": "python fixed_stock_harvester.py",
    "stocks_daily": "python daily_bars.py",
    "pipeline_runs": "any script (every run appends a row)",
}
# The daily chart's span, in months back from the last stored day (None: everything stored).
RANGES: dict[str, int | None] = {"3 months": 3, "1 year": 12, "5 years": 60, "all": None}
SESSION_COLOURS = {"pre": "#dbe9f6", "regular": "#eef5ea", "post": "#fbe3d6"}


def base_path() -> Path:
    return Path(os.environ.get("STOCKS_BASE_PATH", "delta_tables"))


def missing(name: str) -> None:
    st.info(f"No `{name}` table under `{base_path()}` yet: `{MAKES[name]}` creates it (`make demo` builds them all).")


@st.cache_data(ttl=60, show_spinner=False)
def daily(base: str, version: int) -> pd.DataFrame:
    return read(Path(base) / "stocks_daily").to_pandas()


@st.cache_data(ttl=60, show_spinner=False)
def tickers_and_days(base: str, version: int) -> dict[str, list[str]]:
    """Each ticker's stored days, from the minute table's log alone (no data file opened), once per version: the
    5-year table's log lists 10,064 files, which is the page's cost if replayed on every redraw."""
    days: dict[str, list[str]] = {}
    for ticker, day in partitions(Path(base) / "stocks_fixed", ["ticker", "trade_date"]):
        days.setdefault(ticker, []).append(day)  # sorted pairs: each ticker's days in order
    return days


@st.cache_data(ttl=60, show_spinner=False)
def table_health(base: str, name: str, version: int | None) -> Health | None:
    return health(Path(base) / name) if version is not None else None


@st.cache_data(ttl=60, show_spinner=False)
def minutes(base: str, version: int, ticker: str, day: str) -> pd.DataFrame:
    return read(Path(base) / "stocks_fixed", where={"ticker": ticker, "trade_date": day},
                columns=["trade_ts", "open", "high", "low", "close", "volume", "market_session"]).to_pandas()


def candlesticks(frame: pd.DataFrame, adjusted: bool) -> alt.VConcatChart:
    """One candle per trading day (an ordinal axis: no gaps for nights and weekends), volume below."""
    prefix = "adj_" if adjusted else ""
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
    price = alt.layer(
        base.mark_rule().encode(y=alt.Y("_low:Q", title="price", scale=alt.Scale(zero=False)), y2="_high:Q"),
        base.mark_bar(size=14).encode(y="_open:Q", y2="_close:Q"),
    ).properties(height=300, width="container")
    volume = base.mark_bar(size=14).encode(y=alt.Y("_volume:Q", title="volume", axis=alt.Axis(format="~s"))
                                           ).properties(height=100, width="container")
    return alt.vconcat(price, volume)


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
    line = alt.Chart(frame).mark_line(color="#1f4e79").encode(
        x="time:T", y=alt.Y("close:Q", scale=alt.Scale(zero=False), title="close"),
        tooltip=["time:T", "open:Q", "high:Q", "low:Q", "close:Q", "volume:Q", "market_session:N"],
    )
    return alt.layer(shading, line).properties(height=300)


def main() -> None:
    st.set_page_config(page_title="Stock pipeline", layout="wide")
    st.title("Stock pipeline")
    base = base_path()
    st.caption(f"Tables under `{base}` (STOCKS_BASE_PATH), read with delta-rs. Prices are stored as traded; "
               "split-adjusted ones come from stocks_splits.")
    # Each table's snapshot is loaded once per redraw (the 5-year minute table's log lists 10,064 files).
    opened = {name: open_table(base / name) for name in TABLES}
    daily_table = opened["stocks_daily"]
    daily_tab, intraday_tab, runs_tab, health_tab = st.tabs(["Daily", "Intraday", "Runs", "Table health"])
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
            st.altair_chart(candlesticks(mine, adjusted), use_container_width=True)
            table = mine[["trade_date", "open", "high", "low", "close", "volume", "vwap", "adj_close", "daily_return"]]
            st.dataframe(table.round({"vwap": 2, "volume": 0, "adj_close": 2, "daily_return": 4}), hide_index=True)
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
            st.altair_chart(intraday(bars, dt.date.fromisoformat(day)), use_container_width=True)
            counts = bars["market_session"].value_counts()
            st.caption(f"{len(bars):,} bars: " + ", ".join(f"{s} {counts.get(s, 0):,}" for s in SESSION_COLOURS))
    with runs_tab:
        if opened["pipeline_runs"] is None:
            missing("pipeline_runs")
        else:
            runs = read(base / "pipeline_runs").to_pandas().sort_values("started_at", ascending=False)
            st.dataframe(runs[["started_at", "script", "status", "exit_code", "engine", "tickers", "calls",
                               "rate_limited", "waited_s", "rows_written", "table_version", "message"]]
                         .rename(columns={"rate_limited": "429s"}), hide_index=True)
    with health_tab:
        rows = []
        for name in TABLES:
            table = opened[name]
            found = table_health(str(base), name, table.version() if table is not None else None)
            rows.append({"table": name, "version": found.version if found else None,
                         "live files": found.live_files if found else None,
                         "size (KiB)": round(found.total_bytes / 1024, 1) if found else None,
                         "last OPTIMIZE": found.last_optimize if found else None,
                         "last VACUUM": found.last_vacuum if found else None,
                         "status": "ok" if found else f"missing: {MAKES[name]}"})
        st.dataframe(pd.DataFrame(rows), hide_index=True)


main()
