"""Pools standing in for parallel_jobs: the document, the checks, the CLI on a real metadata DB (the REST API read:
tests/system/test_pools.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_provider_openeo.batch.planning import parse_backends
from airflow_provider_openeo.pools import (
    PoolError,
    check_pools,
    describe_changes,
    ensure_pools,
    main,
    pools_document,
)
from tests.conftest import AIRFLOW_HOME

AIRFLOW_BIN = str(Path(sys.executable).with_name("airflow"))


def unique_backends(parallel_jobs: tuple[int, ...] = (2, 3)) -> dict[str, dict[str, object]]:
    """Backend names of our own: the metadata DB is shared with other test sessions."""
    tag = uuid.uuid4().hex[:8]
    return {f"t{tag}_{i}": {"conn_id": f"openeo_t{tag}_{i}", "parallel_jobs": n} for i, n in enumerate(parallel_jobs)}


@pytest.fixture
def drop_pools() -> Iterator[list[str]]:
    """Pool names a test creates; deleted from the metadata DB afterwards."""
    names: list[str] = []
    yield names
    from airflow.models.pool import Pool
    from airflow.utils.session import create_session

    with create_session() as session:
        session.query(Pool).filter(Pool.pool.in_(names)).delete(synchronize_session=False)


def test_pools_document_has_parallel_jobs_slots_and_counts_deferred():
    specs = parse_backends({"foo": {"conn_id": "openeo_foo", "parallel_jobs": 3}, "bar": {}})
    assert pools_document(specs) == {
        "openeo_foo": {
            "slots": 3,
            "description": "openEO backend foo (openeo_foo): parallel_jobs",
            "include_deferred": True,
        },
        "openeo_bar": {
            "slots": 2,
            "description": "openEO backend bar (openeo_bar): parallel_jobs",
            "include_deferred": True,
        },
    }


def test_check_pools_names_every_problem_and_returns_the_warnings():
    specs = parse_backends({"foo": {"parallel_jobs": 3}, "bar": {"parallel_jobs": 2}, "baz": {"parallel_jobs": 1}})
    existing = {
        "openeo_foo": {"slots": 2, "include_deferred": True},
        "openeo_bar": {"slots": 5, "include_deferred": False},
    }
    with pytest.raises(PoolError) as caught:
        check_pools(specs, existing)
    message = str(caught.value)
    assert "pool 'openeo_bar' does not count deferred tasks" in message
    assert "pool 'openeo_baz' does not exist" in message
    assert "airflow pools set openeo_baz 1" in message and "python -m airflow_provider_openeo.pools" in message
    assert "openeo_foo" not in message, "other slots than parallel_jobs are a warning, not a problem"
    warnings = check_pools(
        specs,
        {
            **existing,
            "openeo_bar": {"slots": 2, "include_deferred": True},
            "openeo_baz": {"slots": 1, "include_deferred": True},
        },
    )
    assert warnings == [w for w in warnings if "pool 'openeo_foo' has 2 slot(s) but parallel_jobs is 3" in w] != []


def test_check_pools_accepts_enough_slots():
    specs = parse_backends({"foo": {"parallel_jobs": 3}})
    check_pools(specs, {"openeo_foo": {"slots": 4, "include_deferred": True}, "default_pool": {"slots": 128}})


def test_print_option_shows_the_import_document(tmp_path, capsys):
    path = tmp_path / "backends.json"
    path.write_text(json.dumps({"foo": {"conn_id": "openeo_foo", "parallel_jobs": 4}}))
    assert main([str(path), "--print"]) == 0
    assert json.loads(capsys.readouterr().out)["openeo_foo"] == {
        "slots": 4,
        "description": "openEO backend foo (openeo_foo): parallel_jobs",
        "include_deferred": True,
    }


def airflow_pools(*names: str) -> dict[str, dict[str, str]]:
    """What ``airflow pools list -o json`` shows for ``names`` (one CLI start: each costs seconds)."""
    result = subprocess.run(
        [AIRFLOW_BIN, "pools", "list", "-o", "json"], capture_output=True, text=True, check=True, env=os.environ
    )
    # Unit-test mode logs a line to stdout before the JSON.
    listed = json.loads(result.stdout[result.stdout.index("[{") :])
    return {pool["pool"]: pool for pool in listed if pool["pool"] in names}


def test_module_command_creates_and_updates_pools_in_the_metadata_db(airflow_db, tmp_path, drop_pools):
    backends = unique_backends((2, 3))
    names = [f"openeo_{name}" for name in backends]
    drop_pools.extend(names)
    path = tmp_path / "backends.json"
    path.write_text(json.dumps(backends))

    command = [sys.executable, "-m", "airflow_provider_openeo.pools", str(path)]
    env = {**os.environ, "AIRFLOW_HOME": str(AIRFLOW_HOME)}
    done = subprocess.run(command, check=True, env=env, capture_output=True, text=True)
    assert done.stdout.splitlines() == [
        f"created pool {names[0]}: 2 slot(s), deferred tasks counted",
        f"created pool {names[1]}: 3 slot(s), deferred tasks counted",
    ]

    pools = airflow_pools(*names)
    assert [(pools[n]["slots"], pools[n]["include_deferred"]) for n in names] == [("2", "True"), ("3", "True")]

    # parallel_jobs changed: running the command again updates the pool in place, and says so.
    backends[next(iter(backends))]["parallel_jobs"] = 5
    said = ensure_pools(parse_backends(backends), airflow_bin=AIRFLOW_BIN)
    assert said == [
        f"updated pool {names[0]}: slots 2 -> 5",
        f"pool {names[1]} already right: 3 slot(s), deferred tasks counted",
    ]
    updated = airflow_pools(names[0])[names[0]]
    assert (updated["slots"], updated["include_deferred"]) == ("5", "True")


def test_module_command_passes_airflows_own_error_through(tmp_path):
    """A metadata database that was never migrated: Airflow's message, not a bare CalledProcessError."""
    path = tmp_path / "backends.json"
    path.write_text(json.dumps(unique_backends((2,))))
    home = tmp_path / "airflow-home"
    home.mkdir()
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'never_migrated.db'}",
    }
    command = [sys.executable, "-m", "airflow_provider_openeo.pools", str(path)]
    failed = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert failed.stderr.startswith("pools not changed: `airflow pools list --output json` failed with exit code")
    said = failed.stderr.split("Airflow said: ", 1)[1]
    assert "no such table: slot_pool" in said and "run `airflow db migrate` first" in said, said
    assert "Traceback" not in failed.stderr and "CalledProcessError" not in failed.stderr


def test_describe_changes_says_what_an_import_did():
    wanted = {"openeo_a": {"slots": 2}, "openeo_b": {"slots": 3}, "openeo_c": {"slots": 1}}
    before = {
        "openeo_b": {"pool": "openeo_b", "slots": "3", "include_deferred": "False"},
        "openeo_c": {"pool": "openeo_c", "slots": "1", "include_deferred": "True"},
    }
    assert describe_changes(wanted, before) == [
        "created pool openeo_a: 2 slot(s), deferred tasks counted",
        "updated pool openeo_b: now counts deferred tasks",
        "pool openeo_c already right: 1 slot(s), deferred tasks counted",
    ]


# -- the plan-time check through Airflow's REST API ---------------------------------------------------------------
