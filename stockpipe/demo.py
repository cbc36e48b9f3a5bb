"""`make demo`: the five scripts a newcomer runs, in the assignment's order, on the offline sample.

    python broken_stock_harvester.py --source sample --from 2024-01-08 --to 2024-01-12
    python fixed_stock_harvester.py --source sample --from 2024-01-08 --to 2024-01-12
    python daily_bars.py
    python maintenance.py
    python external_table.py

Each step prints the command it stands for and then exactly what that command prints, so any step can be run again
alone. They run in this one process, through each script's own `main(argv)`, so they share one Spark session: run
one by one, each pays a JVM start and its first jobs' warm-up of its own (on a 2-core laptop the five processes took
130 s, the one process 75 s; see docs/speed.md). The first step that fails stops the demo with its exit code, as
`make` would.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from pathlib import Path

DEMO_FROM, DEMO_TO = "2024-01-08", "2024-01-12"


def steps(date_from: str, date_to: str, tickers: str | None, engine: str | None) -> list[tuple[str, list[str]]]:
    """(script, argv) in the order the assignment takes them: the starter's bugs, the fix, the daily table built on
    it, maintenance, the external table."""
    picked = ["--tickers", tickers] if tickers else []
    chosen = ["--engine", engine] if engine else []
    harvest = ["--source", "sample", *picked, "--from", date_from, "--to", date_to, *chosen]
    return [("broken_stock_harvester", harvest), ("fixed_stock_harvester", harvest), ("daily_bars", chosen),
            ("maintenance", chosen), ("external_table", chosen)]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--from", dest="date_from", default=DEMO_FROM, metavar="YYYY-MM-DD",
                        help=f"first day [{DEMO_FROM}]")
    parser.add_argument("--to", dest="date_to", default=DEMO_TO, metavar="YYYY-MM-DD", help=f"last day [{DEMO_TO}]")
    parser.add_argument("--tickers", help="comma-separated symbols [the harvesters' eight]")
    parser.add_argument("--engine", help="passed to every script [their default: auto]")
    return parser


def main(argv: list[str] | None = None, *, door: Callable[[str], Callable[[list[str]], int]] | None = None) -> int:
    args = build_parser().parse_args(argv)
    find = door or _door
    for script, script_argv in steps(args.date_from, args.date_to, args.tickers, args.engine):
        print(f"\n$ python {script}.py {' '.join(script_argv)}".rstrip(), flush=True)
        code = find(script)(script_argv)
        sys.stdout.flush()
        if code != 0:
            print(f"demo: {script}.py exited {code}; the steps after it did not run", file=sys.stderr)
            return code
    return 0


def _door(script: str) -> Callable[[list[str]], int]:
    """A top-level script's main(argv). The scripts sit at the repository's root, beside this package."""
    root = str(Path(__file__).resolve().parents[1])
    if root not in sys.path:
        sys.path.insert(0, root)
    main_of_script: Callable[[list[str]], int] = importlib.import_module(script).main
    return main_of_script


if __name__ == "__main__":
    import databricks_utils as du

    du.run_as_script(main)  # stops the shared session (locally only) and exits with the demo's code
