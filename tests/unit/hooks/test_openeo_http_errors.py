"""One mapping from an openEO answer's HTTP status to the error class, for the sync and the async client."""

from __future__ import annotations

import pytest

from airflow_provider_openeo.exceptions import (
    OpenEOApiRequestError,
    OpenEOAuthError,
    OpenEOJobNotFoundError,
    OpenEOProviderError,
    OpenEOTransientError,
)
from airflow_provider_openeo.hooks._openeo.http import error_for_status


@pytest.mark.parametrize(
    ("status", "job_id", "expected"),
    [
        (404, "j-1", OpenEOJobNotFoundError),
        (404, None, OpenEOApiRequestError),  # a 404 that names no job is a bad request, not a lost job
        (429, None, OpenEOTransientError),
        (503, "j-1", OpenEOTransientError),
        (401, None, OpenEOAuthError),
        (403, "j-1", OpenEOAuthError),
        (400, "j-1", OpenEOApiRequestError),
    ],
)
def test_status_maps_to_one_class(status, job_id, expected):
    error = error_for_status(status, "GET /jobs failed", job_id=job_id, retry_after=3.0, http_status=status, code="X")
    assert type(error) is expected
    assert isinstance(error, OpenEOProviderError)
    assert error.http_status == status and error.code == "X"
    if expected is OpenEOTransientError:
        assert error.retry_after == 3.0
    if expected is OpenEOJobNotFoundError:
        assert error.job_id == "j-1"


class _Connection:
    def secrets(self):
        return ("s3cr3t-token",)


class _Broken:
    def secrets(self):
        raise RuntimeError("no")


def test_secrets_for_redaction_come_from_one_place():
    from airflow_provider_openeo.hooks._openeo.http import connection_secrets, scrub

    assert connection_secrets(_Connection()) == ("s3cr3t-token",)
    assert connection_secrets(_Broken()) == () and connection_secrets(None) == ()
    assert scrub("401 for Bearer s3cr3t-token", _Connection()) == "401 for Bearer ***"
