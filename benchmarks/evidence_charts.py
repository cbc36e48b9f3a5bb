"""The pictures analysis.md shows, drawn from the pipeline's own tables (read with delta-rs, no Spark):

- closes.png: the eight tickers' regular-session closes over the demo week (stocks_daily);
- intraday.png: one ticker's minute bars on one day, the pre-market, regular and post-market sessions shaded
  (stocks_fixed, one partition);
- split.png: NVDA across its 10-for-1 split of 2024-06-10, as traded and split-adjusted (a stocks_daily built from a
  sample harvest of those two weeks).

    python -m benchmarks.evidence_charts --base delta_tables --split-base delta_tables/split_demo --out docs/evidence
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
    fig.suptitle("Regular-session close per trading day, as traded (stocks_daily, sample source)")
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


def split(split_base: Path, out: Path) -> Path:
    daily = read(split_base / "stocks_daily", columns=["ticker", "trade_date", "close", "adj_close"]).to_pandas()
    daily = daily[daily["ticker"] == "NVDA"].sort_values("trade_date")
    days = pd.to_datetime(daily["trade_date"])
    fig, axis = plt.subplots(figsize=(10, 4))
    axis.plot(days, daily["close"], marker="o", label="as traded (stored)")
    axis.plot(days, daily["adj_close"], marker="o", label="split-adjusted (derived from stocks_splits)")
    axis.axvline(pd.Timestamp("2024-06-10"), color="grey", linestyle="--", label="10-for-1 split, 2024-06-10")
    axis.set_yscale("log")
    axis.set_ylabel("regular-session close (log scale)")
    axis.set_title("NVDA across its split: the stored prices jump tenfold, the adjusted ones do not")
    axis.legend()
    fig.tight_layout()
    path = out / "split.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=Path, default=Path("delta_tables"))
    parser.add_argument("--split-base", type=Path, default=Path("delta_tables/split_demo"))
    parser.add_argument("--out", type=Path, default=Path("docs/evidence"))
    parser.add_argument("--ticker", default="AAPL")
    parser.add_argument("--day", type=dt.date.fromisoformat, default=dt.date(2024, 1, 10))
    args = parser.parse_args(argv)
    for path in (closes(args.base, args.out), intraday(args.base, args.out, args.ticker, args.day),
                 split(args.split_base, args.out)):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
