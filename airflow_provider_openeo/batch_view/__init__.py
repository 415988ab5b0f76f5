"""The batch view: a page in the Airflow UI per batch (job table) of openEO jobs, served by the provider's plugin.

``catalog`` finds the batches of the DAGs a user may read (from the DAGs Airflow serialized, no extra service),
``progress`` turns a job table into what the page shows (counts per backend, an estimate of the time left, the
rows, their tiles), ``app`` is the FastAPI app the API server mounts under ``/openeo`` with Airflow's own
authentication, and ``static/`` holds the page, its script and a vendored Leaflet for the map.
"""
