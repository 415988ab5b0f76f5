"""The batch's and the row's job options, put into the ``POST /jobs`` that ``start_job`` sends, and checked first.

``start_job`` is user code: an MBJM callable that calls ``connection.create_job(...)``, ``cube.create_job(...)``,
``cube.execute_batch(...)`` or even ``connection.post("/jobs", ...)``, or a ``ProcessBasedJobCreator``, which takes
no job options at all. The one thing all of them share is the request itself: ``POST /jobs`` on the connection's
HTTP session. So the options are applied there, to the request about to be sent (its JSON body gets the merged
``job_options``), by wrapping the session's ``send`` for as long as ``start_job`` runs. Why not the alternatives:

* passing ``job_options`` to ``start_job``: MBJM's signature has no such argument, and ``ProcessBasedJobCreator``
  (which we must not fork or subclass) would ignore it;
* wrapping ``Connection.create_job``: misses a ``start_job`` that posts by another route, and cannot see what
  ``start_job`` put into the body itself (options passed top-level through ``additional=``);
* a requests response hook (what :mod:`~airflow_provider_openeo.start._lost_create` uses to learn the new job's
  id): it runs after the request was sent.

The merge (see :mod:`~airflow_provider_openeo.start.job_options` for the rule): the process's ``default_job_options`` <
the options ``start_job`` sent < the batch's ``job_options=`` < the row's ``job_options``. ``start_job``'s own options
are the body's ``job_options`` object, or, when it has none, the body's non-standard top-level properties:
openeo-python-driver reads those as job options only when no ``job_options`` object is present, so they are moved into
it rather than silently ignored. The defaults come from the definitions the process graph names by URL (``namespace``
``https://...``, what ``ProcessBasedJobCreator`` with a URL posts) or as the user's (``namespace: "user"``): the same
documents the backend reads them from.

Before the request leaves, the merged options are checked against the backend's ``GET /processing_parameters``
(openEO processing-parameters extension), read once per backend and process; a backend that does not serve it
(404, 501) is not checked, which is logged once. A refused check raises :class:`JobOptionsRefused` instead of
sending: no job exists, and the starter marks the row ``start_failed`` naming the option.

The openEO ``budget`` field (the batch's ``job_budget=``, or the row's ``job_budget`` column) is set on the same
request, replacing what ``start_job`` sent; a budget alone touches nothing else (no ``job_options`` object, no
parameter check).

With no batch and no row options (and no budget) nothing is touched and nothing extra is asked of the backend: a
batch that does not use job options sends exactly what ``start_job`` built, with no extra request per job.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import requests
from openeo import Connection
from openeo.rest import OpenEoApiPlainError

from airflow_provider_openeo.exceptions import JobOptionsRefused
from airflow_provider_openeo.start._session_send import Send, is_create_request, wrapped_send
from airflow_provider_openeo.start.job_options import job_option_problems, merge_job_options

log = logging.getLogger(__name__)

#: Top-level properties of a ``POST /jobs`` body the openEO API (and openeo-python-driver) define; any other is a
#: job option in openeo-python-driver's reading when the body has no ``job_options`` object.
STANDARD_CREATE_FIELDS = frozenset({"process", "title", "description", "plan", "budget", "log_level", "job_options"})
#: Statuses of ``GET /processing_parameters`` meaning "not served here": no check, said once per backend.
NOT_SERVED_STATUSES = frozenset({404, 405, 501})
DEFINITION_TIMEOUT = 30.0

_parameters_cache: dict[str, list[dict[str, Any]] | None] = {}
_cache_lock = threading.Lock()


@dataclass
class AppliedOptions:
    """What happened to the creates while ``start_job`` ran: the options sent, or the refusal."""

    sent: list[dict[str, Any]] = field(default_factory=list)
    refused: JobOptionsRefused | None = None


#: ``(merged options, the backend's create_job_parameters or None) -> the options to send``.
OptionsAdjustment = Callable[[dict[str, Any], "list[dict[str, Any]] | None"], dict[str, Any]]


@dataclass(frozen=True)
class OptionLayers:
    """What a row adds to whatever ``start_job`` sends: the options of the batch, then the row's (higher wins), an
    ``adjust``ment applied last (a failure-policy retry after running out of memory raises memory there) before
    the check against the backend's processing parameters, and the openEO ``budget`` field (the row's
    ``job_budget``, else the batch's), which replaces ``start_job``'s."""

    batch: Mapping[str, Any]
    row: Mapping[str, Any]
    adjust: OptionsAdjustment | None = None
    budget: float | None = None

    @property
    def has_options(self) -> bool:
        return bool(self.batch) or bool(self.row) or self.adjust is not None

    def __bool__(self) -> bool:
        return self.has_options or self.budget is not None


@contextmanager
def applying_job_options(
    connection: Connection, layers: OptionLayers, *, label: str, backend: str
) -> Iterator[AppliedOptions]:
    """While inside, every ``POST /jobs`` on ``connection`` carries the merged options (see the module doc)."""
    applied = AppliedOptions()
    if not layers:
        yield applied
        return

    def wrap(original_send: Send) -> Send:
        def send(request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
            if is_create_request(request) and request.body:
                _rewrite(connection, request, layers, applied, label=label, backend=backend)
            return original_send(request, **kwargs)

        return send

    with wrapped_send(connection.session, wrap):
        yield applied


def _rewrite(
    connection: Connection,
    request: requests.PreparedRequest,
    layers: OptionLayers,
    applied: AppliedOptions,
    *,
    label: str,
    backend: str,
) -> None:
    body = request.body.decode("utf-8") if isinstance(request.body, bytes) else request.body
    try:
        payload = json.loads(body)
    except (TypeError, ValueError):
        return  # not a JSON body: not one this module can read; the backend will say what it thinks of it
    if not isinstance(payload, dict):
        return
    if layers.budget is not None:
        payload["budget"] = layers.budget
        log.info("%s: budget sent with POST /jobs: %s", label, layers.budget)
    if not layers.has_options:
        request.prepare_body(data=None, files=None, json=payload)
        return
    own = own_options(payload)
    defaults = process_defaults(connection, (payload.get("process") or {}).get("process_graph") or {})
    merged = merge_job_options(defaults, own, layers.batch, layers.row)
    parameters = processing_parameters(connection)
    if layers.adjust is not None:
        merged = layers.adjust(merged, parameters)
    if parameters is not None:
        problems = job_option_problems(merged, parameters)
        if problems:
            applied.refused = JobOptionsRefused(label, backend, problems)
            raise applied.refused
    for key in [k for k in payload if k not in STANDARD_CREATE_FIELDS]:
        del payload[key]  # now inside job_options (see own_options)
    payload["job_options"] = merged
    request.prepare_body(data=None, files=None, json=payload)
    applied.sent.append(merged)
    log.info("%s: job options sent with POST /jobs: %s", label, sorted(merged))


def own_options(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The options ``start_job`` put into the body: its ``job_options`` object, else its non-standard properties."""
    explicit = payload.get("job_options")
    if isinstance(explicit, Mapping):
        return dict(explicit)
    return {k: v for k, v in payload.items() if k not in STANDARD_CREATE_FIELDS}


def process_defaults(connection: Connection, graph: Mapping[str, Any]) -> dict[str, Any]:
    """``default_job_options`` of the processes ``graph`` names by URL or as the user's, merged in graph order.

    A definition that cannot be read gives no defaults (a warning): the backend, which reads the same document,
    still applies them itself where it supports the extension.
    """
    found: list[Mapping[str, Any]] = []
    for node in graph.values() if isinstance(graph, Mapping) else ():
        if not isinstance(node, Mapping) or not node.get("process_id"):
            continue
        process_id, namespace = str(node["process_id"]), node.get("namespace")
        try:
            definition = _definition(connection, process_id, namespace)
        except Exception as exc:
            log.warning(
                "cannot read process %r (namespace %r) for its default job options: %s", process_id, namespace, exc
            )
            continue
        defaults = (definition or {}).get("default_job_options")
        if isinstance(defaults, Mapping):
            found.append(defaults)
    return merge_job_options(*found)


def _definition(connection: Connection, process_id: str, namespace: Any) -> Mapping[str, Any] | None:
    if isinstance(namespace, str) and re.match(r"https?://", namespace):
        response = requests.get(namespace, timeout=DEFINITION_TIMEOUT)
        response.raise_for_status()
        document = response.json()
        if isinstance(document, Mapping) and isinstance(document.get("processes"), list):  # a process listing
            matches = [p for p in document["processes"] if isinstance(p, Mapping) and p.get("id") == process_id]
            return matches[0] if len(matches) == 1 else None
        return document if isinstance(document, Mapping) else None
    if namespace == "user":
        return connection.get(f"/process_graphs/{process_id}", expected_status=200).json()
    return None  # predefined processes have no default job options


def processing_parameters(connection: Connection) -> list[dict[str, Any]] | None:
    """The backend's ``create_job_parameters``, or None when it serves none (then nothing is checked).

    Read once per backend per process: parameters change with deployments, not between two rows.
    """
    key = str(connection.root_url)
    with _cache_lock:
        if key in _parameters_cache:
            return _parameters_cache[key]
    try:
        document = connection.get("/processing_parameters", expected_status=200).json()
    except OpenEoApiPlainError as exc:
        if exc.http_status_code not in NOT_SERVED_STATUSES:
            log.warning("GET /processing_parameters of %s failed (%s); job options not checked this time", key, exc)
            return None
        log.info(
            "%s serves no GET /processing_parameters (HTTP %s): job options are sent unchecked",
            key,
            exc.http_status_code,
        )
        parameters = None
    except Exception as exc:
        log.warning("GET /processing_parameters of %s failed (%s); job options not checked this time", key, exc)
        return None
    else:
        raw = document.get("create_job_parameters") if isinstance(document, Mapping) else None
        parameters = [p for p in raw if isinstance(p, dict)] if isinstance(raw, list) else None
        if parameters is None:
            log.info("%s lists no create_job_parameters: job options are sent unchecked", key)
    with _cache_lock:
        _parameters_cache[key] = parameters
    return parameters


def forget_processing_parameters() -> None:
    """Drop what :func:`processing_parameters` read (tests that change a backend's parameters)."""
    with _cache_lock:
        _parameters_cache.clear()


def wrapping_provider(
    provider: Callable[[str], Connection],
    enter: Callable[[Connection, str], Any],
    *,
    already: tuple[Connection, ...] = (),
) -> Callable[[str], Connection]:
    """``connection_provider`` whose connections get the same treatment (``enter``) the first time they are handed
    out, so a ``start_job`` that creates its job through it gets the row's options too; ``already``: connections
    treated before (the row's own, which the provider hands out for its own backend)."""
    seen: set[int] = {id(c) for c in already}

    def wrapped(backend_name: str) -> Connection:
        connection = provider(backend_name)
        if id(connection) not in seen:
            seen.add(id(connection))
            enter(connection, backend_name)
        return connection

    return wrapped
