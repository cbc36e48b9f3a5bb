"""What the sample's loopback HTTP servers (the fake API, the flat files' S3 stand-in) share: a threaded server on
127.0.0.1 with a free port, quiet about clients that go away, stopped without waiting for answers under way."""

from __future__ import annotations

import http.server
import sys
import threading
from collections.abc import Callable
from typing import Any

# Answers one request; the flag is False for a HEAD (headers only).
Handle = Callable[[http.server.BaseHTTPRequestHandler, bool], None]


def serve(handle: Handle, name: str, *, answers_head: bool = False) -> http.server.ThreadingHTTPServer:
    """A server answering GET (and HEAD when asked) with `handle`, serving in a daemon thread until `stop`."""

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            handle(self, True)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    class HeadHandler(Handler):
        def do_HEAD(self) -> None:  # noqa: N802
            handle(self, False)

    class QuietServer(http.server.ThreadingHTTPServer):
        # stop() does not wait for answers still being made: a killed client's call that a test made hang
        # (a fault's delay) would otherwise hold the stop for the rest of the delay.
        block_on_close = False

        def handle_error(self, request: Any, client_address: Any) -> None:
            # A client that went away mid-answer (a killed harvester, a timed-out read) is normal here: no
            # traceback on stderr. Anything else is still reported.
            if not isinstance(sys.exc_info()[1], ConnectionError):
                super().handle_error(request, client_address)

    httpd = QuietServer(("127.0.0.1", 0), HeadHandler if answers_head else Handler)
    httpd.daemon_threads = True
    # stop() waits for the serve loop's next poll: a short one, since every run and test pays it at its stop.
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name=name, daemon=True).start()
    return httpd


def stop(httpd: http.server.ThreadingHTTPServer) -> None:
    httpd.shutdown()
    httpd.server_close()


def url_of(httpd: http.server.ThreadingHTTPServer) -> str:
    host, port = httpd.server_address[:2]
    return f"http://{host!s}:{port}"
