"""The local backend serves the collection names production backends use, so user code runs here as written."""

from __future__ import annotations

import openeo


def test_production_collection_names_are_served_with_their_bands(conn: openeo.Connection) -> None:
    ids = {collection["id"] for collection in conn.list_collections()}
    assert "SENTINEL2_L2A" in ids  # local_backend.catalog (imports openeo-driver: not importable here)
    assert "SENTINEL2_L2A_SENTINELHUB" in ids  # the dummy's own stays
    metadata = conn.describe_collection("SENTINEL2_L2A")
    assert metadata["id"] == "SENTINEL2_L2A"
    assert {"B04", "B08"} <= set(metadata["cube:dimensions"]["bands"]["values"])


def test_a_graph_on_a_production_collection_runs_as_a_batch_job(conn: openeo.Connection) -> None:
    """The README's MultiBackendJobManager script builds this graph; the client validates bands against the
    collection's metadata before creating the job."""
    cube = conn.load_collection(
        "SENTINEL2_L2A",
        spatial_extent={"west": 5.0, "south": 51.0, "east": 5.1, "north": 51.1},
        temporal_extent=["2021-01-01", "2022-01-01"],
        bands=["B04", "B08"],
    )
    job = (
        cube.ndvi(nir="B08", red="B04")
        .max_time()
        .create_job(title="ndvi", job_options={"local_backend": {"queue_seconds": 0, "run_seconds": 0.2}})
    )
    job.start_and_wait(max_poll_interval=0.2, soft_error_max=0, show_error_logs=False)
    assert job.status() == "finished"
    assert "load_collection" in str(job.describe()["process"]["process_graph"])
