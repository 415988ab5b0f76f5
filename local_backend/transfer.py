"""How an answer's body travels: counted, optionally throttled, optionally cut off part-way.

Production downloads are slow (signed links expire while a large asset streams) and break off mid-file
(a proxy closes the connection after some megabytes). Both are reproduced here, and every body byte the
server sends is counted, so a test can compare the bytes moved with the bytes of results. Only the standard
library is used: the fault middleware imports it in both virtualenvs.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

#: Throttled bodies are re-cut into pieces of at most this size, so the pace is even.
_THROTTLE_PIECE = 64 * 1024


def close_client_socket(environ: dict[str, Any]) -> bool:
    """Shut the client's connection down (werkzeug and gunicorn expose it); False when there is none."""
    sock = environ.get("werkzeug.socket") or environ.get("gunicorn.socket")
    if sock is None:
        return False
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    return True


def _pieces(body: Iterable[bytes], size: int | None) -> Iterator[bytes]:
    for chunk in body:
        if not size or len(chunk) <= size:
            yield chunk
            continue
        for start in range(0, len(chunk), size):
            yield chunk[start : start + size]


def shaped_body(
    body: Iterable[bytes],
    environ: dict[str, Any],
    *,
    count: Callable[[int], None],
    truncate_after: int | None = None,
    bytes_per_second: int | None = None,
    claim_truncate: Callable[[], bool] = lambda: True,
) -> Iterator[bytes]:
    """``body`` as sent: each chunk counted; paced to ``bytes_per_second``; cut after ``truncate_after`` bytes.

    A cut closes the client's socket, so the client sees fewer bytes than the announced Content-Length
    (``IncompleteRead``), as when a proxy drops a long download. ``claim_truncate`` is asked when the mark is
    reached (a rule limited by ``times`` may have run out meanwhile). The wrapped body is always closed.
    """
    sent = 0
    started = time.monotonic()
    try:
        for chunk in _pieces(body, _THROTTLE_PIECE if bytes_per_second else None):
            if truncate_after is not None and sent + len(chunk) >= truncate_after:
                if claim_truncate():
                    rest = chunk[: truncate_after - sent]
                    if rest:
                        count(len(rest))
                        yield rest
                    close_client_socket(environ)
                    return
                truncate_after = None
            if bytes_per_second:
                ahead = (sent + len(chunk)) / bytes_per_second - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
            sent += len(chunk)
            count(len(chunk))
            yield chunk
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()
