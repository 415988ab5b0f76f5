"""Result assets and logs as production backends serve them: large files, expiring signed links, Range,
checksums, cut-off and throttled downloads, paged logs; each observed by a real client over HTTP."""

from __future__ import annotations

import hashlib
import time
import urllib.parse

import openeo
import pytest
import requests

from local_backend.launcher import LocalBackend, SettingsError
from tests.system.local_backend.conftest import create_job, statuses_until_done

ASSETS_KEY_PREFIX = "GET /jobs/{job_id}/results/assets/"


def _finished_job(conn: openeo.Connection, **overrides: object) -> openeo.BatchJob:
    job = create_job(conn, queue_seconds=0, run_seconds=0.1, **overrides)
    job.start()
    assert statuses_until_done(job)[-1] == ("error" if overrides.get("fail") else "finished")
    return job


def _assets(job: openeo.BatchJob) -> dict[str, dict]:
    return job.get_results().get_metadata()["assets"]


def _get(conn: openeo.Connection, href: str, **headers: str) -> requests.Response:
    return requests.get(href, auth=conn.auth, headers=headers, timeout=30)


def _asset_bytes_sent(backend: LocalBackend) -> int:
    return sum(size for key, size in backend.bytes_sent().items() if key.startswith(ASSETS_KEY_PREFIX))


def test_defaults_are_unchanged(conn: openeo.Connection) -> None:
    job = _finished_job(conn)
    assets = _assets(job)
    assert sorted(assets) == ["result.json", "result.tif"]
    href = assets["result.tif"]["href"]
    assert href.endswith(f"/jobs/{job.job_id}/results/assets/result.tif")
    assert "expires" not in href
    assert assets["result.tif"]["file:size"] == 2048
    assert "file:checksum" not in assets["result.tif"]
    logs = conn.get(f"/jobs/{job.job_id}/logs").json()
    assert logs["links"] == []


def test_several_large_assets_with_size_and_checksum(conn: openeo.Connection, openeo_backend: LocalBackend) -> None:
    openeo_backend.configure(result_assets=3, result_size=300_000, asset_checksums=True)
    job = _finished_job(conn)
    assets = _assets(job)
    assert sorted(assets) == ["result.json", "result.tif", "result_2.tif", "result_3.tif"]
    bodies = {}
    for name, asset in assets.items():
        body = _get(conn, asset["href"]).content
        bodies[name] = body
        assert asset["file:size"] == len(body)
        assert asset["file:checksum"] == "1220" + hashlib.sha256(body).hexdigest()
    assert len({bodies[n] for n in ("result.tif", "result_2.tif", "result_3.tif")}) == 3
    assert all(bodies[n][:4] == b"II*\x00" for n in ("result.tif", "result_2.tif"))


def test_range_requests_get_the_tail(conn: openeo.Connection) -> None:
    job = _finished_job(conn)
    href = _assets(job)["result.tif"]["href"]
    whole = _get(conn, href).content
    part = _get(conn, href, Range="bytes=1000-")
    assert part.status_code == 206
    assert part.headers["Content-Range"] == f"bytes 1000-{len(whole) - 1}/{len(whole)}"
    assert part.content == whole[1000:]


def test_signed_links_expire_with_410_and_a_fresh_results_read_renews_them(
    conn: openeo.Connection, openeo_backend: LocalBackend
) -> None:
    openeo_backend.configure(signed_url_lifetime=0.6)
    job = _finished_job(conn)
    href = _assets(job)["result.tif"]["href"]
    query = urllib.parse.parse_qs(urllib.parse.urlparse(href).query)
    assert float(query["expires"][0]) == pytest.approx(time.time() + 0.6, abs=0.5)
    # no bearer token needed: the signature is the permission
    assert requests.get(href, timeout=30).status_code == 200
    ranged = requests.get(href, headers={"Range": "bytes=10-19"}, timeout=30)
    assert (ranged.status_code, ranged.headers["Content-Range"]) == (206, "bytes 10-19/2048")
    tampered = href.replace("expires=", "expires=9").replace("/result.tif", "/result.tif")
    assert requests.get(tampered, timeout=30).status_code == 403

    time.sleep(0.7)
    expired = requests.get(href, timeout=30)
    assert expired.status_code == 410
    assert expired.json()["code"] == "ResultLinkExpired"
    fresh = _assets(job)["result.tif"]["href"]
    assert fresh != href
    assert requests.get(fresh, timeout=30).status_code == 200


def test_cut_off_download_and_the_byte_counter(conn: openeo.Connection, openeo_backend: LocalBackend) -> None:
    openeo_backend.configure(result_size=100_000)
    job = _finished_job(conn)
    href = _assets(job)["result.tif"]["href"]
    openeo_backend.reset_stats()
    openeo_backend.configure(faults=[{"path": r"/results/assets/", "truncate_after": 30_000, "times": 1}])
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        _get(conn, href).content  # noqa: B018
    assert _asset_bytes_sent(openeo_backend) == 30_000
    assert openeo_backend.fault_stats() == {"truncate": 1}
    assert len(_get(conn, href).content) == 100_000  # the rule was spent
    assert _asset_bytes_sent(openeo_backend) == 130_000


def test_throttled_download_takes_its_time(conn: openeo.Connection, openeo_backend: LocalBackend) -> None:
    openeo_backend.configure(result_size=400_000)
    job = _finished_job(conn)
    href = _assets(job)["result.tif"]["href"]
    openeo_backend.configure(faults=[{"path": r"/results/assets/", "bytes_per_second": 1_000_000}])
    started = time.monotonic()
    assert len(_get(conn, href).content) == 400_000
    assert time.monotonic() - started >= 0.35


def test_logs_come_in_pages_with_next_links(conn: openeo.Connection, openeo_backend: LocalBackend) -> None:
    openeo_backend.configure(error_log_entries=5)
    job = _finished_job(conn, fail=True, fail_message="Out of memory")
    everything = conn.get(f"/jobs/{job.job_id}/logs", params={"level": "error"}).json()
    assert len(everything["logs"]) == 5
    assert everything["logs"][0]["message"] == "Out of memory"

    openeo_backend.configure(logs_page_size=2)
    pages = [conn.get(f"/jobs/{job.job_id}/logs", params={"level": "error"}).json()]
    while pages[-1]["links"]:
        (link,) = pages[-1]["links"]
        assert link["rel"] == "next"
        assert "level=error" in link["href"] and "offset=" in link["href"]
        pages.append(_get(conn, link["href"]).json())
    assert [len(p["logs"]) for p in pages] == [2, 2, 1]
    assert [e for p in pages for e in p["logs"]] == everything["logs"]


@pytest.mark.parametrize(
    "settings",
    [
        {"signed_url_lifetime": 0},
        {"result_assets": 0},
        {"logs_page_size": 0},
        {"asset_checksums": "yes"},
        {"faults": [{"truncate_after": -1}]},
        {"faults": [{"bytes_per_second": 0.5}]},
    ],
)
def test_bad_settings_are_refused(openeo_backend: LocalBackend, settings: dict) -> None:
    with pytest.raises(SettingsError):
        openeo_backend.configure(**settings)
