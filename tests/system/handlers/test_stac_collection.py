"""The batch's STAC collection: items built from rows and results, the collection derived from the item files,
and no item lost while many processes write at once, on local disk and on S3 (moto) through ObjectStoragePath."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_provider_openeo.handlers.stac_collection import BatchCollection
from tests.stac_checks import assert_validates_offline, items_by_row
from tests.unit.handlers.test_stac_collection import _expected_rows, _run_writers

# -- items ---------------------------------------------------------------------------------------------------


# -- the collection ------------------------------------------------------------------------------------------


# -- many writers at once, in real processes -----------------------------------------------------------------


@pytest.fixture
def s3_root(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """A bucket on a moto S3 server, reached through an Airflow ``aws`` connection given in the environment."""
    pytest.importorskip("moto.server", reason="moto[server] (test extra) runs the S3 server")
    pytest.importorskip("s3fs", reason="s3fs (apache-airflow-providers-amazon[s3fs]) reaches S3")
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        bucket = f"stac-{uuid.uuid4().hex[:8]}"
        boto3.client(
            "s3", endpoint_url=endpoint, aws_access_key_id="testing", aws_secret_access_key="testing",
            region_name="us-east-1",
        ).create_bucket(Bucket=bucket)  # fmt: skip
        connection = {
            "conn_type": "aws",
            "login": "testing",
            "password": "testing",
            "extra": {"endpoint_url": endpoint, "region_name": "us-east-1"},
        }
        env = {"AIRFLOW_CONN_STAC_S3": json.dumps(connection)}
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        yield {"kind": "s3", "url": f"s3://stac_s3@{bucket}/results", "env": env}
    finally:
        server.stop()


def test_concurrent_writers_on_object_storage_lose_no_item(s3_root: dict[str, Any]):
    from airflow.sdk import ObjectStoragePath
    from upath import UPath

    writers, per_writer = 3, 3
    _run_writers(s3_root, writers, per_writer)
    collection = BatchCollection(ObjectStoragePath(s3_root["url"]), "tiles")
    assert collection.read_collection() == collection.build(collection.read_items())
    # Validated and read as any S3 client sees it (not through Airflow).
    bucket_path = s3_root["url"].split("@", 1)[1]
    connection = json.loads(s3_root["env"]["AIRFLOW_CONN_STAC_S3"])
    seen = UPath(
        f"s3://{bucket_path}/stac/tiles/collection.json",
        endpoint_url=connection["extra"]["endpoint_url"], key="testing", secret="testing",
        client_kwargs={"region_name": "us-east-1"},
    )  # fmt: skip
    read = assert_validates_offline(seen)
    assert set(items_by_row(read)) == _expected_rows(writers, per_writer)


# -- reading it downstream -------------------------------------------------------------------------------------
