"""The sample as a source a run is configured with: a loopback server for the run's life, in this process or in a
process of its own (a long run that transforms while it fetches: see `stockpipe.sample.process`). Chosen where the
run is configured (`cli.build_config`); the fetch only sees a base URL and an empty key."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from stockpipe.flatfiles.store import Credentials
from stockpipe.sample.process import sample_server_process
from stockpipe.sample.server import SampleApiServer


@dataclass(frozen=True)
class SampleSource:
    universe: tuple[str, ...] = ()  # the run's tickers: the sample's grouped answers hold them
    faults: bool = False  # serve the imperfections of real feeds (--sample-faults)
    name: str = "sample"
    api_key: str = ""  # no key: a loopback server asks for none

    @contextlib.contextmanager
    def serve(self, own_process: bool = False) -> Iterator[str]:
        """The server's base URL while it runs."""
        if own_process:
            with sample_server_process(self.universe, self.faults) as url:
                yield url
        else:
            with SampleApiServer(universe=self.universe, faults=self.faults) as server:
                yield server.base_url


@dataclass(frozen=True)
class SampleFlatFiles:
    """The sample market's daily flat files, served on 127.0.0.1 for the run's life (`sample.s3`): the whole-market
    path offline, with no credentials to give (the stand-in signs nothing it checks)."""

    symbols: tuple[str, ...] | None = None  # None: the whole sample market
    name: str = "sample"

    @contextlib.contextmanager
    def serve(self) -> Iterator[tuple[str, Credentials]]:
        from stockpipe.sample.s3 import SampleFlatFilesServer

        with SampleFlatFilesServer(self.symbols) as server:
            yield server.url, Credentials("sample", "sample")
