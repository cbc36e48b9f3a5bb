"""The pictures analysis.md and docs/ show, drawn from the pipeline's own tables (read with delta-rs, no Spark):

- closes.png: the eight tickers' closes (the closing print) over the demo week (stocks_daily);
- intraday.png: one ticker's minute bars on one day, the pre-market, regular and post-market sessions shaded
  (stocks_fixed, one partition);
- price.png: NVDA through its 10-for-1 split of 2024-06-10, as traded and split-adjusted, with the 20- and 50-day
  moving averages (stocks_daily of the market demo: eight tickers, March to July 2024);
- daily.png: the market demo's last day: total return by ticker, and each ticker's 20-day volatility;
- checks.png: quality_checks of a week harvested with --sample-faults, the worst status per ticker and day, each
  cell naming the checks that did not pass.

    python -m benchmarks.evidence_charts --base delta_tables --market-base delta_tables/market_demo \
        --faults-base delta_tables/faults_demo --out docs/evidence
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import pandas as pd

from stockpipe.market_calendar import NEW_YORK, session_hours
from stockpipe.readers import read

SESSION_COLOURS = {"pre": "#dbe9f6", "regular": "#eef5ea", "post": "#fbe3d6"}


def closes(base: Path, out: Path) -> Path:
    daily = read(base / "stocks_daily", columns=["ticker", "trade_date", "close"]).to_pandas()
    tickers = sorted(daily["ticker"].unique())
    fig, axes = plt.subplots(2, (len(tickers) + 1) // 2, figsize=(12, 5), sharex=True)
    for axis, ticker in zip(axes.flat, tickers, strict=False):
        mine = daily[daily["ticker"] == ticker].sort_values("trade_date")
        axis.plot(pd.to_datetime(mine["trade_date"]), mine["close"], marker="o", color="#1f4e79")
        axis.set_title(ticker)
        axis.tick_params(axis="x", labelrotation=45, labelsize=7)
    fig.suptitle("Close per trading day (the closing print), as traded (stocks_daily, sample source)")
    fig.tight_layout()
    path = out / "closes.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def intraday(base: Path, out: Path, ticker: str, day: dt.date) -> Path:
    bars = read(base / "stocks_fixed", where={"ticker": ticker, "trade_date": day.isoformat()},
                columns=["trade_ts", "close", "market_session"]).to_pandas()
    times = pd.to_datetime(bars["trade_ts"], utc=True).dt.tz_convert(NEW_YORK).dt.tz_localize(None)
    hours = session_hours(day)
    fig, axis = plt.subplots(figsize=(12, 4))
    for session, start, end in (("pre", hours.pre_open, hours.open), ("regular", hours.open, hours.close),
                                ("post", hours.close, hours.post_close)):
        axis.axvspan(mdates.date2num(start.replace(tzinfo=None)), mdates.date2num(end.replace(tzinfo=None)),
                     color=SESSION_COLOURS[session],
                     label=f"{session} ({int((bars['market_session'] == session).sum())} bars)")
    axis.plot(times, bars["close"], color="#1f4e79", linewidth=0.9)
    axis.set_title(f"{ticker} on {day}: minute closes, New York time (stocks_fixed, one partition)")
    axis.legend(loc="upper left")
    fig.tight_layout()
    path = out / "intraday.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def price(market_base: Path, out: Path, ticker: str = "NVDA", split_day: dt.date = dt.date(2024, 6, 10)) -> Path:
    daily = read(market_base / "stocks_daily", columns=["ticker", "trade_date", "close", "adj_close", "split_factor",
                                                         "sma_20", "sma_50"]).to_pandas()
    daily = daily[daily["ticker"] == ticker].sort_values("trade_date")
    days = pd.to_datetime(daily["trade_date"])
    fig, (traded, adjusted) = plt.subplots(2, 1, figsize=(11, 6.5), sharex=True)
    traded.plot(days, daily["close"], color="#1f4e79", label="close as traded (stored)")
    traded.plot(days, daily["sma_20"] * daily["split_factor"], color="#f28e2b", label="20-day average, as traded")
    traded.plot(days, daily["sma_50"] * daily["split_factor"], color="#b07aa1", label="50-day average, as traded")
    traded.set_yscale("log")
    traded.set_ylabel("as traded (log scale)")
    adjusted.plot(days, daily["adj_close"], color="#1f4e79", label="close split-adjusted (derived)")
    adjusted.plot(days, daily["sma_20"], color="#f28e2b", label="sma_20")
    adjusted.plot(days, daily["sma_50"], color="#b07aa1", label="sma_50")
    adjusted.set_ylabel("split-adjusted")
    for axis in (traded, adjusted):
        axis.axvline(pd.Timestamp(split_day), color="grey", linestyle="--")
        axis.legend(loc="upper left", fontsize=8)
    traded.set_title(f"{ticker} through its 10-for-1 split of {split_day}: stored as traded (a tenfold step), "
                     "adjusted on read (none)")
    fig.tight_layout()
    path = out / "price.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def daily_last_day(market_base: Path, out: Path) -> Path:
    daily = read(market_base / "stocks_daily", columns=["ticker", "trade_date", "total_return", "dividend",
                                                         "volatility_20"]).to_pandas()
    last = daily[daily["trade_date"] == daily["trade_date"].max()].sort_values("total_return")
    fig, (returns, volatility) = plt.subplots(1, 2, figsize=(11, 3.8))
    returns.barh(last["ticker"], last["total_return"] * 100,
                 color=["#2e7d32" if r >= 0 else "#c62828" for r in last["total_return"]])
    returns.set_xlabel("total return, % (close + dividend over the previous close)")
    by_volatility = last.sort_values("volatility_20")
    volatility.barh(by_volatility["ticker"], by_volatility["volatility_20"] * 100, color="#4c72b0")
    volatility.set_xlabel("volatility_20, % a year (20 daily log returns)")
    fig.suptitle(f"stocks_daily on {last['trade_date'].max()}: top movers and volatility leaders (market demo)")
    fig.tight_layout()
    path = out / "daily.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


STATUS_COLOURS = {"pass": "#d9ead3", "warn": "#ffd966", "fail": "#e06666"}


def checks(faults_base: Path, out: Path) -> Path:
    # Every run's rows: the faults demo is one harvest (the day checks) and one daily build (the official-bar checks).
    rows = read(faults_base / "quality_checks", columns=["ticker", "trade_date", "check", "status"]).to_pandas()
    rows = rows.dropna(subset=["trade_date"])
    tickers = sorted(rows["ticker"].unique())
    days = sorted(rows["trade_date"].unique())
    rank = {"pass": 0, "warn": 1, "fail": 2}
    fig, axis = plt.subplots(figsize=(11, 0.5 * len(tickers) + 1.6))
    for y, ticker in enumerate(tickers):
        for x, day in enumerate(days):
            cell = rows[(rows["ticker"] == ticker) & (rows["trade_date"] == day)]
            worst = max(cell["status"], key=rank.__getitem__, default="pass")
            axis.add_patch(plt.Rectangle((x, y), 0.96, 0.9, color=STATUS_COLOURS[worst]))
            named = ", ".join(sorted(cell[cell["status"] != "pass"]["check"]))
            axis.text(x + 0.48, y + 0.45, named or f"{len(cell)} pass", ha="center", va="center", fontsize=8)
    axis.set_xlim(0, len(days))
    axis.set_ylim(0, len(tickers))
    axis.set_xticks([x + 0.48 for x in range(len(days))], [str(d) for d in days])
    axis.set_yticks([y + 0.45 for y in range(len(tickers))], tickers)
    axis.invert_yaxis()
    axis.set_frame_on(False)
    axis.tick_params(length=0)
    axis.set_title("quality_checks of a week with --sample-faults: worst status per ticker and day "
                   "(green pass, amber warn, red fail)")
    fig.tight_layout()
    path = out / "checks.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=Path, default=Path("delta_tables"))
    parser.add_argument("--market-base", type=Path, default=Path("delta_tables/market_demo"))
    parser.add_argument("--faults-base", type=Path, default=Path("delta_tables/faults_demo"))
    parser.add_argument("--out", type=Path, default=Path("docs/evidence"))
    parser.add_argument("--ticker", default="AAPL")
    parser.add_argument("--day", type=dt.date.fromisoformat, default=dt.date(2024, 1, 10))
    args = parser.parse_args(argv)
    for path in (closes(args.base, args.out), intraday(args.base, args.out, args.ticker, args.day),
                 price(args.market_base, args.out), daily_last_day(args.market_base, args.out),
                 checks(args.faults_base, args.out)):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
