"""The landing zone's flat files: each day's file kept raw as the endpoint served it, with its ETag beside it.

    <landing>/flatfiles/us_stocks_sip/minute_aggs_v1/2024/01/2024-01-08.csv.gz        the file, whole
                                                    .../2024-01-08.csv.gz.json       its key, ETag, size, landing time
                                                    .../2024-01-08.csv.gz.part       a download under way (or killed)
                                                    .../2024-01-08.csv.gz.part.json  the ETag that part is of

A file is complete once its `.json` is there (written after the file is renamed into place), so a killed download
leaves a part that the next run resumes when the file's ETag has not changed, and restarts when it has.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from stockpipe.flatfiles.store import day_key

FOLDER = "flatfiles"


@dataclass(frozen=True)
class LandedFile:
    """One day's file, whole, in the landing zone."""

    day: dt.date
    path: Path
    key: str
    etag: str
    size: int
    landed_at: dt.datetime  # UTC: when the download completed (the bars' ingested_at)

    @property
    def relative(self) -> str:
        """Where it lies under the landing zone, as the quarantine names a bad row's source."""
        return f"{FOLDER}/{self.key}"

    @property
    def fetch_id(self) -> str:
        tag = hashlib.blake2b(self.etag.encode(), digest_size=4).hexdigest()
        return f"{self.day.isoformat()}_{self.landed_at:%Y%m%dT%H%M%S%f}Z_{tag}"


class FlatFileZone:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root) / FOLDER

    def path(self, day: dt.date) -> Path:
        return self.root / day_key(day)

    def landed(self, day: dt.date) -> LandedFile | None:
        """The day's whole file, or None (never landed, or a download that did not finish)."""
        path = self.path(day)
        meta = path.with_name(path.name + ".json")
        if not (path.is_file() and meta.is_file()):
            return None
        found = json.loads(meta.read_text())
        return LandedFile(day, path, found["key"], found["etag"], int(found["size"]),
                          dt.datetime.fromisoformat(found["landed_at"]))

    def part(self, day: dt.date, etag: str) -> Path:
        """Where the day's file downloads: the part already there when it is of this ETag, else a fresh one."""
        part = self.path(day).with_name(self.path(day).name + ".part")
        meta = part.with_name(part.name + ".json")
        if part.exists() and (not meta.is_file() or json.loads(meta.read_text()).get("etag") != etag):
            part.unlink()  # a part of another version of the file: its bytes cannot be continued
        part.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(meta, json.dumps({"etag": etag}).encode())
        return part

    def complete(self, day: dt.date, part: Path, key: str, etag: str, size: int) -> LandedFile:
        """The finished download renamed into place, then its metadata: whole or absent to any reader."""
        path = self.path(day)
        landed_at = dt.datetime.now(dt.UTC)
        meta = path.with_name(path.name + ".json")
        meta.unlink(missing_ok=True)  # the previous version's, while its file is replaced
        part.replace(path)
        _atomic_write(meta, json.dumps({"key": key, "etag": etag, "size": size,
                                        "landed_at": landed_at.isoformat()}).encode())
        part.with_name(part.name + ".json").unlink(missing_ok=True)
        return LandedFile(day, path, key, etag, size, landed_at)


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_bytes(data)
    temporary.replace(path)
