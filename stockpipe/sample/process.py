"""The sample server in a process of its own, for long runs: served in the harvester's process, its answers are
made under the same interpreter lock as the harvester's own work, and a transform running while the fetch goes on
(`harvest.EarlyTransform`) builds its Spark plans through that lock. Started with `python -m
stockpipe.sample.process`, it prints its address on its first line and stops when its standard input closes, so it
never outlives the run that started it (a killed harvester included)."""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence

from stockpipe.errors import PipelineError
from stockpipe.sample.server import SampleApiServer

START_TIMEOUT_S = 60.0  # imports and the first bind; a machine under load can take a while
STOP_TIMEOUT_S = 5.0


@contextlib.contextmanager
def sample_server_process(universe: Sequence[str], faults: bool) -> Iterator[str]:
    """Start the sample server in a child process on 127.0.0.1; yields its base URL; stops it on exit."""
    argv = [sys.executable, "-m", "stockpipe.sample.process", "--universe", ",".join(universe)]
    if faults:
        argv.append("--faults")
    child = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        first: list[str] = []
        reader = threading.Thread(target=lambda: first.append(child.stdout.readline() if child.stdout else ""),
                                  daemon=True)
        reader.start()
        reader.join(START_TIMEOUT_S)
        url = first[0].strip() if first else ""
        if not url.startswith("http://127.0.0.1:"):
            raise PipelineError(f"the sample server did not start (exit code {child.poll()})")
        yield url
    finally:
        if child.stdin is not None:
            with contextlib.suppress(OSError):
                child.stdin.close()  # its signal to stop
        try:
            child.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(STOP_TIMEOUT_S)
        if child.stdout is not None:
            child.stdout.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--universe", default="", help="tickers added to the grouped answers, comma-separated")
    parser.add_argument("--faults", action="store_true", help="serve the sample's injected feed imperfections")
    args = parser.parse_args(argv)
    universe = [t for t in args.universe.split(",") if t]
    with SampleApiServer(universe=universe, faults=args.faults) as server:
        print(server.base_url, flush=True)
        sys.stdin.read()  # until the parent closes it, or dies
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
