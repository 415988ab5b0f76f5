"""A user's history of old, long-finished jobs, made in one go (``POST /_control/history``).

Production backends keep a user's jobs for months (geopyspark's cleaner: 90 days), so a real account
lists thousands of old jobs before or among the few a batch is watching; listing costs and orphan
searches only show their real size against such a history. Creating 5,000 jobs through the API would
take minutes, so the records are built directly, with times in the past, and stored in one journal
write: they survive ``restart()`` like any other job. Standard library only.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from local_backend.store import JobRecord

MAX_HISTORY = 100_000
_DAY = 86_400.0
_MIN_AGE = 7_200.0  # the newest history job was created two hours ago: every one has ended by now
# Share of history jobs that ended each way (the rest finished).
_ERROR_SHARE = 0.08
_CANCELED_SHARE = 0.02
_PROCESS = {
    "process_graph": {
        "load": {
            "process_id": "load_collection",
            "arguments": {"id": "S2_FOOBAR", "spatial_extent": None, "temporal_extent": None, "bands": ["B02"]},
        },
        "save": {
            "process_id": "save_result",
            "arguments": {"data": {"from_node": "load"}, "format": "GTiff", "options": {}},
            "result": True,
        },
    }
}


class HistoryError(ValueError):
    """A bad history request; the message names the field."""


def _request(body: Mapping[str, Any], default_user: str) -> tuple[int, float, str, int | None]:
    count = body.get("count")
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_HISTORY:
        raise HistoryError(f"'count' must be an int in 1..{MAX_HISTORY}, got {count!r}")
    max_age = body.get("max_age_days", 90)
    if isinstance(max_age, bool) or not isinstance(max_age, (int, float)) or max_age * _DAY <= _MIN_AGE:
        raise HistoryError(f"'max_age_days' must be a number > {_MIN_AGE / _DAY:.3f}, got {max_age!r}")
    user = body.get("user", default_user)
    if not isinstance(user, str) or not user:
        raise HistoryError(f"'user' must be a non-empty string, got {user!r}")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise HistoryError(f"'seed' must be an int or null, got {seed!r}")
    unknown = sorted(set(body) - {"count", "max_age_days", "user", "seed"})
    if unknown:
        raise HistoryError(f"unknown key(s) {unknown}; known: count, max_age_days, user, seed")
    return count, float(max_age), user, seed


def history_records(
    body: Mapping[str, Any],
    *,
    default_user: str,
    job_id: Callable[[str], str],
    now: float | None = None,
) -> list[JobRecord]:
    """``count`` finished (some failed or canceled) jobs of ``user``, created uniformly over the last
    ``max_age_days`` (but at least two hours ago), each run once for seconds to an hour. ``job_id`` turns a
    local id into the backend's id (the aggregator prefixes its upstream)."""
    count, max_age_days, user, seed = _request(body, default_user)
    now = time.time() if now is None else now
    rng = random.Random(seed)
    records = []
    for i in range(count):
        created = now - rng.uniform(_MIN_AGE, max_age_days * _DAY)
        queue_seconds = rng.uniform(1, 300)
        run_seconds = rng.uniform(10, 3_600)
        started = created + rng.uniform(1, 60)
        ending = rng.random()
        canceled_at = started + queue_seconds + run_seconds / 2 if ending < _CANCELED_SHARE else None
        fail = _CANCELED_SHARE <= ending < _CANCELED_SHARE + _ERROR_SHARE
        records.append(
            JobRecord(
                id=job_id(f"j-{uuid.uuid4().hex}"),  # random even with a seed: a second call adds jobs
                user_id=user,
                created=created,
                process=_PROCESS,
                title=f"history {i}",
                start_count=1,
                started_at=started,
                queue_seconds=queue_seconds,
                run_seconds=run_seconds,
                fail=fail,
                fail_message="Old failure (history)." if fail else None,
                canceled_at=canceled_at,
            )
        )
    return records
