"""What happens when a job ends: its results stored (assets resumed, paths made safe, STAC items and the batch's
collection), its logs read, MBJM's ``on_job_done`` / ``on_job_error`` / ``on_job_cancel`` (``job_handlers``).
"""
