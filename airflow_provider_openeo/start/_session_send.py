"""Step into the requests an ``openeo.Connection`` sends, whatever ``start_job`` does with it.

``start_job`` is the user's code (an MBJM callable or ``ProcessBasedJobCreator``): the provider cannot pass it
arguments, so job options, the openEO ``budget`` field and the dry run's interception reach its ``POST /jobs``
by wrapping the connection's session ``send`` for as long as the start lasts. Several such wrappings nest (options
inside a dry run, say); each must restore exactly what it found, also when another wrapping was there first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlparse

import requests

Send = Callable[..., requests.Response]


def is_create_request(request: Any) -> bool:
    """``POST .../jobs``: the one request whose repetition creates a second job."""
    method = getattr(request, "method", None)
    return method == "POST" and urlparse(getattr(request, "url", None) or "").path.rstrip("/").endswith("/jobs")


@contextmanager
def wrapped_send(session: requests.Session, wrap: Callable[[Send], Send]) -> Iterator[None]:
    """While inside, ``session.send`` is ``wrap(<the send it had>)``; afterwards, the session is as it was."""
    had_own = "send" in vars(session)
    previous = vars(session).get("send")
    session.send = wrap(session.send)  # type: ignore[method-assign]
    try:
        yield
    finally:
        if had_own:
            session.send = previous  # type: ignore[method-assign]
        else:
            vars(session).pop("send", None)
