"""`make demo`: the scripts a newcomer runs, in the assignment's order, on the offline sample, as two nights of a
real schedule would run them:

    python broken_stock_harvester.py --source sample --from 2024-01-08 --to 2024-01-12
    python fixed_stock_harvester.py --source sample --from 2024-01-08 --to 2024-01-10     (night 1)
    python fixed_stock_harvester.py --source sample --from 2024-01-10 --to 2024-01-12     (night 2)
    python daily_bars.py
    python maintenance.py --all
    python external_table.py

Night 2 reaches back over night 1's last day, as the harvester's default range (the last five calendar days) does
every night: that day is replaced, so VACUUM has replaced files to delete, and every run adds small files to the
run log and the checks for OPTIMIZE to compact. Each step prints its command and a few lines of what it found; its
whole output goes to a file under the tables' folder (`demo/`), or to the terminal with -v. Any step can be run
again alone with the command shown. They run in this one process, through each script's own `main(argv)`, so they
share one Spark session: run one by one, each pays a JVM start and its first jobs' warm-up (docs/speed.md). The
first step that fails stops the demo with its exit code, as `make` would.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib
import io
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

DEMO_FROM, DEMO_TO = "2024-01-08", "2024-01-12"
# What each step's story is made of: the lines of its own output that match (the rest is in its file).
STORY: dict[str, re.Pattern[str]] = {
    "broken_stock_harvester": re.compile(r"Tickers expected:|Partition directories created|Wall time:"),
    "fixed_stock_harvester": re.compile(r"Table |Partitions written:|Quality checks|Quarantined:|warning:|FAILED|KEPT"),
    "daily_bars": re.compile(r"Table |Checks against the official daily bars:"),
    "maintenance": re.compile(r"  (stocks_fixed|stocks_daily|pipeline_runs|quality_checks): OPTIMIZE|FAILED"),
    "external_table": re.compile(r"Registered |  after DROP:|Partition pruning:"),
}
# What each step shows the reader, before its lines.
ABOUT = {
    "broken_stock_harvester": "Part 1: the starter, its three bugs intact",
    "fixed_stock_harvester": "Part 2: the fixed harvester",
    "daily_bars": "the daily table, derived from the minute bars (no API call)",
    "maintenance": "Part 3: OPTIMIZE and VACUUM of every table, health before and after",
    "external_table": "Part 4: the fixed table registered by name and queried through it",
}


@dataclass(frozen=True)
class Step:
    script: str
    argv: list[str]
    note: str = ""  # why this run, beside what the script is for

    @property
    def command(self) -> str:
        return f"python {self.script}.py {' '.join(self.argv)}".rstrip()


def _nights(date_from: str, date_to: str) -> list[tuple[str, str]]:
    """Two nightly ranges over the demo's days, the second reaching back over the first's last day; one range when
    the demo has fewer than three trading days."""
    from stockpipe.market_calendar import trading_days

    try:
        days = trading_days(dt.date.fromisoformat(date_from), dt.date.fromisoformat(date_to))
    except ValueError:
        return [(date_from, date_to)]  # the harvester refuses the dates in its own words
    if len(days) < 3:
        return [(date_from, date_to)]
    middle = days[(len(days) - 1) // 2]
    return [(date_from, middle.isoformat()), (middle.isoformat(), date_to)]


def steps(date_from: str, date_to: str, tickers: str | None, engine: str | None) -> list[Step]:
    """The assignment's order: the starter's bugs, the fix (two nights), the daily table built on it, maintenance of
    every table, the external table."""
    picked = ["--tickers", tickers] if tickers else []
    chosen = ["--engine", engine] if engine else []
    found = [Step("broken_stock_harvester", ["--source", "sample", *picked, "--from", date_from, "--to", date_to,
                                             *chosen])]
    nights = _nights(date_from, date_to)
    for number, (night_from, night_to) in enumerate(nights, start=1):
        note = f"night {number} of {len(nights)}" if len(nights) > 1 else ""
        found.append(Step("fixed_stock_harvester", ["--source", "sample", *picked, "--from", night_from, "--to",
                                                    night_to, *chosen], note))
    return [*found, Step("daily_bars", chosen), Step("maintenance", ["--all", *chosen]),
            Step("external_table", chosen)]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--from", dest="date_from", default=DEMO_FROM, metavar="YYYY-MM-DD",
                        help=f"first day [{DEMO_FROM}]")
    parser.add_argument("--to", dest="date_to", default=DEMO_TO, metavar="YYYY-MM-DD", help=f"last day [{DEMO_TO}]")
    parser.add_argument("--tickers", help="comma-separated symbols [the harvesters' eight]")
    parser.add_argument("--engine", help="passed to every script [their default: auto]")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="every script's whole output in the terminal, instead of a few lines and a file")
    return parser


def main(argv: list[str] | None = None, *, door: Callable[[str], Callable[[list[str]], int]] | None = None) -> int:
    args = build_parser().parse_args(argv)
    find = door or _door
    outputs = _outputs_folder()
    plan = steps(args.date_from, args.date_to, args.tickers, args.engine)
    started = time.monotonic()
    for number, step in enumerate(plan, start=1):
        about = ABOUT.get(step.script, "") + (f" ({step.note})" if step.note else "")
        print(f"\n[{number}/{len(plan)}] {about}\n$ {step.command}", flush=True)
        began = time.monotonic()
        if args.verbose:
            code = find(step.script)(step.argv)
            sys.stdout.flush()
        else:
            code, printed, logged = _captured(find(step.script), step.argv)
            file = outputs / f"{number:02d}_{step.script}.txt"
            file.write_text(printed + ("\n" + logged if logged else ""))
            for line in _story(step.script, printed):
                print(f"  {line}")
            print(f"  ({time.monotonic() - began:.0f} s; its whole output: {_shown(file)})", flush=True)
            for line in logged.splitlines():  # what the step warned of or failed on always shows, where it would
                if line.startswith(("warning:", "error:")):
                    print(line, file=sys.stderr)
        if code != 0:
            print(f"demo: {step.script}.py exited {code}; the steps after it did not run", file=sys.stderr)
            return code
    print(f"\nDone in {time.monotonic() - started:.0f} s. The tables are under {_shown(outputs.parent)}/.")
    print("Next: make dashboard   (the tables in a browser at http://127.0.0.1:8501)")
    print("      python <script>.py --help   (each step above alone, with its options)")
    print("      analysis.md   (the assignment's answers, each figure with the command that produced it)")
    return 0


def _captured(main: Callable[[list[str]], int], argv: list[str]) -> tuple[int, str, str]:
    """Run a door with its stdout and its log (stderr) kept, not shown: its exit code and both texts."""
    printed, logged = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(logged):
        code = main(argv)
    return code, printed.getvalue(), logged.getvalue()


def _story(script: str, printed: str) -> list[str]:
    """The lines a newcomer reads: the step's own lines that say what it found."""
    pattern = STORY.get(script)
    return [line.strip() for line in printed.splitlines() if pattern is not None and pattern.match(line)]


def _outputs_folder() -> Path:
    """demo/ in the tables' folder (STOCKS_BASE_PATH, or delta_tables), where each step's whole output goes."""
    import databricks_utils as du

    folder = Path(du.get_base_path("demo"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


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
