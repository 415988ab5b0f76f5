"""A handler is an operator argument: it must pickle, deep-copy, compare, and pass DAG serialisation clean."""

from __future__ import annotations

import copy
import json
import pickle
from pathlib import Path
from typing import Any

import pendulum
import pytest
from airflow.sdk import DAG, BaseOperator, ObjectStoragePath
from airflow.serialization.serialized_objects import DagSerialization

from airflow_provider_openeo.handlers.job_handlers import OpenEOJobHandler


class _KeepsHandler(BaseOperator):
    """Stands in for the batch operator: the handler is a plain, non-templated attribute."""

    def __init__(self, *, handler: OpenEOJobHandler, row_id: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.handler = handler
        self.row_id = row_id

    def execute(self, context: Any) -> str:
        return repr(self.handler)


class _MyHandler(OpenEOJobHandler):
    """What a migrating MBJM user writes: a subclass overriding one hook."""

    def on_job_done(self, context: Any, job: Any, row: Any, metadata: Any) -> dict[str, Any]:
        return {"custom": True, **super().on_job_done(context, job, row, metadata)}


HANDLERS = [
    OpenEOJobHandler(),
    OpenEOJobHandler("/data/results", download_results=False, chunk_size=4096),
    OpenEOJobHandler(Path("relative/results")),
    OpenEOJobHandler(ObjectStoragePath("s3://results_conn@bucket/openeo")),
    OpenEOJobHandler("s3://results_conn@bucket/openeo"),
    _MyHandler("/data/results"),
]


@pytest.mark.parametrize("handler", HANDLERS, ids=repr)
def test_handler_pickles_and_deep_copies_to_an_equal_handler(handler: OpenEOJobHandler) -> None:
    for clone in (pickle.loads(pickle.dumps(handler)), copy.deepcopy(handler)):
        assert type(clone) is type(handler)
        assert clone == handler
        assert repr(clone) == repr(handler)


def test_handlers_with_different_settings_differ() -> None:
    assert OpenEOJobHandler("/a") != OpenEOJobHandler("/b")
    assert OpenEOJobHandler("/a") != OpenEOJobHandler("/a", download_results=False)
    assert OpenEOJobHandler("/a") != _MyHandler("/a")


def test_repr_names_the_settings_that_matter() -> None:
    assert repr(OpenEOJobHandler("/data/results", download_results=False)) == (
        "OpenEOJobHandler(root_dir='/data/results', download_results=False)"
    )
    assert "s3://results_conn@bucket/openeo" in repr(OpenEOJobHandler("s3://results_conn@bucket/openeo"))


@pytest.mark.parametrize(
    ("kwargs", "message"), [({"chunk_size": 0}, "chunk_size"), ({"max_error_log_lines": -1}, "max")]
)
def test_bad_settings_are_refused_at_dag_parse_time(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        OpenEOJobHandler("/x", **kwargs)


def _dag_with_handlers() -> DAG:
    with DAG("handler_serialisation", schedule=None, start_date=pendulum.datetime(2024, 1, 1)) as dag:
        _KeepsHandler(task_id="plain", handler=OpenEOJobHandler("/data/results", download_results=False))
        _KeepsHandler.partial(task_id="mapped", handler=_MyHandler("s3://results_conn@bucket/openeo")).expand(
            row_id=[1, 2, 3]
        )
    return dag


def test_dag_serialisation_keeps_the_handler_out_of_the_way() -> None:
    """Airflow does not serialise plain attributes; a mapped task's partial kwargs go in as the handler's repr.

    Neither needs to come back as an object: workers re-parse the DAG file and get the real handler.
    """
    serialised = DagSerialization.to_dict(_dag_with_handlers())
    text = json.dumps(serialised)
    assert "_MyHandler(root_dir='s3://results_conn@bucket/openeo', download_results=True)" in text
    restored = DagSerialization.from_dict(serialised)
    assert sorted(restored.task_dict) == ["mapped", "plain"]


def test_object_store_connection_survives_airflow_copying_the_operator() -> None:
    """Airflow deep-copies operators (``partial_subset``, ``copy.deepcopy``); a bare ``ObjectStoragePath``
    loses its ``conn_id`` there in Airflow 3.3, the handler's root must not."""
    dag = _dag_with_handlers()
    with dag:
        _KeepsHandler(task_id="on_s3", handler=OpenEOJobHandler(ObjectStoragePath("s3://results_conn@bucket/x")))
    for operator in (copy.deepcopy(dag.task_dict["on_s3"]), dag.partial_subset("on_s3").task_dict["on_s3"]):
        assert operator.handler.root_dir.conn_id == "results_conn"
        assert str(operator.handler.root_dir) == "s3://results_conn@bucket/x"
