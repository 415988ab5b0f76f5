"""Many task processes on one job table: every row claimed exactly once, no write lost (SQLite and PostgreSQL).

Eight processes (forked clean from a fork server, like Airflow task processes: ``tests.fixtures.races``) start
together on a barrier and: race for the same 16 rows with the package's one claim rule
(``job_starting.claim_holder`` / ``claim_values``, written by ``update_row`` as compare-and-set on ``claimed_by``);
drain the rest, each in its own order; after each claim write their row (``update_row`` as compare-and-set on the
claim, and ``persist`` of a one-row frame that adds a new column, so concurrent ``ALTER TABLE`` is exercised too);
and all increment one shared counter by compare-and-set.

The sizes keep every process meeting the others on every kind of write: 16 rows all eight claim in the same
order (their wins spread over five or six processes), 80 more where each starts 10 rows after the previous one and
so runs into the next one's claims, five increments each on the one counter. 240 rows only repeated the same
collisions, at about three times the cost.
"""

from __future__ import annotations

import pandas as pd
import pytest

from airflow_provider_openeo.hooks.job_db import OpenEOJobDbHook
from airflow_provider_openeo.start.job_starting import claim_holder, claim_values
from tests.fixtures.races import by_process, race_on_table

PROCESSES = 8
ROWS = 96
CONTESTED = 16
INCREMENTS = 5

pytestmark = pytest.mark.slow


def _worker(hook: OpenEOJobDbHook, k: int) -> tuple[list[int], list[int]]:
    """Process k's part: the contested rows it won, and every row it claimed."""
    owner = f"worker-{k}"

    def finish(row_id: int) -> None:
        written = hook.update_row(row_id, {"status": "finished", "worker": owner}, expected={"claimed_by": owner})
        assert written, f"{owner} lost its claim on row {row_id}"
        hook.persist(pd.DataFrame({"persisted_by": [owner]}, index=[row_id]))

    def claim(row_id: int) -> bool:
        values = hook.get_row(row_id)
        if values["status"] != "not_started" or claim_holder(values, owner):
            return False
        return hook.update_row(row_id, claim_values(owner), expected={"claimed_by": values.get("claimed_by")})

    won = [rid for rid in range(CONTESTED) if claim(rid)]
    for rid in won:
        finish(rid)
    claimed = list(won)
    rest = list(range(CONTESTED, ROWS))
    shift = k * len(rest) // PROCESSES  # each worker starts elsewhere, so they race only where they meet
    for rid in rest[shift:] + rest[:shift]:
        if claim(rid):
            claimed.append(rid)
            finish(rid)
    for _ in range(INCREMENTS):
        while True:
            current = hook.get_row(ROWS - 1)["counter"]
            if hook.update_row(ROWS - 1, {"counter": current + 1}, expected={"counter": current}):
                break
    return won, claimed


def _hammer(hook: OpenEOJobDbHook) -> None:
    hook.initialize_from_df(pd.DataFrame({"counter": [0] * ROWS, "worker": [None] * ROWS}))
    outcomes = race_on_table(hook, _worker, PROCESSES)

    claims = {rid: [f"worker-{k}" for k in ks] for rid, ks in by_process([claimed for _, claimed in outcomes]).items()}
    assert sorted(claims) == list(range(ROWS)), "some rows were never claimed"
    doubles = {rid: owners for rid, owners in claims.items() if len(owners) > 1}
    assert not doubles, f"rows claimed more than once: {doubles}"
    contested_winners = [rid for won, _ in outcomes for rid in won]
    assert sorted(contested_winners) == list(range(CONTESTED))

    df = hook.read()
    assert hook.count_by_status() == {"finished": ROWS}
    expected_owner = pd.Series({rid: owners[0] for rid, owners in claims.items()}).sort_index()
    for column in ("claimed_by", "worker", "persisted_by"):
        assert df[column].tolist() == expected_owner.tolist(), f"lost writes in column {column!r}"
    assert df.loc[ROWS - 1, "counter"] == PROCESSES * INCREMENTS, "lost compare-and-set increments"
    assert (df["counter"].iloc[:-1] == 0).all()


def test_eight_processes_on_sqlite(sqlite_job_db: OpenEOJobDbHook) -> None:
    _hammer(sqlite_job_db)


def test_eight_processes_on_postgres(postgres_job_db: OpenEOJobDbHook) -> None:
    _hammer(postgres_job_db)
