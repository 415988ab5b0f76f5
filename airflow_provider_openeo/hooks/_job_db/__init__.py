"""The job database hook's private half: columns and their codec, the SQL schema, file import and export, errors.
Every difference between the databases (SQLite, PostgreSQL) is in ``sql``: a new one is added there.
"""
