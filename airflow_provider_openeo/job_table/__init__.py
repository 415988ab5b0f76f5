"""The row model every step shares: a pointer to a row (``job_row``), the status vocabularies (``job_status``),
what a row keeps of a job it gives up (``job_history``), empty cells, timestamps and usage text.
"""
