"""Airflow pools standing in for each backend's ``parallel_jobs``.

Pool ``openeo_<backend>`` has ``parallel_jobs`` slots and counts deferred tasks, so a task holds its slot for its
remote job's whole life. Task code cannot reach the metadata database in Airflow 3, so pools are made where
that is allowed: from the ``airflow`` CLI at deployment time (``python -m airflow_provider_openeo.pools``). The
plan step checks them (``pool_check``) from what the provider's plugin read in the scheduler, or, without the
plugin, through the REST API when an ``airflow_api_conn_id`` is given (:func:`fetch_pools`).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from airflow_provider_openeo.batch.planning import BackendSpec, parse_backends
from airflow_provider_openeo.batch.pool_check import pool_description, pool_verdict, pools_from_api
from airflow_provider_openeo.exceptions import PoolCommandError, PoolError


def pools_document(backends: Mapping[str, BackendSpec]) -> dict[str, dict[str, Any]]:
    """The JSON ``airflow pools import`` reads."""
    return {
        spec.pool: {
            "slots": spec.parallel_jobs,
            "description": pool_description(spec),
            "include_deferred": True,
        }
        for spec in backends.values()
    }


def ensure_pools(backends: Mapping[str, BackendSpec], *, airflow_bin: str | None = None) -> list[str]:
    """Create or update the pools with the ``airflow`` CLI (which, unlike task code, may use the metadata DB).

    One ``airflow pools import`` for all pools: each CLI start costs seconds, and one file is all or nothing.
    Returns one line per pool saying what was done (created, updated from what, or already right); raises
    :class:`PoolCommandError` with Airflow's own message when the CLI fails.
    """
    airflow = airflow_bin or shutil.which("airflow") or str(Path(sys.executable).with_name("airflow"))
    wanted = pools_document(backends)
    before = list_pools(airflow)
    with tempfile.TemporaryDirectory(prefix="openeo_pools_") as folder:
        path = Path(folder) / "pools.json"
        path.write_text(json.dumps(wanted, indent=2))
        _airflow(airflow, "pools", "import", str(path))
    return describe_changes(wanted, before)


def list_pools(airflow: str) -> dict[str, dict[str, Any]]:
    """Every pool as ``airflow pools list`` shows it (values as text: ``"2"``, ``"True"``)."""
    out = _airflow(airflow, "pools", "list", "--output", "json")
    # Airflow may log lines before the JSON, and a log line can start with "[" too ("[info     ] ...").
    decoder = json.JSONDecoder()
    for at in (i for i, char in enumerate(out) if char == "["):
        try:
            listed, _ = decoder.raw_decode(out, at)
        except ValueError:
            continue
        if isinstance(listed, list) and all(isinstance(pool, dict) and "pool" in pool for pool in listed):
            return {str(pool["pool"]): pool for pool in listed}
    raise PoolCommandError(f"`airflow pools list --output json` printed no pool list: {out[-500:]!r}")


def describe_changes(wanted: Mapping[str, Mapping[str, Any]], before: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """What importing ``wanted`` did to the pools that were there (``before``, as ``airflow pools list`` gives)."""
    lines = []
    for name, pool in wanted.items():
        now = f"{pool['slots']} slot(s), deferred tasks counted"
        old = before.get(name)
        if old is None:
            lines.append(f"created pool {name}: {now}")
            continue
        changes = []
        if str(old.get("slots")) != str(pool["slots"]):
            changes.append(f"slots {old.get('slots')} -> {pool['slots']}")
        if str(old.get("include_deferred")).lower() != "true":
            changes.append("now counts deferred tasks")
        lines.append(f"updated pool {name}: {', '.join(changes)}" if changes else f"pool {name} already right: {now}")
    return lines


def _airflow(airflow: str, *args: str) -> str:
    result = subprocess.run([airflow, *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        said = airflow_said(result.stderr.strip() or result.stdout.strip())
        command = " ".join(args)
        raise PoolCommandError(f"`airflow {command}` failed with exit code {result.returncode}; Airflow said: {said}")
    return result.stdout


def airflow_said(output: str) -> str:
    """The part of a failed CLI's output a person acts on: a traceback's exception line, else its last lines."""
    lines = output.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("Traceback")]
    if starts:
        unindented = [line for line in lines[starts[-1] + 1 :] if line and not line[0].isspace()]
        said = unindented[0] if unindented else lines[-1]
    else:
        said = "\n".join(lines[-20:])
    if "no such table" in said or ("relation" in said and "does not exist" in said):
        said += " (the metadata database has no tables yet: run `airflow db migrate` first)"
    return said


def check_pools(backends: Mapping[str, BackendSpec], existing: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Raise :class:`PoolError` naming every pool problem (``pool_check.pool_verdict``); return the warnings.

    ``existing`` maps pool name to the REST API's pool record (``slots``, ``include_deferred``).
    """
    verdict = pool_verdict(backends, pools_from_api(existing))
    if verdict.problems:
        raise PoolError("; ".join(verdict.problems))
    return verdict.warnings


def fetch_pools(api_conn_id: str, *, timeout: float = 30.0) -> dict[str, dict[str, Any]]:
    """Read every pool through Airflow's REST API (the way task code may learn about pools in Airflow 3).

    The connection's host is the API server's base URL; login and password, when set, get a token from
    ``/auth/token`` (Airflow's simple and FAB auth managers both serve it).
    """
    import requests
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(api_conn_id)
    base = (conn.host or "").rstrip("/")
    if not base.startswith(("http://", "https://")):
        base = f"http://{base}" + (f":{conn.port}" if conn.port else "")
    headers = {}
    if conn.login:
        answer = requests.post(
            f"{base}/auth/token", json={"username": conn.login, "password": conn.password}, timeout=timeout
        )
        answer.raise_for_status()
        headers["Authorization"] = f"Bearer {answer.json()['access_token']}"
    pools: dict[str, dict[str, Any]] = {}
    offset = 0
    while True:
        answer = requests.get(
            f"{base}/api/v2/pools", params={"limit": 100, "offset": offset}, headers=headers, timeout=timeout
        )
        answer.raise_for_status()
        page = answer.json()
        for pool in page.get("pools", []):
            pools[pool["name"]] = pool
        offset += len(page.get("pools", []))
        if not page.get("pools") or offset >= page.get("total_entries", 0):
            return pools


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("backends", help="JSON file: {name: {conn_id, parallel_jobs}}, as openeo_job_batch takes")
    parser.add_argument("--print", action="store_true", help="print the pools JSON instead of applying it")
    args = parser.parse_args(argv)
    backends = parse_backends(json.loads(Path(args.backends).read_text()))
    if args.print:
        print(json.dumps(pools_document(backends), indent=2))
        return 0
    try:
        for line in ensure_pools(backends):
            print(line)
    except PoolError as exc:
        print(f"pools not changed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
