"""Job options: reading them, the merge of the layers, the check against processing parameters (pure), and what
``_create_options`` does with a ``POST /jobs`` body and a backend that serves no processing parameters."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
import requests
from openeo.rest import OpenEoApiError

from airflow_provider_openeo.batch import arguments
from airflow_provider_openeo.start._create_options import (
    OptionLayers,
    applying_job_options,
    forget_processing_parameters,
    own_options,
)
from airflow_provider_openeo.start.job_options import job_option_problems, merge_job_options, parse_job_options
from local_backend.parameters import CREATE_JOB_PARAMETERS


@pytest.mark.parametrize("empty", [None, float("nan"), "", "  "])
def test_empty_is_no_options(empty: Any):
    assert parse_job_options(empty, where="x") == {}


def test_json_text_and_dicts_are_read_as_options():
    assert parse_job_options('{"executor-memory": "4g"}', where="x") == {"executor-memory": "4g"}
    assert parse_job_options({"a": {"b": 1}}, where="x") == {"a": {"b": 1}}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("{not json", "row 3: field 'job_options' is not valid JSON"),
        ("[1, 2]", "row 3: field 'job_options' must be a JSON object of job options"),
        (["a"], "must be a JSON object"),
        ({1: "x"}, "option names must be non-empty strings"),
        ({"a": float("nan")}, "cannot be sent as JSON"),
        ({"a": object()}, "cannot be sent as JSON"),
    ],
)
def test_bad_options_name_where_they_came_from(value: Any, message: str):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        parse_job_options(value, where="row 3: field 'job_options'")


def test_the_batch_argument_is_checked_at_parse_time():
    assert arguments.job_options(None) == {}
    assert arguments.job_options({"executor-cores": 2}) == {"executor-cores": 2}
    with pytest.raises(ValueError, match=r"^job_options must be a JSON object"):
        arguments.job_options(4)
    with pytest.raises(ValueError, match=r"^job_options is not valid JSON"):
        arguments.job_options("4g")


def test_merge_is_per_key_higher_layers_win_and_null_removes():
    defaults = {"driver-memory": "1g", "executor-memory": "1g", "nested": {"a": 1, "b": 2}}
    own = {"executor-memory": "2g"}
    batch = {"executor-memory": "3g", "executor-cores": 2, "nested": {"a": 5}}
    row = {"executor-cores": 4, "driver-memory": None}
    assert merge_job_options(defaults, own, batch, row) == {
        "executor-memory": "3g",
        "executor-cores": 4,
        "nested": {"a": 5},  # replaced as a whole: no deep merge
    }
    assert merge_job_options(None, {}, None) == {}
    assert batch == {"executor-memory": "3g", "executor-cores": 2, "nested": {"a": 5}}, "layers are not changed"


@pytest.mark.parametrize(
    ("options", "problems"),
    [
        ({"executor-memory": "4g", "executor-cores": 8, "log_level": "debug"}, []),
        ({"local_backend": {"run_seconds": 2, "fail": True}}, []),
        ({"executor-cores": 4.0}, []),
        ({"memory": "4g"}, ["job option 'memory' is not one the backend knows (it knows: driver-memory, "]),
        ({"executor-cores": 0}, ["job option 'executor-cores': 0 is less than the minimum 1"]),
        ({"executor-cores": "2"}, ["job option 'executor-cores': '2' is not of type integer"]),
        ({"executor-cores": True}, ["job option 'executor-cores': True is not of type integer"]),
        ({"executor-memory": "4gb"}, ["job option 'executor-memory': '4gb' does not match the pattern"]),
        ({"log_level": "trace"}, ["job option 'log_level': 'trace' is not one of ['error', 'warning', 'info'"]),
        ({"local_backend": {"run_seconds": -1}}, ["job option 'local_backend': run_seconds: -1 is less than"]),
        ({"local_backend": {"sleep": 1}}, ["job option 'local_backend': sleep: not a known key"]),
    ],
)
def test_options_are_checked_against_the_parameters_schemas(options: dict[str, Any], problems: list[str]):
    found = job_option_problems(options, CREATE_JOB_PARAMETERS)
    assert len(found) == len(problems)
    for message, start in zip(found, problems, strict=True):
        assert message.startswith(start), message


def test_numeric_bounds_of_both_kinds():
    schema = [{"name": "n", "schema": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1}}]
    assert job_option_problems({"n": 0.5}, schema) == []
    assert job_option_problems({"n": 0}, schema) == ["job option 'n': 0 is not more than the exclusive minimum 0"]
    assert job_option_problems({"n": 1}, schema) == ["job option 'n': 1 is not less than the exclusive maximum 1"]


def test_start_jobs_own_options_are_its_job_options_object_else_its_non_standard_properties():
    assert own_options({"process": {}, "title": "t", "job_options": {"a": 1}, "b": 2}) == {"a": 1}
    assert own_options({"process": {}, "title": "t", "plan": "p", "log_level": "info", "b": 2}) == {"b": 2}


class _Session(requests.Session):
    """Sends nothing: answers every request 201, keeping what it was asked."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[requests.PreparedRequest] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self.sent.append(request)
        response = requests.Response()
        response.status_code = 201
        response.request = request
        return response


class _Connection:
    """What ``_create_options`` uses of an openeo ``Connection``: its session, root URL and ``get``."""

    def __init__(self, parameters_status: int = 404) -> None:
        self.session = _Session()
        self.root_url = f"http://backend-{id(self)}.test/openeo/1.2"
        self.parameters_status = parameters_status
        self.gets: list[str] = []

    def get(self, path: str, **kwargs: Any) -> Any:
        self.gets.append(path)
        raise OpenEoApiError(http_status_code=self.parameters_status, code="NotFound", message="no such route")


def _post_jobs(connection: _Connection, body: dict[str, Any]) -> dict[str, Any]:
    connection.session.post(f"{connection.root_url}/jobs", json=body)
    return json.loads(connection.session.sent[-1].body)


def test_without_batch_or_row_options_the_request_is_untouched_and_nothing_is_asked():
    connection = _Connection()
    body = {"process": {"process_graph": {}}, "title": "t", "executor-memory": "1g"}
    with applying_job_options(connection, OptionLayers({}, {}), label="row 0", backend="b"):  # type: ignore[arg-type]
        assert _post_jobs(connection, body) == body
    assert connection.gets == []


def test_a_backend_without_processing_parameters_is_not_checked_and_says_so_once(caplog: pytest.LogCaptureFixture):
    forget_processing_parameters()
    connection = _Connection(parameters_status=501)
    layers = OptionLayers({"anything": 1}, {"executor-cores": 99})
    caplog.set_level(logging.INFO, logger="airflow_provider_openeo.start._create_options")
    with applying_job_options(connection, layers, label="row 0", backend="b") as applied:  # type: ignore[arg-type]
        first = _post_jobs(connection, {"process": {"process_graph": {}}, "title": "t", "top": True})
        second = _post_jobs(connection, {"process": {"process_graph": {}}, "title": "u"})
    assert first == {
        "process": {"process_graph": {}},
        "title": "t",
        "job_options": {"top": True, "anything": 1, "executor-cores": 99},
    }
    assert second["job_options"] == {"anything": 1, "executor-cores": 99}
    assert applied.sent == [first["job_options"], second["job_options"]] and applied.refused is None
    assert connection.gets == ["/processing_parameters"], "asked once per backend"
    assert caplog.text.count("serves no GET /processing_parameters (HTTP 501)") == 1
    assert "send" not in vars(connection.session), "the session is as it was once start_job is done"


class _ServingConnection(_Connection):
    """A backend that serves processing parameters and one user-defined process with default job options."""

    def get(self, path: str, **kwargs: Any) -> Any:
        self.gets.append(path)
        document = (
            {"create_job_parameters": CREATE_JOB_PARAMETERS}
            if path == "/processing_parameters"
            else {"id": "udp", "default_job_options": {"driver-memory": "1g", "executor-memory": "1g"}}
        )
        response = requests.Response()
        response.status_code, response._content = 200, json.dumps(document).encode()
        return response


def test_a_refused_option_is_never_sent_and_names_the_row_and_the_option():
    forget_processing_parameters()
    connection = _ServingConnection()
    layers = OptionLayers({"executor-cores": 2}, {"executor-cores": 12})
    refused = "row 7: job option 'executor-cores': 12 is more than the maximum 8"
    with (
        applying_job_options(connection, layers, label="row 7", backend="b") as applied,  # type: ignore[arg-type]
        pytest.raises(ValueError, match=refused),
    ):
        connection.session.post(f"{connection.root_url}/jobs", json={"process": {"process_graph": {}}})
    assert connection.session.sent == [] and applied.refused is not None and applied.sent == []


def test_defaults_of_a_user_process_named_in_the_graph_are_the_lowest_layer():
    forget_processing_parameters()
    connection = _ServingConnection()
    graph = {
        "a": {"process_id": "load_collection", "arguments": {}},
        "b": {"process_id": "udp", "namespace": "user", "arguments": {}, "result": True},
    }
    layers = OptionLayers({"executor-memory": "3g"}, {})
    with applying_job_options(connection, layers, label="row 0", backend="b"):  # type: ignore[arg-type]
        sent = _post_jobs(connection, {"process": {"process_graph": graph}, "job_options": {"driver-memory": "2g"}})
    assert sent["job_options"] == {"driver-memory": "2g", "executor-memory": "3g"}
    assert connection.gets == ["/process_graphs/udp", "/processing_parameters"]
