"""Before any row starts: is every backend of the batch usable at all? One answer per batch, not one per row.

A connection that does not exist or whose credentials the backend refuses fails every row the same way; left to
the rows, each would fail on its own, retried three times, with nothing on the row to say why. Checked once in
the ``plan`` step, such a mistake fails that step with one message naming the backend, the connection and what
fixes it, and no row is touched. A backend that cannot be reached right now is only warned about: that may pass,
and the dispatch already sends rows elsewhere while it cools down. The pools are judged in the same step
(:func:`pool_problems`), so one message names every mistake at once.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_openeo.batch.planning import BackendSpec
from airflow_provider_openeo.batch.pool_check import PoolState, pool_verdict, pools_from_api, pools_from_record
from airflow_provider_openeo.exceptions import (
    BackendsUnusable,
    OpenEOApiRequestError,
    OpenEOAuthError,
    OpenEOConfigurationError,
    OpenEOTransientError,
)
from airflow_provider_openeo.hooks._openeo.http import safe_retry

log = logging.getLogger(__name__)

#: A check that cannot reach a backend gives up quickly: the batch does not wait on it, the dispatch does.
PREFLIGHT_RETRY = {"total": 1, "backoff_factor": 0.5, "backoff_max": 2.0}


@dataclass
class PreflightReport:
    """What the check found: problems that stop the batch, and warnings that do not."""

    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def check_backend(spec: BackendSpec) -> tuple[str | None, str | None]:
    """``(problem, warning)`` for one backend: its connection exists, is complete, and its credentials work."""
    from airflow.sdk.exceptions import AirflowNotFoundException

    from airflow_provider_openeo.hooks.openeo import OpenEOHook

    name, conn_id = spec.name, spec.conn_id
    try:
        hook = OpenEOHook(conn_id, retry=safe_retry(**PREFLIGHT_RETRY), auto_validate=False)
        hook.settings  # noqa: B018 - reads the Airflow connection first: a missing one is its own problem
        with hook.translated_errors(f"GET /me on backend {name!r}"):
            hook.get_conn().describe_account()
    except AirflowNotFoundException:
        return (
            f"backend {name!r}: Airflow connection {conn_id!r} does not exist. Create it (type openeo, host = the "
            f"backend's URL, login/password or an auth_method), e.g. `airflow connections add {conn_id} "
            "--conn-type openeo --conn-host https://openeo.example.org --conn-login USER --conn-password PASSWORD`",
            None,
        )
    except OpenEOConfigurationError as exc:
        return f"backend {name!r}: connection {conn_id!r} is incomplete: {exc}", None
    except OpenEOAuthError as exc:
        if exc.http_status == 404:  # the login endpoint is missing: the host is not this backend's API root
            return (
                f"backend {name!r}: connection {conn_id!r} does not lead to an openEO API: {exc}. Check its host "
                "(it often needs a path such as /openeo or /openeo/1.2)",
                None,
            )
        return (
            f"backend {name!r}: the backend refused the credentials of connection {conn_id!r}: {exc}. Fix them in "
            "Admin > Connections (the Test button checks them)",
            None,
        )
    except OpenEOApiRequestError as exc:
        return (
            f"backend {name!r}: connection {conn_id!r} does not lead to a usable openEO API: {exc}. Check its host "
            "(it often needs a path such as /openeo or /openeo/1.2)",
            None,
        )
    except OpenEOTransientError as exc:
        return None, f"backend {name!r} cannot be reached now ({exc}); its rows wait or go elsewhere meanwhile"
    except Exception as exc:  # anything else: not worth stopping a batch over, the rows will say more
        return None, f"backend {name!r}: checking connection {conn_id!r} failed: {type(exc).__name__}: {exc}"
    return None, None


def check_backends(backends: Mapping[str, BackendSpec], *, problems: Sequence[str] = ()) -> PreflightReport:
    """Check every backend; raise :class:`BackendsUnusable` with all problems in one message, log the warnings.

    ``problems`` found before (the pools') come first in that message.
    """
    report = PreflightReport(problems=list(problems))
    for spec in backends.values():
        problem, warning = check_backend(spec)
        if problem:
            report.problems.append(problem)
        if warning:
            report.warnings.append(warning)
            log.warning("%s", warning)
    if report.problems:
        raise BackendsUnusable(
            "no row was started, because " + "; and ".join(report.problems) + ". Then clear this task to go on."
        )
    return report


def pool_problems(
    backends: Mapping[str, BackendSpec],
    record: Any,
    *,
    clear_number: int | None,
    airflow_api_conn_id: str | None = None,
) -> list[str]:
    """The backends' pool problems (``pool_check.pool_verdict``), from the scheduler's ``record`` of them.

    Without a usable record (no plugin in the scheduler, ``dag.test()``), the pools are read through the REST API
    when ``airflow_api_conn_id`` is given, else not checked: the log says so, and the batch goes on as before.
    Warnings (a pool with other slots than ``parallel_jobs``) are logged here.
    """
    pools, source = pools_from_record(record, clear_number=clear_number)
    if pools is None and airflow_api_conn_id:
        from airflow_provider_openeo.pools import fetch_pools

        log.info("pools read through the REST API (connection %r): %s", airflow_api_conn_id, source)
        pools = pools_from_api(fetch_pools(airflow_api_conn_id))
        source = f"read through the REST API (connection {airflow_api_conn_id!r})"
    if pools is None:
        log.warning(
            "pools were not checked: %s. A backend whose pool is missing leaves its rows waiting forever: make the "
            "pools with python -m airflow_provider_openeo.pools backends.json",
            source,
        )
        return []
    return _judged(backends, pools, source)


def _judged(backends: Mapping[str, BackendSpec], pools: Mapping[str, PoolState | None], source: str) -> list[str]:
    verdict = pool_verdict(backends, pools)
    for warning in verdict.warnings:
        log.warning("%s", warning)
    if not verdict.problems:
        log.info("pools checked (%s): %s", source, ", ".join(spec.pool for spec in backends.values()))
    return verdict.problems
