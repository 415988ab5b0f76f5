"""The "openEO job" extra link: cleaned URLs in XCom, and per-task-instance links to the batch view's page of the
task instance's row, through a real ``dag.test()`` run."""

from __future__ import annotations

import json
import runpy
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_openeo.batch_view.urls import task_instance_path
from airflow_provider_openeo.get_provider_info import get_provider_info
from airflow_provider_openeo.links.openeo import (
    OPENEO_JOB_URL_XCOM_KEY,
    OPENEO_ROW_ID_XCOM_KEY,
    OpenEOJobLink,
    clean_job_url,
)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://openeo.example/openeo/1.2/jobs/j-1", "https://openeo.example/openeo/1.2/jobs/j-1"),
        ("http://127.0.0.1:8080/openeo/1.2/jobs/j%2F1", "http://127.0.0.1:8080/openeo/1.2/jobs/j%2F1"),
        ("https://alice:alice123@openeo.example/jobs/j-1", "https://openeo.example/jobs/j-1"),
        ("HTTPS://openeo.example/jobs/j-1", "https://openeo.example/jobs/j-1"),
        ("http://[::1]:8080/jobs/j-1", "http://[::1]:8080/jobs/j-1"),
        ("javascript:alert(document.cookie)", ""),
        ("file:///etc/passwd", ""),
        ("data:text/html,<script>x</script>", ""),
        ("https:///no-host", ""),
        ("http://host:99999/x", ""),
        ("", ""),
        (None, ""),
        (42, ""),
    ],
)
def test_clean_job_url(url: Any, expected: str) -> None:
    assert clean_job_url(url) == expected


class _RecordingTI:
    def __init__(self) -> None:
        self.pushed: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


def test_persist_pushes_only_a_clean_url() -> None:
    ti = _RecordingTI()
    assert OpenEOJobLink.persist({"ti": ti}, "https://bob:secret@b.example/jobs/j-1") == "https://b.example/jobs/j-1"
    assert ti.pushed == {OPENEO_JOB_URL_XCOM_KEY: "https://b.example/jobs/j-1"}
    ti = _RecordingTI()
    assert OpenEOJobLink.persist({"ti": ti}, "javascript:alert(1)") == ""
    assert ti.pushed == {}


def test_persist_pushes_the_row_the_task_instance_runs() -> None:
    ti = _RecordingTI()
    OpenEOJobLink.persist({"ti": ti}, "https://b.example/jobs/j-1", row_id=7)
    assert ti.pushed == {OPENEO_JOB_URL_XCOM_KEY: "https://b.example/jobs/j-1", OPENEO_ROW_ID_XCOM_KEY: 7}


def test_link_is_registered_with_the_provider() -> None:
    assert "airflow_provider_openeo.links.openeo.OpenEOJobLink" in get_provider_info()["extra-links"]
    assert OpenEOJobLink().name == "openEO job"


_DAG_FILE = '''
import pendulum
from airflow.sdk import DAG, BaseOperator

from airflow_provider_openeo.handlers.job_handlers import OpenEOJobHandler
from airflow_provider_openeo.links.openeo import OpenEOJobLink


class JobTask(BaseOperator):
    """Like the batch operator: a handler attribute, the link, the URL persisted before any failure."""

    operator_extra_links = (OpenEOJobLink(),)

    def __init__(self, *, job_url, handler, fail=False, **kwargs):
        super().__init__(**kwargs)
        self.job_url = job_url
        self.handler = handler
        self.fail = fail

    def execute(self, context):
        OpenEOJobLink.persist(context, self.job_url)
        if self.fail:
            raise RuntimeError("the job ended in error")
        root = self.handler.root_dir
        return {"handler": repr(self.handler), "root_conn_id": getattr(root, "conn_id", None)}


with DAG("openeo_link_test", schedule=None, start_date=pendulum.datetime(2024, 1, 1)) as dag:
    JobTask(
        task_id="single",
        job_url="https://alice:alice123@backend.example/openeo/1.2/jobs/j-single",
        handler=OpenEOJobHandler("/results", download_results=False),
    )
    JobTask.partial(
        task_id="rows",
        handler=OpenEOJobHandler(__import__("airflow.sdk").sdk.ObjectStoragePath("s3://results_conn@bucket/x")),
    ).expand(job_url=[f"https://backend.example/openeo/1.2/jobs/j-row{i}" for i in range(3)])
    JobTask(
        task_id="failing",
        job_url="https://backend.example/openeo/1.2/jobs/j-failed",
        handler=OpenEOJobHandler(),
        fail=True,
        retries=0,
    )
'''


@pytest.fixture(scope="module")
def link_dag_run(airflow_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Run the DAG above once with ``dag.test()``; its file lives in a DAG bundle of its own."""
    dags = tmp_path_factory.mktemp("link_dags")
    dag_file = dags / "openeo_link_test.py"
    dag_file.write_text(textwrap.dedent(_DAG_FILE))
    bundle = {
        "name": "openeo_link_test_dags",
        "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
        "kwargs": {"path": str(dags), "refresh_interval": 0},
    }
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", json.dumps([bundle]))
        dag = runpy.run_path(str(dag_file))["dag"]
        yield dag.test()


def _xcoms(run_id: str) -> dict[tuple[str, int, str], Any]:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(XComModel).filter(XComModel.dag_id == "openeo_link_test", XComModel.run_id == run_id)
        return {(x.task_id, x.map_index, x.key): x.value for x in rows}


def test_each_task_instance_links_to_the_batch_views_page_of_its_job(link_dag_run: Any) -> None:
    """The button opens the batch view's page of the task instance (which shows its row and job, with the backend's
    URL); it appears once the job's URL is known."""
    from airflow.configuration import conf
    from airflow.models.serialized_dag import SerializedDagModel
    from airflow.models.taskinstancekey import TaskInstanceKey

    states = {(ti.task_id, ti.map_index): ti.state for ti in link_dag_run.get_task_instances()}
    assert states == {
        ("single", -1): "success",
        ("rows", 0): "success",
        ("rows", 1): "success",
        ("rows", 2): "success",
        ("failing", -1): "failed",
    }
    base = (conf.get("api", "base_url", fallback="") or "").rstrip("/")
    expected = {
        key: base + task_instance_path("openeo_link_test", link_dag_run.run_id, key[0], key[1])
        for key in [("single", -1), *[("rows", i) for i in range(3)], ("failing", -1)]
    }
    # What the API server does for the UI: the deserialised operator's link, asked with each TI's key.
    dag = SerializedDagModel.get_dag("openeo_link_test")
    for (task_id, map_index), url in expected.items():
        task = dag.get_task(task_id)
        (link,) = task.operator_extra_links
        assert link.name == "openEO job"
        key = TaskInstanceKey(
            dag_id="openeo_link_test",
            task_id=task_id,
            run_id=link_dag_run.run_id,
            try_number=1,
            map_index=map_index,
        )
        assert link.get_link(task, ti_key=key) == url


def test_the_url_and_the_handler_reach_xcom_without_credentials(link_dag_run: Any) -> None:
    xcoms = _xcoms(link_dag_run.run_id)
    assert xcoms[("single", -1, OPENEO_JOB_URL_XCOM_KEY)] == "https://backend.example/openeo/1.2/jobs/j-single"
    assert "alice123" not in json.dumps(list(xcoms.items()), default=str)
    # The handler arrived in every mapped task instance intact, its object-store connection id included.
    for i in range(3):
        returned = xcoms[("rows", i, "return_value")]
        assert returned == {
            "handler": "OpenEOJobHandler(root_dir='s3://results_conn@bucket/x', download_results=True)",
            "root_conn_id": "results_conn",
        }
