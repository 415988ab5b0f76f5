"""The batch, in the order it runs: what ``openeo_job_batch`` checks when the DAG file is parsed (``arguments``),
then per run ``init`` (``job_source``, ``row_keys``, ``tiling``), ``plan`` (``run_scope``, ``reruns``,
``planning``, ``preflight``, ``pool_check``, ``budget``, ``dry_run``), each row's dispatch to a backend with room
(``dispatching``, ``row_dispatch``), the failure policy (``failure_policy``, ``error_categories``) and the
``summary`` and chain of runs (``run_chain``). ``task_groups`` wires them into one task group.
"""
