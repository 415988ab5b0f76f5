"""Re-runs: which statuses a run asks for (conf, Param, the batch's argument; none in a chained run), and how a
done row is re-opened: its job kept in job_history, the row not_started again, compare-and-set."""

from __future__ import annotations

import pandas as pd

from airflow_provider_openeo.batch.reruns import (
    reopen_rows,
)


def test_done_rows_are_re_opened_with_their_job_in_history(job_db):
    job_db.initialize_from_df(pd.DataFrame({"title": ["done", "failed", "refused", "live", "skipped"]}))
    job_db.update_row(0, {"status": "finished", "id": "j-0", "backend_name": "foo", "results_state": "downloaded"})
    job_db.update_row(1, {"status": "error", "id": "j-1", "backend_name": "bar", "backend_chosen_by": "dispatch"})
    job_db.update_row(2, {"status": "start_failed", "error_message": "row 2: refused"})
    job_db.update_row(3, {"status": "running", "id": "j-3"})
    job_db.update_row(4, {"status": "skipped"})

    reopened = reopen_rows(job_db, job_db.read(), ["finished", "error", "start_failed", "running"])

    assert reopened == [0, 1, 2], "a running row is resumed anyway, a skipped one was not asked for"
    table = job_db.read()
    assert list(table["status"]) == ["not_started", "not_started", "not_started", "running", "skipped"]
    assert table.loc[0, "id"] is None and table.loc[0, "results_state"] is None
    assert [h["id"] for h in table.loc[0, "job_history"]] == ["j-0"] and table.loc[0, "attempt"] == 1
    assert table.loc[0, "backend_name"] == "foo", "a user's backend stays"
    assert table.loc[1, "backend_name"] is None, "a backend the dispatch chose is free again"
    assert table.loc[2, "job_history"] == [] and table.loc[2, "error_message"] is None


def test_a_row_changed_meanwhile_is_left_alone(job_db):
    job_db.initialize_from_df(pd.DataFrame({"title": ["a"]}))
    job_db.update_row(0, {"status": "error", "id": "j-0"})
    stale = job_db.read()
    job_db.update_row(0, {"status": "error", "id": "j-1"})  # another task re-ran it meanwhile
    assert reopen_rows(job_db, stale, ["error"]) == []
    assert job_db.get_row(0)["id"] == "j-1"
