"""Each door's --help says the same things the same way: defaults as values, its exit codes, what -v adds to it."""

from __future__ import annotations

import importlib
import re

import pytest

from stockpipe.cli import ENGINES
from tests.helpers import ROOT

DOORS = ("broken_stock_harvester", "fixed_stock_harvester", "daily_bars", "maintenance", "external_table",
         "market_daily")


def help_text(door: str, capsys) -> str:
    with pytest.raises(SystemExit) as ended:
        importlib.import_module(door).main(["--help"])
    assert ended.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("door", DOORS)
def test_help_shows_defaults_as_values_and_the_exit_codes(door, capsys):
    text = help_text(door, capsys)
    assert "get_base_path" not in text and "(" + "'" not in text  # a default is a value, not a call
    assert "delta_tables/stocks_" in text
    flat = " ".join(text.split())
    assert re.search(r"Exit codes:? ?0 ", flat) or "Exit codes: 0" in flat, door
    assert all(f" {code} " in flat[flat.index("Exit codes"):] for code in ("0", "1", "2")), door


def test_each_doors_verbose_flag_says_what_it_adds_to_that_door(capsys):
    said = {}
    for door in DOORS:
        flat = " ".join(help_text(door, capsys).split())
        said[door] = flat[flat.index("-v, --verbose") + len("-v, --verbose"):].split(" --")[0].strip()
        assert said[door].startswith("log diagnostics: "), door
    assert len(set(said.values())) >= 4  # the two harvesters log the same calls; every other door its own work


def test_the_readme_lists_the_engines_the_doors_accept():
    assert f"--engine {'|'.join(ENGINES)}" in (ROOT / "README.md").read_text()
