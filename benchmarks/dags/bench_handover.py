"""Workload 8's DAGs (``benchmarks.handover_floor``): instances of one pool handing their slot on, without openEO.

``bench_handover_idle``: one mapped task, nothing else in the run. ``bench_handover_waiting``: a mapped task group
whose every instance has a downstream task waiting for it, as the provider's ``job`` -> ``results``. The trigger's
Params give the instances; the pool's slots are set by the bench before each run.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import DAG, Param, task, task_group

from benchmarks.handover_floor import POOL, HoldSlotOperator, dag_id_of

PARAMS = {"instances": Param(8, type="integer", minimum=1)}


@task
def indexes(**context: Any) -> list[int]:
    return list(range(int(context["params"]["instances"])))


with DAG(dag_id_of(False), schedule=None, catchup=False, params=PARAMS, tags=["benchmark"]) as bench_handover_idle:
    HoldSlotOperator.partial(task_id="hold", pool=POOL).expand(index=indexes())


with DAG(dag_id_of(True), schedule=None, catchup=False, params=PARAMS, tags=["benchmark"]) as bench_handover_waiting:

    @task_group(group_id="row")
    def row(index: int) -> None:
        @task
        def after() -> None:
            """Nothing: like the provider's ``results`` task, it waits for its instance's slot holder."""

        HoldSlotOperator(task_id="hold", pool=POOL, index=index) >> after()

    row.expand(index=indexes())
