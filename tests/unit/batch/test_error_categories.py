"""The error classifier: each category from messages as the main backends write them, and the rules' order."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_openeo.batch.error_categories import RULES, ErrorCategory, Rule, classify, parse_category
from local_backend.failure_logs import CATEGORY_LOGS

OOM, NO_DATA, TIMEOUT = ErrorCategory.OUT_OF_MEMORY, ErrorCategory.NO_DATA, ErrorCategory.TIMEOUT
INVALID, FAULT, OTHER = ErrorCategory.INVALID_PROCESS_GRAPH, ErrorCategory.BACKEND_FAULT, ErrorCategory.OTHER


def entry(message: str, code: str | None = None) -> dict[str, Any]:
    return {"id": "1", "level": "error", "message": message, **({"code": code} if code else {})}


# Messages in the shape each backend logs them (geopyspark: "OpenEO batch job failed: <summary>", its YARN /
# Kubernetes diagnostics; python-driver: openEO API error codes and their message templates; aggregator: an
# upstream's entries passed through, or its own note when an upstream's logs cannot be read).
CASES = [
    # out of memory
    (
        "geopyspark executor over its YARN limit",
        [
            entry(
                "OpenEO batch job failed: Your batch job failed because "
                "workers used too much memory. The same task was "
                "attempted multiple times. Consider increasing "
                "executor-memory, python-memory or executor-memoryOverhead."
            )
        ],
        OOM,
    ),
    ("geopyspark exit 143", [entry("Container killed on request. Exit code is 143")], OOM),
    ("kubernetes exit 137", [entry("Executor exited with exit code: 137 (OOMKilled)")], OOM),
    (
        "YARN memory limit",
        [
            entry(
                "ExecutorLostFailure (executor 72 exited caused by one of "
                "the running tasks) Reason: Container killed by "
                "YARN for exceeding memory limits. 12.0 GB of 12 GB physical memory used."
            )
        ],
        OOM,
    ),
    (
        "geopyspark driver java heap",
        [
            entry(
                "OpenEO batch job failed: Your batch job failed because the "
                "'driver' used too much java memory. Consider "
                "increasing driver-memory or contact the developers to investigate."
            )
        ],
        OOM,
    ),
    ("java OutOfMemoryError", [entry("java.lang.OutOfMemoryError: Java heap space")], OOM),
    (
        "geopyspark UDF MemoryError",
        [
            entry(
                "OpenEO batch job failed: UDF exception while evaluating "
                "processing graph. Please check your user defined "
                'functions. stacktrace:\n  File "udf.py", line 3, in apply\nMemoryError\nRan out of memory. If you run '
                "as a batch_job, consider increasing job_options > python-memory."
            )
        ],
        OOM,
    ),
    (
        "geopyspark k8s driver OOMKilled",
        [entry("Your batch job main application went out of memory, consider increasing driver-memoryOverhead.")],
        OOM,
    ),
    # no data
    (
        "geopyspark load_collection",
        [
            entry(
                "There is no data available for the given extents. Could not "
                "find data for your load_collection request "
                "with catalog ID 'SENTINEL2_L2A'.",
                "NoDataAvailable",
            )
        ],
        NO_DATA,
    ),
    (
        "geopyspark load_stac",
        [entry("No data available with load_stac of url='https://stac.test/x' (loadstac1)")],
        NO_DATA,
    ),
    (
        "geopyspark empty stitch",
        [
            entry(
                "OpenEO batch job failed: Cannot construct an image because the given boundaries resulted in an empty "
                "image collection"
            )
        ],
        NO_DATA,
    ),
    ("code only (python-driver based)", [entry("nothing here", "NoDataAvailable")], NO_DATA),
    # invalid process graph
    ("python-driver ProcessGraphInvalid", [entry("Invalid process graph specified.", "ProcessGraphInvalid")], INVALID),
    (
        "python-driver ProcessParameterInvalid",
        [entry("The value passed for parameter 'bands' in process 'load_collection' is invalid: unknown band B99")],
        INVALID,
    ),
    (
        "python-driver ProcessUnsupported",
        [entry("Process with identifier 'ndvi2' is not available in namespace 'backend'.", "ProcessUnsupported")],
        INVALID,
    ),
    (
        "aggregator passing an upstream's entry through",
        [
            entry(
                "OpenEO batch job failed: ProcessParameterInvalid: The value "
                "passed for parameter 'geometries' in process "
                "'aggregate_spatial' is invalid"
            )
        ],
        INVALID,
    ),
    # timeout
    (
        "geopyspark YARN AM timeout",
        [
            entry(
                "The batch job did not start fast enough and got killed. You may want to simply try again, or contact "
                "the openEO service provider to look into your issue."
            )
        ],
        TIMEOUT,
    ),
    (
        "YARN diagnostics",
        [
            entry(
                "YARN application status reports error diagnostics: Application application_1 failed 1 times due to "
                "ApplicationMaster for attempt appattempt_1 timed out. Failing the application."
            )
        ],
        TIMEOUT,
    ),
    ("python-driver RequestTimeout", [entry("Request timed out.", "RequestTimeout")], TIMEOUT),
    ("CWL", [entry("CWL Job j-abc did not finish within 3600s")], TIMEOUT),
    # backend fault
    ("python-driver Internal", [entry("Server error: KeyError('bbox')", "Internal")], FAULT),
    (
        "geopyspark stage failure",
        [
            entry(
                "OpenEO batch job failed: A part of your process graph failed multiple times. Simply try submitting "
                "again, or use batch job logs to find more detailed information in case of persistent failures."
            )
        ],
        FAULT,
    ),
    (
        "geopyspark kubernetes",
        [
            entry(
                "OpenEO batch job failed: Batch job failed due to Kubernetes "
                "error, try running again, or contact support "
                "if the problem persists."
            )
        ],
        FAULT,
    ),
    ("aggregator partitioned job", [entry("Failed to get logs of pj-123:sj-4: ConnectionError('down')")], FAULT),
    (
        "python-driver busy",
        [entry("Service is not available at the moment due to overloading.", "InfrastructureBusy")],
        FAULT,
    ),
    # other
    (
        "a user's UDF bug",
        [
            entry(
                "OpenEO batch job failed: UDF exception while evaluating "
                "processing graph. Please check your user defined "
                "functions. stacktrace:\nZeroDivisionError: division by zero"
            )
        ],
        OTHER,
    ),
    ("nothing logged", [], OTHER),
]


@pytest.mark.parametrize(("entries", "category"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_category_from_the_backends_own_messages(entries: list[dict[str, Any]], category: ErrorCategory):
    assert classify(entries).category is category


def test_the_specific_cause_wins_over_a_generic_follow_up_whatever_the_order():
    follow_up = entry("A part of your process graph failed multiple times. Simply try submitting again.")
    cause = entry("java.lang.OutOfMemoryError: GC overhead limit exceeded")
    result = classify([follow_up, cause])
    assert result.category is OOM and result.entry == cause
    assert "geopyspark" in result.rule.source, "the rule says where its text comes from"


def test_no_logs_and_unreadable_logs_are_other():
    assert classify(None).category is OTHER
    assert classify([{"message": None}, "not an entry"]).category is OTHER  # type: ignore[list-item]


def test_every_rule_names_its_source_and_every_category_but_other_has_rules():
    assert all(rule.source for rule in RULES)
    assert {rule.category for rule in RULES} == set(ErrorCategory) - {OTHER}


def test_the_table_is_extended_by_passing_rules_of_ones_own():
    mine = (Rule(TIMEOUT, "my backend's watchdog", message=r"watchdog expired"), *RULES)
    assert classify([entry("watchdog expired after 2h")], mine).category is TIMEOUT
    assert classify([entry("watchdog expired after 2h")]).category is OTHER
    with pytest.raises(ValueError, match="matches nothing"):
        Rule(TIMEOUT, "empty")


@pytest.mark.parametrize("category", sorted(CATEGORY_LOGS))
def test_the_local_backends_logs_of_each_category_are_classified_as_that_category(category: str):
    entries = [entry(message, code) for message, code in CATEGORY_LOGS[category]]
    assert classify(entries).category.value == category


def test_unknown_category_names_the_known_ones():
    assert parse_category("no_data", where="x") is NO_DATA
    with pytest.raises(ValueError, match=r"retry: unknown error category 'oom'; known: backend_fault, .*out_of_memory"):
        parse_category("oom", where="retry")
