"""The dashboard's screenshot for the README, and its load time: its server on a loopback port over the tables
under --base, Debian's chromium driven by playwright (no browser download), timed from navigation to the first
chart drawn, then each view's own redraw after a change of ticker.

    python -m benchmarks.dashboard_shot --base delta_tables --out docs/dashboard.png
    python -m benchmarks.dashboard_shot --base delta_tables --views shots/ --width 1280   # each view, as a person
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

from benchmarks.streamlit_server import streamlit_server

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
CHART = "[data-testid='stVegaLiteChart'] canvas, [data-testid='stVegaLiteChart'] svg"
TABS = ("Market", "Daily", "Intraday", "Operations", "Table health")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=Path, default=Path("delta_tables"))
    parser.add_argument("--out", type=Path, default=None, help="write the screenshot here")
    parser.add_argument("--loads", type=int, default=3, help="page loads to time")
    parser.add_argument("--views", type=Path, default=None, help="write one screenshot per view (tab) into this folder")
    parser.add_argument("--width", type=int, default=1400, help="the browser window's width in pixels [1400]")
    parser.add_argument("--app", type=Path, default=None, help="the dashboard script [this repository's dashboard.py]")
    args = parser.parse_args(argv)
    with streamlit_server(args.base, app=args.app, cwd=Path.cwd()) as address, sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": args.width, "height": 1100})
        loads = []
        for _ in range(max(1, args.loads)):  # the first load also warms Streamlit's cache of the daily table
            started = time.monotonic()
            page.goto(address, timeout=120_000)
            page.wait_for_selector(CHART, timeout=120_000)
            loads.append(time.monotonic() - started)
        print(f"page load to the first chart: first {loads[0]:.2f} s, median of the rest "
              f"{statistics.median(loads[1:] or loads):.2f} s ({len(loads)} loads, {args.base})")
        if args.out:
            page.wait_for_timeout(1500)  # let the second chart finish drawing
            page.screenshot(path=str(args.out), full_page=True)
            print(f"wrote {args.out}")
        if args.views:
            args.views.mkdir(parents=True, exist_ok=True)
            for tab in TABS:
                page.get_by_role("tab", name=tab).click()
                page.wait_for_timeout(2500)  # the view's charts and tables draw
                shot = args.views / f"{tab.lower().replace(' ', '_')}_{args.width}.png"
                page.screenshot(path=str(shot), full_page=True)
                print(f"wrote {shot}")
        browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
