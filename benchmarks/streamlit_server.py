"""The dashboard's Streamlit server on a loopback port, for the benchmarks and the browser tests: one place that
starts it, waits for its health check and stops it."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def streamlit_server(base: Path, app: Path | None = None, cwd: Path = REPO) -> Iterator[str]:
    """`app` (dashboard.py) over the tables under `base` on 127.0.0.1: its address, once it answers its health check
    (bounded: a minute); stopped on the way out."""
    port = free_port()
    # dashboard.py serves itself (`python dashboard.py`, as `make dashboard` starts it); another app through
    # `streamlit run`.
    command = [sys.executable, str(REPO / "dashboard.py")] if app is None else [
        sys.executable, "-m", "streamlit", "run", str(app)]
    server = subprocess.Popen(
        [*command, "--server.address", "127.0.0.1", "--server.port", str(port), "--server.headless", "true",
         "--browser.gatherUsageStats", "false"],
        env={**os.environ, "STOCKS_BASE_PATH": str(base)}, cwd=cwd, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                time.sleep(0.3)
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.terminate()
        server.wait(timeout=20)
