"""Waiting on a row's job from a task (``job_waiting``, shared by the operator and the sensor), and the one rule
for declaring a job gone (``_job_gone``) with the listing evidence it weighs (``_job_listing``).
"""
