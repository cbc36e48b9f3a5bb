"""The two harvesters, fetch -> land -> transform -> write, one job a module:

- `fixed`: the homework's answer, told as the story of a run (`run_fixed`);
- `flat`: the whole market from the provider's daily flat files, a day a unit of work (`run_flatfiles`);
- `broken`: the starter, its three bugs intact (`run_broken`);
- `steps`: what the fixed run does after its fetch, each step returning what it did;
- `bars`: landed pages read, judged by the bar rules and ranked to one row a minute;
- `background`: Spark started, and a long run's tickers transformed, while the fetch goes on;
- `report`: what a run did, and the exit-code policy that reads it.
"""

from stockpipe.harvest.broken import run_broken
from stockpipe.harvest.fixed import run_fixed
from stockpipe.harvest.flat import run_flatfiles
from stockpipe.harvest.report import BrokenReport, FixedReport, TickerReport

__all__ = ["BrokenReport", "FixedReport", "TickerReport", "run_broken", "run_fixed", "run_flatfiles"]
