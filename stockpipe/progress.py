"""Progress people can read: the fetch as a tqdm bar with the rate limiter's exact ETA on a terminal (log lines
elsewhere), and long Spark work after it as timed phase lines."""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

log = logging.getLogger(__name__)


class Progress:
    """Fetch progress. On a terminal, a tqdm bar whose postfix counts down rate-limit waits with an ETA; elsewhere
    (CI logs, Databricks jobs) one log line per wait longer than a second."""

    def __init__(self, total: int, enabled: bool = True, unit: str = "ticker") -> None:
        self.total = total
        self.unit = unit
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
            self._bar = tqdm(total=total, unit=unit, file=sys.stderr, leave=False, dynamic_ncols=True,
                             bar_format="{desc}: {n_fmt}/{total_fmt} " + unit + "s |{bar}| {elapsed}{postfix}")

    def remaining(self) -> int:
        return self.total - self.done

    def waiting(self, seconds: float, reason: str) -> None:
        if seconds < 1:
            return
        eta = self.eta(self.remaining())
        if self._bar is not None:
            self._bar.set_postfix_str(f"waiting {seconds:.0f}s ({reason}); ETA {eta:.0f}s")
        else:
            log.info("waiting %.1f s (%s); %d %s(s) left, ETA %.0f s", seconds, reason, self.remaining(), self.unit,
                     eta)

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


class WorkProgress:
    """Progress of long Spark work after the last call: what phase runs and for how long, and during a write the
    data files written of those expected, with an ETA. Every line waits `interval_s` into its phase, so work that
    finishes sooner (a short run) prints nothing."""

    def __init__(self, interval_s: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self.expected_files: int | None = None  # the write's partitions, once the run has counted them
        self._clock = clock
        self._name = ""
        self._what = ""
        self._started = clock()
        self._active = False
        self._count_files: Callable[[], int] | None = None

    def phase(self, name: str, what: str) -> None:
        self._name, self._what, self._started = name, what, self._clock()

    def elapsed(self) -> float:
        return self._clock() - self._started

    def line(self, files: int | None = None) -> str:
        text = f"{self._name}: {self._what}, {self.elapsed():.0f} s"
        if files is None:
            return text
        if self.expected_files:
            done = min(files, self.expected_files)
            text += f"; {done:,} of {self.expected_files:,} files written"
            if 0 < done < self.expected_files:
                text += f", about {self.elapsed() * (self.expected_files - done) / done:.0f} s left"
            return text
        return text + f"; {files:,} files written"

    @contextlib.contextmanager
    def ticking(self, count_files: Callable[[], int] | None = None) -> Iterator[None]:
        """A line every interval while the block runs. Nested blocks share the outer block's thread and only say
        how to count files meanwhile."""
        outer, self._count_files = self._count_files, count_files
        if self._active:
            try:
                yield
            finally:
                self._count_files = outer
            return
        self._active = True
        stop = threading.Event()

        def report() -> None:
            while not stop.wait(self.interval_s):  # ends when the block ends
                counter = self._count_files
                try:
                    log.info("%s", self.line(counter() if counter is not None else None))
                except OSError:  # a folder renamed under the count: the next tick counts again
                    continue

        thread = threading.Thread(target=report, name="work-progress", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=5)
            self._active, self._count_files = False, outer
