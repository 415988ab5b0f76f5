"""Settings a run may override from the trigger form: the run's conf, else its Param, else the batch's argument.

``rerun_statuses``, ``max_costs`` and ``dry_run`` are each an ``openeo_job_batch`` argument that a run can change
(a Param on the trigger form, or a key of the conf a REST call or a chained run passes). The order and the way a
bad value is named ("the run's conf 'max_costs' ...", "Param 'max_costs' ...") are the same for all of them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

T = TypeVar("T")


def run_conf(context: Mapping[str, Any]) -> Mapping[str, Any]:
    """The conf the run was triggered with (empty when none)."""
    return getattr(context.get("dag_run"), "conf", None) or {}


def run_setting(context: Mapping[str, Any], name: str, check: Callable[[str, Any], T], default: T) -> T:
    """``name`` from the run's conf, else from its Params, else ``default``; ``check(where, value)`` checks and
    converts a value given, naming where it came from in its error."""
    conf = run_conf(context)
    if name in conf:
        return check(f"the run's conf {name!r}", conf[name])
    params = context.get("params") or {}
    if name in params:
        return check(f"Param {name!r}", params[name])
    return default
