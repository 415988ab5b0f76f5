"""Is each backend's pool usable? The rule, and the record the scheduler leaves for the ``plan`` step to judge.

A row task whose pool ``openeo_<backend>`` does not exist is never queued: it sits ``scheduled`` forever and only
the scheduler's log says why. Task code cannot see pools in Airflow 3 (the Execution API has no pool route), so
the provider's plugin (:mod:`airflow_provider_openeo.batch.pool_listener`) reads them in the scheduler when a batch's
DAG run starts and stores what it found in the ``plan`` task's state store (:data:`POOLS_KEY`). ``plan`` then
judges them against its backends here, before any row starts, and fails once with the command that fixes them.

The record holds facts (each pool's slots and whether it counts deferred tasks, or that it is missing), not the
verdict: ``parallel_jobs`` is known to the plan and not to the scheduler's serialized DAG, and the rule stays in
one place for both ways the pools can be read (this record, or the REST API through ``airflow_api_conn_id``).

Everything here is pure: no Airflow, no database.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # planning imports pandas: every Airflow process that loads the plugin imports this module
    from airflow_provider_openeo.batch.planning import BackendSpec

#: The ``plan`` task's state-store key under which the scheduler's listener records the batch's pools.
POOLS_KEY = "openeo_pools"
#: Bumped when the record's shape changes; a record of another version is not used (pools count as unchecked).
RECORD_VERSION = 1
#: The command that makes every backend's pool at once, from a JSON file of the DAG's ``backends``.
ALL_POOLS_COMMAND = "python -m airflow_provider_openeo.pools backends.json"
#: Airflow's pool slots for "no limit".
UNLIMITED_SLOTS = -1


@dataclass(frozen=True)
class PoolState:
    """One pool as the metadata database holds it."""

    slots: int
    include_deferred: bool


@dataclass
class PoolVerdict:
    """What the check found: problems stop the batch before any row starts; warnings are logged."""

    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def pool_description(spec: BackendSpec) -> str:
    """The description the provider gives a backend's pool (the CLI's document and the fix command share it)."""
    return f"openEO backend {spec.name} ({spec.conn_id}): parallel_jobs"


def fix_command(spec: BackendSpec) -> str:
    """The one command that makes (or repairs) a backend's pool, ready to paste into a shell."""
    return shlex.join(
        ["airflow", "pools", "set", spec.pool, str(spec.parallel_jobs), pool_description(spec), "--include-deferred"]
    )


def pool_verdict(backends: Mapping[str, BackendSpec], pools: Mapping[str, PoolState | None]) -> PoolVerdict:
    """Judge each backend's pool; ``pools`` maps pool name to its state, None (or absent) when it does not exist.

    Problems (the batch cannot work as configured): the pool is missing or has no slot (its rows would wait
    forever); it does not count deferred tasks or has unlimited slots (a task gives its slot back while its job
    runs, so the backend gets every instance's job at once, past ``parallel_jobs``: quota errors, costs).
    A different number of slots than ``parallel_jobs`` is only a warning: the batch works at that pace, and a pool
    is shared by every batch on the backend, which may want different numbers or be throttled on purpose.
    """
    verdict = PoolVerdict()
    for spec in backends.values():
        pool = pools.get(spec.pool)
        fix = f"Fix: {fix_command(spec)} (or, for every backend: {ALL_POOLS_COMMAND})"
        if pool is None:
            verdict.problems.append(
                f"backend {spec.name!r}: pool {spec.pool!r} does not exist, so its rows would wait forever. {fix}"
            )
        elif pool.slots == 0:
            verdict.problems.append(
                f"backend {spec.name!r}: pool {spec.pool!r} has 0 slots, so its rows would wait forever. {fix}"
            )
        elif pool.slots == UNLIMITED_SLOTS or not pool.include_deferred:
            why = "has unlimited slots" if pool.slots == UNLIMITED_SLOTS else "does not count deferred tasks"
            verdict.problems.append(
                f"backend {spec.name!r}: pool {spec.pool!r} {why}, so it would not hold the backend to "
                f"parallel_jobs={spec.parallel_jobs} while jobs run (every instance would start its job at once). "
                f"{fix}"
            )
        elif pool.slots != spec.parallel_jobs:
            verdict.warnings.append(
                f"backend {spec.name!r}: pool {spec.pool!r} has {pool.slots} slot(s) but parallel_jobs is "
                f"{spec.parallel_jobs}: the backend runs {pool.slots} job(s) at once. To match: {fix_command(spec)}"
            )
    return verdict


# -- the record the scheduler leaves for the plan ---------------------------------------------------------------


def pools_record(pools: Mapping[str, PoolState | None], *, clear_number: int, recorded_at: str) -> dict[str, Any]:
    """The JSON the listener stores: each wanted pool's state (None: missing), and which start of the run saw it."""
    return {
        "version": RECORD_VERSION,
        "recorded_at": recorded_at,
        "clear_number": clear_number,
        "pools": {
            name: None if state is None else {"slots": state.slots, "include_deferred": state.include_deferred}
            for name, state in sorted(pools.items())
        },
    }


def pools_from_record(record: Any, *, clear_number: int | None) -> tuple[dict[str, PoolState | None] | None, str]:
    """The pools a record holds, or None with the reason it cannot be used (then pools count as unchecked).

    A record is only good for the start of the run that wrote it: clearing a task while the run still runs starts
    no new run state, so the listener does not look again, and an old record could call a pool missing that was
    made since (``clear_number`` tells the two apart).
    """
    if record is None:
        return None, "the scheduler left no record of them (the provider's plugin is not loaded, or dag.test())"
    if not isinstance(record, Mapping) or record.get("version") != RECORD_VERSION:
        return None, "the scheduler's record of them is of another provider version"
    if clear_number is not None and record.get("clear_number") != clear_number:
        return None, "they were read before this run was cleared; clear the task once the run has ended"
    pools: dict[str, PoolState | None] = {}
    for name, state in (record.get("pools") or {}).items():
        pools[name] = (
            None if state is None else PoolState(int(state["slots"]), bool(state.get("include_deferred", False)))
        )
    return pools, f"read by the scheduler when this run started ({record.get('recorded_at')})"


def pools_from_api(listed: Mapping[str, Mapping[str, Any]]) -> dict[str, PoolState | None]:
    """Pools as the REST API lists them (``slots``, ``include_deferred``), in the shape :func:`pool_verdict` takes."""
    return {
        name: PoolState(int(pool.get("slots", 0)), bool(pool.get("include_deferred", False)))
        for name, pool in listed.items()
    }
