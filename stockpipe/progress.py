"""Fetch progress people can read: a tqdm bar with the rate limiter's exact ETA on a terminal, log lines elsewhere."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


class Progress:
    """Fetch progress. On a terminal, a tqdm bar whose postfix counts down rate-limit waits with an ETA; elsewhere
    (CI logs, Databricks jobs) one log line per wait longer than a second."""

    def __init__(self, total: int, enabled: bool = True) -> None:
        self.total = total
        self.done = 0
        self._lock = threading.Lock()
        # Seconds until n more calls can be made; the client's limiter sets it once the client exists.
        self.eta: Callable[[int], float] = lambda remaining: 0.0
        self._bar: Any = None
        self._started = time.monotonic()
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            # tqdm's own ETA extrapolates from past speed, which a rate-limit wait makes meaningless: the postfix
            # shows the limiter's exact ETA instead.
            self._bar = tqdm(total=total, unit="ticker", file=sys.stderr, leave=False, dynamic_ncols=True,
                             bar_format="{desc}: {n_fmt}/{total_fmt} tickers |{bar}| {elapsed}{postfix}")

    def remaining(self) -> int:
        return self.total - self.done

    def waiting(self, seconds: float, reason: str) -> None:
        if seconds < 1:
            return
        eta = self.eta(self.remaining())
        if self._bar is not None:
            self._bar.set_postfix_str(f"waiting {seconds:.0f}s ({reason}); ETA {eta:.0f}s")
        else:
            log.info("waiting %.1f s (%s); %d ticker(s) left, ETA %.0f s", seconds, reason, self.remaining(), eta)

    def sleep(self, seconds: float) -> None:
        """Sleep in one-second steps so the countdown moves (a bounded loop: ceil(seconds) steps)."""
        left = seconds
        while left > 0:
            if self._bar is not None:
                self._bar.set_postfix_str(f"waiting {left:.0f}s (rate limit); ETA {self.eta(self.remaining()):.0f}s")
            step = min(1.0, left)
            time.sleep(step)
            left -= step

    def advance(self, ticker: str) -> None:
        with self._lock:  # concurrent fetches finish on several threads
            self.done += 1
            if self._bar is not None:
                self._bar.set_description_str(ticker)
                self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
