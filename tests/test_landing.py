"""The landing zone on its own: the writer lock, which fetch a run resumes, and which landed fetch serves a day."""

from __future__ import annotations

import datetime as dt
import json

from stockpipe.landing import COMPLETE_MARKER, LandingZone, WriterLock
from stockpipe.massive import Page

MON, TUE, WED = dt.date(2024, 1, 8), dt.date(2024, 1, 9), dt.date(2024, 1, 10)


def page(number: int, next_url: str | None, adjusted: bool | None = False) -> Page:
    """A page as the API answers `adjusted=false` (as traded), or as every landing zone before it held."""
    body = json.dumps({"status": "OK", "adjusted": adjusted,
                       "results": [{"t": number, "o": 1, "h": 1, "l": 1, "c": 1, "v": 1}]}).encode()
    return Page("AAPL", f"http://127.0.0.1/p?cursor=c{number}", body, f"r{number}", "OK", 1, next_url,
                last_t=number, adjusted=adjusted)


def test_the_writer_lock_is_exclusive_until_released(tmp_path):
    first = WriterLock.try_acquire(tmp_path)
    assert first is not None
    assert WriterLock.try_acquire(tmp_path) is None  # another writer (a thread here; a process alike)
    first.release()
    again = WriterLock.try_acquire(tmp_path)
    assert again is not None
    again.release()


def test_an_interrupted_fetch_of_the_same_range_is_resumed_after_its_last_page(tmp_path):
    zone = LandingZone(tmp_path)
    writer = zone.new_fetch("AAPL", MON, WED)
    writer.add(page(1, "http://127.0.0.1/next-2"))
    writer.close()  # the run died here: one page landed, no _complete.json
    assert zone.resumable("AAPL", MON, TUE) is None  # another range is another fetch
    resumed = zone.resumable("AAPL", MON, WED)
    assert resumed is not None and resumed.fetch.path == writer.fetch.path
    assert resumed.fetch.last_next_url() == "http://127.0.0.1/next-2"
    assert zone.resumable("AAPL", MON, WED) is None  # held by the writer that resumed it
    resumed.add(page(2, None))
    done = resumed.finish(final_through=WED)
    assert done.complete and [p.name for p in done.pages()] == ["page-00001.json", "page-00002.json"]
    assert zone.resumable("AAPL", MON, WED) is None  # complete: nothing to resume


def test_a_page_cut_off_before_its_metadata_is_dropped_on_resume(tmp_path):
    zone = LandingZone(tmp_path)
    writer = zone.new_fetch("AAPL", MON, WED)
    writer.add(page(1, "http://127.0.0.1/next-2"))
    writer.close()
    (writer.fetch.path / "page-00002.json").write_bytes(b'{"status": "OK", "resu')  # killed between the two writes
    resumed = zone.resumable("AAPL", MON, WED)
    assert resumed is not None and [p.name for p in resumed.fetch.pages()] == ["page-00001.json"]
    resumed.close()


def test_a_fetch_whose_first_call_failed_leaves_no_folder(tmp_path):
    zone = LandingZone(tmp_path)
    writer = zone.new_fetch("AAPL", MON, WED)
    writer.abandon_if_empty()
    assert not writer.fetch.path.exists() and zone.fetches("AAPL") == []


def test_each_day_is_served_by_the_newest_complete_fetch_that_holds_it_finished(tmp_path):
    zone = LandingZone(tmp_path)
    older = zone.new_fetch("AAPL", MON, WED)
    older.add(page(1, None))
    older.finish(final_through=WED)  # fetched after Wednesday was over: all three days final
    newer = zone.new_fetch("AAPL", TUE, WED)
    newer.add(page(2, None))
    newest_complete = newer.finish(final_through=TUE)  # fetched during Wednesday: Wednesday not final
    unfinished = zone.new_fetch("AAPL", MON, WED)  # incomplete: never serves a day
    unfinished.add(page(3, "http://127.0.0.1/next"))
    unfinished.close()
    assigned, missing = zone.assign_days("AAPL", [MON, TUE, WED, dt.date(2024, 1, 11)])
    assert assigned[TUE].path == newest_complete.path
    assert assigned[MON].path == assigned[WED].path == older.fetch.path
    assert missing == [dt.date(2024, 1, 11)]
    marker = json.loads((older.fetch.path / COMPLETE_MARKER).read_text())
    assert marker == {"pages": 1, "final_through": WED.isoformat(), "adjusted": False}


def test_a_split_adjusted_fetch_is_never_served_or_resumed_as_traded(tmp_path):
    """Landing zones written before bars were fetched as traded hold split-adjusted pages (the API's default):
    their days are missing, named as split-adjusted, and their interrupted fetches are not resumed."""
    zone = LandingZone(tmp_path)
    old = zone.new_fetch("AAPL", MON, WED)
    old.add(page(1, None, adjusted=True))
    old.finish(final_through=WED)
    interrupted = zone.new_fetch("AAPL", MON, TUE)
    interrupted.add(page(2, "http://127.0.0.1/next", adjusted=None))  # an old page: no `adjusted` recorded
    interrupted.close()
    assigned, missing = zone.assign_days("AAPL", [MON, TUE, WED])
    assert assigned == {} and missing == [MON, TUE, WED]
    assert zone.split_adjusted_days("AAPL", missing) == [MON, TUE, WED]
    assert zone.resumable("AAPL", MON, TUE) is None
    marker = json.loads((old.fetch.path / COMPLETE_MARKER).read_text())
    assert marker["adjusted"] is True


def test_marker_of_a_fetch_from_before_as_traded_has_no_adjusted_and_counts_as_adjusted(tmp_path):
    zone = LandingZone(tmp_path)
    writer = zone.new_fetch("AAPL", MON, MON)
    writer.add(page(1, None))
    writer.finish(final_through=MON)
    (writer.fetch.path / COMPLETE_MARKER).write_text(json.dumps({"pages": 1, "final_through": MON.isoformat()}))
    assert zone.assign_days("AAPL", [MON]) == ({}, [MON])


def test_reference_windows_land_beside_the_tickers_each_list_apart(tmp_path):
    zone = LandingZone(tmp_path)
    assert zone.reference_fetches("splits") == []
    for kind, (lo, hi) in (("splits", (MON, TUE)), ("splits", (TUE, WED)), ("dividends", (MON, WED))):
        writer = zone.new_reference_fetch(kind, lo, hi)
        writer.add(Page(kind, f"http://127.0.0.1/v3/reference/{kind}", b'{"status": "OK"}', "r", "OK", 0, None))
        writer.finish(final_through=hi)
    unfinished = zone.new_reference_fetch("splits", MON, dt.date(2024, 1, 31))
    unfinished.close()
    splits = zone.reference_fetches("splits")
    assert [(f.date_from, f.date_to, f.complete) for f in splits] == [(MON, TUE, True), (TUE, WED, True),
                                                                       (MON, dt.date(2024, 1, 31), False)]
    assert all(f.path.parent.name == "reference=splits" for f in splits)
    assert [f.path.parent.name for f in zone.reference_fetches("dividends")] == ["reference=dividends"]
    assert zone.fetches("AAPL") == [] and zone.official().fetches("AAPL") == []
