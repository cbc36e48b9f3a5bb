"""A loopback stand-in for the provider's flat-file endpoint, serving the sample market's daily files, so the
whole-market path runs offline as the REST path does: the S3 calls a puller makes, path-style, on 127.0.0.1.

- `GET /flatfiles?list-type=2&prefix=...` lists the published days' keys (ListObjectsV2, paginated by a
  continuation token), each with its ETag; a day is published from 11:00 New York the next day, by the server's
  clock, so the latest day may not be there yet, as on the real endpoint.
- `HEAD` and `GET /flatfiles/<key>` answer a file's size and ETag, and its bytes (all of them, or a
  `Range: bytes=N-` or `bytes=N-M`; refused with 412 when `If-Match` names another ETag: the file was republished).
- Anything else is 404 `NoSuchKey`, as a plain S3 server answers (the real endpoint says 403 for a day outside the
  plan or not yet published; the harvester treats both alike).

Credentials are not checked: a loopback fake with nothing secret to guard. A file is made when first asked for and
kept in the sample's cache (`sample.flatfiles.day_file`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import http.server
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Self
from urllib.parse import parse_qs, quote, urlsplit
from xml.sax.saxutils import escape

from stockpipe.market_calendar import NEW_YORK, trading_days
from stockpipe.sample import loopback
from stockpipe.sample.flatfiles import BUCKET, MINUTE_PREFIX, VERSION, day_file, day_key, published

_KEY = re.compile(rf"^{re.escape(MINUTE_PREFIX)}/(\d{{4}})/(\d{{2}})/(\d{{4}}-\d{{2}}-\d{{2}})\.csv\.gz$")
FIRST_DAY = dt.date(2003, 9, 10)  # the provider's minute files reach back to 2003
MAX_KEYS = 1000


class SampleFlatFilesServer:
    """The sample market's flat files on 127.0.0.1 (port chosen by the OS), for as long as it runs."""

    def __init__(self, symbols: Sequence[str] | None = None, *, cache: Path | None = None,
                 now: Callable[[], float] = time.time, republished: dict[dt.date, int] | None = None) -> None:
        self.symbols = tuple(symbols) if symbols is not None else None  # None: the whole sample market
        self.cache = cache
        self.now = now  # the server's clock (epoch seconds): what is published by then
        # Days whose file was published again, and how many times: a new ETag (the bytes do not change here).
        self.republished = dict(republished or {})
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request answered
        self.ranges: list[str | None] = []  # the Range header of every file asked for (None: the whole file)
        self._httpd: http.server.ThreadingHTTPServer | None = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._httpd = loopback.serve(lambda request, body: self._handle(request, body=body), "sample-s3",
                                     answers_head=True)

    def stop(self) -> None:
        if self._httpd is not None:
            loopback.stop(self._httpd)
            self._httpd = None

    @property
    def url(self) -> str:
        assert self._httpd is not None, "server not started"
        return loopback.url_of(self._httpd)

    # -- what is published --------------------------------------------------------------------------------------------
    def etag(self, day: dt.date) -> str:
        """Multipart-style, as the provider's are: compared, never recomputed from the bytes."""
        text = f"{VERSION}|{day}|{self.symbols}|{self.republished.get(day, 0)}"
        return f'"{hashlib.md5(text.encode()).hexdigest()}-4"'  # an ETag, not a secret

    def _published_days(self, prefix: str) -> list[dt.date]:
        now = dt.datetime.fromtimestamp(self.now(), NEW_YORK)
        match = re.match(rf"^{re.escape(MINUTE_PREFIX)}/(\d{{4}})(?:/(\d{{2}})/?)?", prefix)
        if match and match[2]:
            first = dt.date(int(match[1]), int(match[2]), 1)
            last = (first + dt.timedelta(days=32)).replace(day=1) - dt.timedelta(days=1)
        elif match:
            first, last = dt.date(int(match[1]), 1, 1), dt.date(int(match[1]), 12, 31)
        else:
            return []  # the sample lists only its minute files, by year or month
        days = trading_days(max(first, FIRST_DAY), min(last, now.date()))
        return [day for day in days if published(day, now) and day_key(day).startswith(prefix)]

    # -- requests ------------------------------------------------------------------------------------------------
    def _handle(self, handler: http.server.BaseHTTPRequestHandler, body: bool) -> None:
        parts = urlsplit(handler.path)
        self.requests.append((handler.command, parts.path))
        path = parts.path.lstrip("/")
        if path == BUCKET or path == f"{BUCKET}/":
            self._list(handler, parse_qs(parts.query))
            return
        key = path.removeprefix(f"{BUCKET}/") if path.startswith(f"{BUCKET}/") else None
        match = _KEY.match(key or "")
        day = dt.date.fromisoformat(match[3]) if match else None
        now = dt.datetime.fromtimestamp(self.now(), NEW_YORK)
        if day is None or not trading_days(day, day) or not published(day, now) or day < FIRST_DAY:
            self._error(handler, 404, "NoSuchKey", "The specified key does not exist.", body)
            return
        etag = self.etag(day)
        self.ranges.append(handler.headers.get("Range"))
        wanted = handler.headers.get("If-Match")
        if wanted is not None and wanted.strip() != etag:
            self._error(handler, 412, "PreconditionFailed", "At least one of the pre-conditions you specified did "
                        "not hold", body)
            return
        data = day_file(day, self.symbols, self.cache).read_bytes()
        start, end = 0, len(data) - 1
        # Open-ended (a resumed download) or bounded (a multipart client's parts, as boto3's download_file asks).
        ranged = re.fullmatch(r"bytes=(\d+)-(\d*)", handler.headers.get("Range", "") or "")
        if ranged:
            start = int(ranged[1])
            end = min(int(ranged[2]), len(data) - 1) if ranged[2] else len(data) - 1
            if start >= len(data) or end < start:
                self._error(handler, 416, "InvalidRange", "The requested range is not satisfiable", body)
                return
        piece = data[start:end + 1]
        handler.send_response(206 if ranged else 200)
        handler.send_header("ETag", etag)
        handler.send_header("Content-Type", "application/x-gzip")
        handler.send_header("Accept-Ranges", "bytes")
        handler.send_header("Last-Modified", "Tue, 09 Jan 2024 16:00:00 GMT")
        if ranged:
            handler.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        handler.send_header("Content-Length", str(len(piece)))
        handler.end_headers()
        if body:
            handler.wfile.write(piece)

    def _list(self, handler: http.server.BaseHTTPRequestHandler, query: dict[str, list[str]]) -> None:
        prefix = query.get("prefix", [""])[0]
        limit = min(int(query.get("max-keys", [str(MAX_KEYS)])[0]), MAX_KEYS)
        after = query.get("continuation-token", query.get("start-after", [""]))[0]
        keys = [(day_key(day), day) for day in self._published_days(prefix)]
        keys = [item for item in keys if item[0] > after]
        page, more = keys[:limit], len(keys) > limit
        contents = "".join(
            f"<Contents><Key>{escape(key)}</Key><LastModified>{day + dt.timedelta(days=1)}T16:00:00.000Z"
            f"</LastModified><ETag>{escape(self.etag(day))}</ETag><Size>0</Size><StorageClass>STANDARD"
            "</StorageClass></Contents>" for key, day in page)
        token = f"<NextContinuationToken>{escape(page[-1][0])}</NextContinuationToken>" if more else ""
        xml = ('<?xml version="1.0" encoding="UTF-8"?>'
               '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
               f"<Name>{BUCKET}</Name><Prefix>{escape(prefix)}</Prefix><KeyCount>{len(page)}</KeyCount>"
               f"<MaxKeys>{limit}</MaxKeys><IsTruncated>{'true' if more else 'false'}</IsTruncated>{token}"
               f"{contents}</ListBucketResult>").encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "application/xml")
        handler.send_header("Content-Length", str(len(xml)))
        handler.end_headers()
        handler.wfile.write(xml)

    @staticmethod
    def _error(handler: http.server.BaseHTTPRequestHandler, status: int, code: str, message: str,
               body: bool) -> None:
        xml = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>{message}</Message>'
               f"<Resource>{escape(quote(handler.path))}</Resource></Error>").encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/xml")
        handler.send_header("Content-Length", str(len(xml) if body else 0))
        handler.end_headers()
        if body:
            handler.wfile.write(xml)
