"""The landing zone on its own: the writer lock, which fetch a run resumes, and which landed fetch serves a day."""

from __future__ import annotations

import datetime as dt
import json

from stockpipe.landing import COMPLETE_MARKER, LandingZone, WriterLock
from stockpipe.massive import Page

MON, TUE, WED = dt.date(2024, 1, 8), dt.date(2024, 1, 9), dt.date(2024, 1, 10)


def page(number: int, next_url: str | None) -> Page:
    body = json.dumps({"status": "OK", "results": [{"t": number, "o": 1, "h": 1, "l": 1, "c": 1, "v": 1}]}).encode()
    return Page("AAPL", f"http://127.0.0.1/p?cursor=c{number}", body, f"r{number}", "OK", 1, next_url)


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
    assert marker == {"pages": 1, "final_through": WED.isoformat()}
