"""The job database hook's private half: columns and their codec, the SQL schema, file import and export (its
errors are in ``airflow_provider_openeo.exceptions``). Every difference between the databases (SQLite, PostgreSQL)
is in ``sql``: a new one is added there.
"""
