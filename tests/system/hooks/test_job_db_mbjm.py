"""MBJM itself, unchanged, running a batch on our job table against two real local openEO backends."""

from __future__ import annotations

import openeo
import pandas as pd
import pytest
from openeo.extra.job_management import MultiBackendJobManager

from airflow_provider_openeo.hooks.job_db import OpenEOJobDbHook
from local_backend.launcher import BASIC_PASSWORD, BASIC_USER
from tests.fixtures.databases import same_table

pytestmark = pytest.mark.slow


def _start_job(row: pd.Series, connection: openeo.Connection, provider: str, **kwargs) -> openeo.BatchJob:
    """An MBJM-style callable, as users write them: the row's columns drive the job."""
    # Long enough for MBJM's poll to see "running" even on a loaded machine: it sets running_start_time only then.
    options = {"queue_seconds": 0.1, "run_seconds": 2.0, "fail": bool(row["fail"])}
    cube = connection.load_collection("S2_FOOBAR", bands=["B02"])
    return cube.create_job(title=f"{row['title']} on {provider}", job_options={"local_backend": options})


def test_mbjm_run_jobs_with_our_hook_as_job_db(job_db: OpenEOJobDbHook, openeo_backends, tmp_path) -> None:
    source = pd.DataFrame(
        {
            "title": [f"tile {i}" for i in range(6)],
            "year": range(2020, 2026),
            "fail": [False, False, False, True, False, False],
        }
    )
    manager = MultiBackendJobManager(poll_sleep=0.3, root_dir=tmp_path / "jobs")
    for name, backend in openeo_backends.items():
        connection = openeo.connect(backend.url).authenticate_basic(BASIC_USER, BASIC_PASSWORD)
        manager.add_backend(name, connection=connection, parallel_jobs=2)

    stats = manager.run_jobs(df=source, start_job=_start_job, job_db=job_db)

    df = same_table(job_db).read()
    assert job_db.count_by_status() == {"finished": 5, "error": 1}
    assert df.loc[3, "status"] == "error"
    pd.testing.assert_frame_equal(df[source.columns], source)  # the user's columns are untouched
    assert df["id"].notna().all() and df["id"].is_unique
    assert set(df["backend_name"]) <= set(openeo_backends) and df["start_time"].notna().all()
    finished = df[df["status"] == "finished"]
    assert finished["running_start_time"].notna().all()
    # usage went into MBJM's "value unit" columns, costs as a float
    assert finished["cpu"].str.endswith("cpu-seconds").all() and (finished["costs"] > 0).all()
    # MBJM 0.53 adds a column per further usage key; our table takes them through persist
    assert finished["input_pixel"].str.endswith(" mega-pixel").all()
    assert stats["job finished"] == 5 and stats["job failed"] == 1
    for job_id in finished["id"]:  # MBJM's on_job_done downloaded each finished job's results
        assert (tmp_path / "jobs" / f"job_{job_id}" / f"job_{job_id}.json").is_file()
    # every job exists exactly once on the backends: MBJM started no duplicates on our table
    on_backends = [job["id"] for backend in openeo_backends.values() for job in backend.jobs()]
    assert sorted(set(on_backends) & set(df["id"])) == sorted(df["id"])
