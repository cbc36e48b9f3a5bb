"""The sample market's corporate actions: the splits and cash dividends the eight tickers really had, as
`/v3/reference/splits` and `/v3/reference/dividends` list them. The bar generator prices them in (a split changes the
basis as traded; a price falls by about the dividend on its ex-date); the server lists them."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from collections.abc import Iterable
from typing import Any

from stockpipe.market_calendar import trading_days

# Since 2024-05-28 US trades settle T+1, so the ex-date is the record date; before, under T+2, the ex-date was one
# business day before it.
T_PLUS_ONE_FROM = dt.date(2024, 5, 28)


def _stable_id(*parts: object) -> str:
    """An id in the API's shape (E + 64 hex digits) that never changes for the same action."""
    return "E" + hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=32).hexdigest()


@dataclasses.dataclass(frozen=True)
class Split:
    """One split as `/v3/reference/splits` lists it: `split_to` new shares for every `split_from` old ones, from
    `execution_date` on (the first day the stock trades on the new basis)."""

    ticker: str
    execution_date: dt.date
    split_from: float
    split_to: float

    @property
    def ratio(self) -> float:
        return self.split_to / self.split_from

    @property
    def id(self) -> str:
        return _stable_id(self.ticker, self.execution_date)

    def as_json(self) -> dict[str, Any]:
        return {"execution_date": self.execution_date.isoformat(), "id": self.id, "split_from": self.split_from,
                "split_to": self.split_to, "ticker": self.ticker}


@dataclasses.dataclass(frozen=True)
class Dividend:
    """One cash dividend as `/v3/reference/dividends` lists it. `cash_amount` is per share as declared at the time,
    so on the basis the stock traded then (AAPL's before its 2020 split are four times its later ones)."""

    ticker: str
    ex_dividend_date: dt.date
    cash_amount: float
    declaration_date: dt.date
    record_date: dt.date
    pay_date: dt.date
    frequency: int = 4  # payments a year: 0 one-time, 1, 2, 4, 12
    dividend_type: str = "CD"  # CD regular cash, SC special cash, LT/ST capital gains
    currency: str = "USD"

    @property
    def id(self) -> str:
        # "dividend" keeps it apart from a split's id should both fall on one day.
        return _stable_id("dividend", self.ticker, self.ex_dividend_date)

    def as_json(self) -> dict[str, Any]:
        return {"cash_amount": self.cash_amount, "currency": self.currency,
                "declaration_date": self.declaration_date.isoformat(), "dividend_type": self.dividend_type,
                "ex_dividend_date": self.ex_dividend_date.isoformat(), "frequency": self.frequency, "id": self.id,
                "pay_date": self.pay_date.isoformat(), "record_date": self.record_date.isoformat(),
                "ticker": self.ticker}


# The eight tickers' real splits since 2020 (ex-dates as the exchanges traded them), so a sample backfill across them
# shows the same jumps as traded that the real API's unadjusted bars show.
SAMPLE_SPLITS: tuple[Split, ...] = (
    Split("AAPL", dt.date(2020, 8, 31), 1, 4),
    Split("TSLA", dt.date(2020, 8, 31), 1, 5),
    Split("NVDA", dt.date(2021, 7, 20), 1, 4),
    Split("AMZN", dt.date(2022, 6, 6), 1, 20),
    Split("GOOGL", dt.date(2022, 7, 18), 1, 20),
    Split("TSLA", dt.date(2022, 8, 25), 1, 3),
    Split("NVDA", dt.date(2024, 6, 10), 1, 10),
)


def split_factor(ticker: str, day: dt.date, splits: Iterable[Split] = SAMPLE_SPLITS) -> float:
    """How many of today's shares one share traded on `day` became: the product of the ratios of the ticker's
    splits executed after `day`. A price as traded is today's basis times this; its volume, divided by it."""
    factor = 1.0
    for split in splits:
        if split.ticker == ticker and split.execution_date > day:
            factor *= split.ratio
    return factor


def _business_day(day: dt.date, step: int) -> dt.date:
    """`day`, or the nearest NYSE session in the direction of `step` (+1 later, -1 earlier): no payment on a
    weekend or a market holiday."""
    while not trading_days(day, day):
        day += dt.timedelta(days=step)
    return day


def _quarterly(ticker: str, declared_before: int, paid_after: int, table: str) -> tuple[Dividend, ...]:
    """Dividends from "ex-date amount" pairs, with the ticker's habitual lead from declaration to ex-date and lag
    from record date to payment (calendar days, moved to a session)."""
    dividends = []
    for ex_text, amount_text in zip(*[iter(table.split())] * 2, strict=True):
        ex = dt.date.fromisoformat(ex_text)
        record = ex if ex >= T_PLUS_ONE_FROM else _business_day(ex + dt.timedelta(days=1), +1)
        dividends.append(Dividend(
            ticker=ticker, ex_dividend_date=ex, cash_amount=float(amount_text),
            declaration_date=_business_day(ex - dt.timedelta(days=declared_before), -1), record_date=record,
            pay_date=_business_day(record + dt.timedelta(days=paid_after), +1)))
    return tuple(dividends)


# Quarterly cash dividends of roughly the real size and season, 2019 through 2026, amounts as declared at the time:
# AAPL's before its 4-for-1 split of 2020-08-31 and NVDA's before each of its splits are on the older basis. META
# paid its first in 2024, GOOGL in June 2024. Ex-dates are NYSE trading days (a test pins that).
SAMPLE_DIVIDENDS: tuple[Dividend, ...] = tuple(sorted(
    (
        *_quarterly("AAPL", 8, 6, """
            2019-02-08 0.73 2019-05-10 0.77 2019-08-09 0.77 2019-11-07 0.77
            2020-02-07 0.77 2020-05-08 0.82 2020-08-07 0.82 2020-11-06 0.205
            2021-02-05 0.205 2021-05-07 0.22 2021-08-06 0.22 2021-11-05 0.22
            2022-02-04 0.22 2022-05-06 0.23 2022-08-05 0.23 2022-11-04 0.23
            2023-02-10 0.23 2023-05-12 0.24 2023-08-11 0.24 2023-11-10 0.24
            2024-02-09 0.24 2024-05-10 0.25 2024-08-12 0.25 2024-11-08 0.25
            2025-02-10 0.25 2025-05-12 0.26 2025-08-11 0.26 2025-11-10 0.26
            2026-02-09 0.26 2026-05-11 0.27 2026-08-10 0.27 2026-11-09 0.27"""),
        *_quarterly("MSFT", 28, 22, """
            2019-02-20 0.46 2019-05-15 0.46 2019-08-14 0.46 2019-11-20 0.51
            2020-02-19 0.51 2020-05-20 0.51 2020-08-19 0.51 2020-11-18 0.56
            2021-02-17 0.56 2021-05-19 0.56 2021-08-18 0.56 2021-11-17 0.62
            2022-02-16 0.62 2022-05-18 0.62 2022-08-17 0.62 2022-11-16 0.68
            2023-02-15 0.68 2023-05-17 0.68 2023-08-16 0.68 2023-11-15 0.75
            2024-02-14 0.75 2024-05-15 0.75 2024-08-15 0.75 2024-11-21 0.83
            2025-02-20 0.83 2025-05-15 0.83 2025-08-21 0.83 2025-11-20 0.91
            2026-02-19 0.91 2026-05-21 0.91 2026-08-20 0.91 2026-11-19 1.00"""),
        *_quarterly("JPM", 17, 27, """
            2019-01-04 0.80 2019-04-04 0.80 2019-07-03 0.80 2019-10-03 0.90
            2020-01-03 0.90 2020-04-03 0.90 2020-07-02 0.90 2020-10-05 0.90
            2021-01-05 0.90 2021-04-05 0.90 2021-07-02 0.90 2021-10-05 1.00
            2022-01-05 1.00 2022-04-05 1.00 2022-07-05 1.00 2022-10-05 1.00
            2023-01-05 1.00 2023-04-05 1.00 2023-07-05 1.00 2023-10-05 1.05
            2024-01-04 1.05 2024-04-04 1.15 2024-07-05 1.15 2024-10-04 1.25
            2025-01-06 1.25 2025-04-04 1.40 2025-07-03 1.40 2025-10-06 1.50
            2026-01-06 1.50 2026-04-06 1.50 2026-07-06 1.50 2026-10-06 1.60"""),
        *_quarterly("META", 20, 5, """
            2024-02-21 0.50 2024-06-14 0.50 2024-09-16 0.50 2024-12-16 0.50
            2025-03-14 0.525 2025-06-16 0.525 2025-09-22 0.525 2025-12-15 0.525
            2026-03-16 0.55 2026-06-15 0.55 2026-09-21 0.55"""),
        *_quarterly("GOOGL", 45, 7, """
            2024-06-10 0.20 2024-09-09 0.20 2024-12-09 0.20
            2025-03-10 0.20 2025-06-09 0.21 2025-09-08 0.21 2025-12-08 0.21
            2026-03-09 0.21 2026-06-08 0.22 2026-09-08 0.22"""),
        *_quarterly("NVDA", 8, 23, """
            2019-02-28 0.16 2019-05-30 0.16 2019-08-28 0.16 2019-11-27 0.16
            2020-02-27 0.16 2020-06-04 0.16 2020-09-01 0.16 2020-12-03 0.16
            2021-03-09 0.16 2021-06-09 0.16 2021-08-31 0.04 2021-11-30 0.04
            2022-03-02 0.04 2022-06-08 0.04 2022-08-31 0.04 2022-11-30 0.04
            2023-03-07 0.04 2023-06-07 0.04 2023-09-06 0.04 2023-12-05 0.04
            2024-03-05 0.04 2024-06-11 0.01 2024-09-12 0.01 2024-12-05 0.01
            2025-03-12 0.01 2025-06-11 0.01 2025-09-11 0.01 2025-12-04 0.01
            2026-03-11 0.01 2026-06-10 0.01 2026-09-10 0.01"""),
    ),
    key=lambda d: (d.ex_dividend_date, d.ticker),
))
