"""The provider's flat-file endpoint through S3's API (boto3): the listing of what exists, each file's ETag, and
downloads of whole files that resume after a kill. Path-style addressing, Signature V4, the credentials only in the
signature (never logged, never written).

Errors are scoped to what they refuse: credentials the endpoint rejects, or an endpoint that cannot be reached, stop
the run (no other day can succeed); a day's file that is not there (404) or not served (403: outside the plan or its
history, or not published yet; the endpoint does not say which) is that day's.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stockpipe.errors import ApiUnreachableError, KeyRejectedError, PipelineError

log = logging.getLogger(__name__)

DEFAULT_URL = "https://files.massive.com"
BUCKET = "flatfiles"
MINUTE_PREFIX = "us_stocks_sip/minute_aggs_v1"
CHUNK = 1 << 20  # bytes read a time from a download's stream
DOWNLOAD_ATTEMPTS = 4  # a download cut off mid-stream resumes from what arrived, this many times


def day_key(day: dt.date) -> str:
    return f"{MINUTE_PREFIX}/{day:%Y}/{day:%m}/{day.isoformat()}.csv.gz"


@dataclass(frozen=True)
class Credentials:
    access_key_id: str = field(repr=False)
    secret_access_key: str = field(repr=False)


@dataclass(frozen=True)
class Listed:
    """A file the listing holds."""

    day: dt.date
    key: str
    etag: str
    size: int


class DayRefused(PipelineError):  # noqa: N818 - a day the endpoint does not serve, not a bug
    """The endpoint answered 403 or 404 for one day's file."""

    def __init__(self, day: dt.date, status: int) -> None:
        super().__init__(f"{day}: the endpoint answered {status} for its file")
        self.day, self.status = day, status


class Republished(PipelineError):  # noqa: N818
    """The file changed (its ETag) while it was being downloaded: the download starts again."""


class FlatFileStore:
    """One endpoint and bucket, one client for the run."""

    def __init__(self, url: str, credentials: Credentials, bucket: str = BUCKET) -> None:
        import boto3
        from botocore.config import Config

        self.url, self.bucket = url.rstrip("/"), bucket
        self._client = boto3.client(
            "s3", endpoint_url=self.url, aws_access_key_id=credentials.access_key_id,
            aws_secret_access_key=credentials.secret_access_key, region_name="us-east-1",
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                          retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=10, read_timeout=60),
        )

    def list_days(self, days: Sequence[dt.date]) -> dict[dt.date, Listed]:
        """The files of these days that the endpoint lists (a month's prefix a call, paginated)."""
        wanted = set(days)
        found: dict[dt.date, Listed] = {}
        for month in sorted({(d.year, d.month) for d in days}):
            prefix = f"{MINUTE_PREFIX}/{month[0]:04d}/{month[1]:02d}/"
            with self._errors():
                for page in self._client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                                   Prefix=prefix):
                    for item in page.get("Contents", []):
                        day = _day_of(item["Key"])
                        if day in wanted:
                            found[day] = Listed(day, item["Key"], str(item["ETag"]), int(item.get("Size", 0)))
        return found

    def download(self, listed: Listed, part: Path) -> tuple[str, int]:
        """The file into `part`, from the bytes already there when the same ETag was being downloaded (the caller
        removes a part of another ETag first); returns its ETag and size once whole. A file republished meanwhile
        raises Republished; a stream cut off resumes from what arrived, a bounded number of times."""
        for attempt in range(1, DOWNLOAD_ATTEMPTS + 1):
            have = part.stat().st_size if part.exists() else 0
            request: dict[str, Any] = {"Bucket": self.bucket, "Key": listed.key, "IfMatch": listed.etag}
            if have:
                request["Range"] = f"bytes={have}-"
            try:
                with self._errors(listed.day):
                    answer = self._client.get_object(**request)
                    total = have + int(answer["ContentLength"])
                    with part.open("ab") as out:
                        for chunk in answer["Body"].iter_chunks(CHUNK):
                            out.write(chunk)
                return str(answer.get("ETag", listed.etag)), total
            except _StreamCut as cut:
                if attempt == DOWNLOAD_ATTEMPTS:
                    raise PipelineError(f"{listed.day}: the download kept being cut off ({cut})") from None
                log.info("%s: download cut off after %d bytes (%s); resuming", listed.day, part.stat().st_size, cut)
        raise AssertionError("unreachable")

    @contextlib.contextmanager
    def _errors(self, day: dt.date | None = None) -> Iterator[None]:
        """botocore's errors in the pipeline's words, scoped to what they refuse."""
        from botocore.exceptions import (
            ClientError,
            ConnectionClosedError,
            EndpointConnectionError,
            ReadTimeoutError,
            ResponseStreamingError,
        )

        try:
            yield
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied") and day is None:
                raise KeyRejectedError(f"the flat-file endpoint {self.url} refused the credentials ({code}): check "
                                       "MASSIVE_S3_ACCESS_KEY_ID and MASSIVE_S3_SECRET_ACCESS_KEY (flat files "
                                       "need a paid plan)") from None
            if code in ("PreconditionFailed", "412") or status == 412:
                raise Republished(f"{day}: the file was republished while it downloaded") from None
            if day is not None and (status in (403, 404) or code in ("NoSuchKey", "AccessDenied", "404", "403")):
                raise DayRefused(day, status or (404 if code in ("NoSuchKey", "404") else 403)) from None
            raise PipelineError(f"the flat-file endpoint {self.url} answered {status or code}: "
                                f"{error.get('Message', '')}".rstrip(": ")) from None
        except EndpointConnectionError:
            raise ApiUnreachableError(f"cannot reach the flat-file endpoint {self.url}: check the network and "
                                      "--flatfiles-url") from None
        except (ConnectionClosedError, ReadTimeoutError, ResponseStreamingError) as exc:
            raise _StreamCut(type(exc).__name__) from None


class _StreamCut(Exception):  # noqa: N818
    pass


def _day_of(key: str) -> dt.date | None:
    name = key.rsplit("/", 1)[-1]
    try:
        return dt.date.fromisoformat(name.removesuffix(".csv.gz"))
    except ValueError:
        return None


@dataclass(frozen=True)
class S3Endpoint:
    """The provider's endpoint (or another, --flatfiles-url), with the run's credentials."""

    url: str
    credentials: Credentials = field(repr=False)
    name: str = "flatfiles"

    @contextlib.contextmanager
    def serve(self) -> Iterator[tuple[str, Credentials]]:
        yield self.url, self.credentials
