"""The openEO hook's private half: settings read from the Airflow connection, one module per concern (auth,
HTTP retries and error mapping, the async status reads and the listing strategy). A new auth method is added in
``auth`` (its value, the fields it needs, its token source).
"""
