"""How a task waits for its openEO job: the settings that travel from the task group to the trigger.

``openeo_job_batch``, ``OpenEOBatchJobOperator`` and ``OpenEOJobSensor`` all take ``poll_interval``,
``cancel_running_job_after`` and ``cancel_on_kill``, and hand them, unchanged, to :class:`OpenEOJobTrigger`.
They used to do so through attributes the wait mixin expected on the operator, with a default in each place that
took them (60 s in the task group, 30 s elsewhere). This object carries them instead: checked once where they are
passed (a bad value is a parse-time error naming it), each default defined here only, and turned into the
trigger's keyword arguments by :meth:`JobWaitSettings.trigger_kwargs` (whose names are the trigger's serialised
kwargs: a trigger stored by an earlier version deserialises unchanged).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from airflow_provider_openeo.batch import arguments

#: Seconds between status reads unless the DAG says otherwise: MultiBackendJobManager's ``poll_sleep``.
DEFAULT_POLL_INTERVAL = 60.0
#: Seconds a job may stay ``running`` before it is canceled: no limit (MultiBackendJobManager's default).
DEFAULT_CANCEL_RUNNING_JOB_AFTER: float | None = None
#: Whether killing the task (or its deadline passing) cancels the remote job.
DEFAULT_CANCEL_ON_KILL = True


@dataclasses.dataclass(frozen=True)
class JobWaitSettings:
    """The wait's settings, checked when built: ``poll_interval`` and ``cancel_running_job_after`` in seconds (a
    ``timedelta`` is accepted too and stored as seconds), so the trigger's kwargs stay plain JSON numbers."""

    poll_interval: float = DEFAULT_POLL_INTERVAL
    cancel_running_job_after: float | None = DEFAULT_CANCEL_RUNNING_JOB_AFTER
    cancel_on_kill: bool = DEFAULT_CANCEL_ON_KILL

    def __post_init__(self) -> None:
        # Frozen, so the checked (normalised) values are set through object.__setattr__.
        object.__setattr__(self, "poll_interval", arguments.seconds("poll_interval", self.poll_interval))
        limit = arguments.seconds("cancel_running_job_after", self.cancel_running_job_after, optional=True)
        object.__setattr__(self, "cancel_running_job_after", limit)
        object.__setattr__(self, "cancel_on_kill", bool(self.cancel_on_kill))

    def trigger_kwargs(self) -> dict[str, Any]:
        """The settings as :class:`OpenEOJobTrigger` takes (and serialises) them: one keyword per field."""
        return dataclasses.asdict(self)
