"""Wrapping a connection's ``send``: nested wrappings see each other, and each leaves the session as it found it."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import requests

from airflow_provider_openeo.start._session_send import Send, is_create_request, wrapped_send


def tagging(tag: str, seen: list[str]) -> Any:
    def wrap(original: Send) -> Send:
        def send(request: Any, **kwargs: Any) -> Any:
            seen.append(tag)
            return original(request, **kwargs)

        return send

    return wrap


def test_nested_wrappings_run_outermost_last_and_restore_the_session() -> None:
    session = requests.Session()
    session.send = lambda request, **kwargs: "sent"  # type: ignore[method-assign,assignment]
    own = vars(session)["send"]
    seen: list[str] = []
    with wrapped_send(session, tagging("outer", seen)):
        with wrapped_send(session, tagging("inner", seen)):
            assert session.send(None) == "sent"
        assert vars(session)["send"] is not own
    assert seen == ["inner", "outer"]
    assert vars(session)["send"] is own, "a send of the session's own is put back"


def test_a_session_without_its_own_send_gets_the_class_method_back_even_after_an_error() -> None:
    session = requests.Session()
    try:
        with wrapped_send(session, tagging("x", [])):
            raise RuntimeError("start_job failed")
    except RuntimeError:
        pass
    assert "send" not in vars(session)


def test_only_post_to_jobs_is_a_create() -> None:
    def request(method: str, url: str) -> SimpleNamespace:
        return SimpleNamespace(method=method, url=url)

    assert is_create_request(request("POST", "https://b.example/openeo/1.2/jobs"))
    assert is_create_request(request("POST", "https://b.example/openeo/1.2/jobs/"))
    assert not is_create_request(request("GET", "https://b.example/openeo/1.2/jobs"))
    assert not is_create_request(request("POST", "https://b.example/openeo/1.2/jobs/j-1/results"))
