"""Run-time settings of a local backend: defaults and validation.

Shared by the launcher (main venv, validates before anything is sent) and the server (driver venv,
validates what arrives over ``POST /_control/config``), so a typo fails at the caller with the name of
the offending key instead of being ignored by the server.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

from local_backend.federation import ROUND_ROBIN, UPSTREAM_SEPARATOR
from local_backend.profiles import DEFAULT, LISTING_ORDERS, NEWEST_FIRST, PROFILES

# Keys of one fault rule. The top-level settings double as the "default rule" (so
# ``configure(error_rate=0.5)`` works); ``faults`` adds more rules with their own selectors.
FAULT_RULE_DEFAULTS: dict[str, Any] = {
    "error_rate": 0.0,  # share of matching requests answered with ``error_status``
    "error_status": 500,
    "rate_limit_rate": 0.0,  # share answered 429 with a Retry-After header
    "retry_after": 1,  # seconds, sent in Retry-After
    "drop_rate": 0.0,  # share whose connection is closed without any answer
    "latency": 0.0,  # seconds added before the request is handled
    "methods": None,  # e.g. ["GET"]; None = every method
    "path": None,  # regex searched in the path template ("/jobs/{job_id}") and the concrete path
    "endpoints": None,  # e.g. ["GET /jobs/{job_id}"], the same keys as the request counter
    "times": None,  # the rule fires at most this many times (then it is spent); None = forever
    "after": False,  # True: handle the request for real, then replace the answer by the fault
    "truncate_after": None,  # bytes: the answer's body is cut off (connection closed) after this many
    "bytes_per_second": None,  # the answer's body is sent no faster than this
}

#: Usage the backend can report, per second of a job's run time, shaped like VITO's geopyspark backends report
#: it: key -> (amount per second, unit).
USAGE_METRICS: dict[str, tuple[float, str]] = {
    "cpu": (2.0, "cpu-seconds"),
    "memory": (2048.0, "mb-seconds"),
    "duration": (1.0, "seconds"),
    "input_pixel": (0.25, "mega-pixel"),
    "sentinelhub": (3.0, "sentinelhub_processing_unit"),
    "max_executor_memory": (0.5, "gb"),
    "network_received": (1000.0, "b"),
}
DEFAULT_USAGE_KEYS: tuple[str, ...] = ("cpu", "memory", "duration", "input_pixel", "sentinelhub")

DEFAULT_SETTINGS: dict[str, Any] = {
    "name": "local",
    "queue_seconds": 1.0,
    "run_seconds": 2.0,
    "max_concurrent_jobs": None,  # per user, queued + running; None = unlimited
    "concurrent_limit_status": 400,  # HTTP status of ConcurrentJobLimit (VITO answers 429 on some routes)
    "fail_title_regex": None,  # jobs whose title matches end in "error"
    "reject_process_graphs": False,  # True, or a regex searched in the process graph JSON
    "access_token_lifetime": 600.0,  # seconds an OIDC access token stays valid
    "result_size": 2048,  # bytes of each raster-like result asset
    "result_assets": 1,  # raster assets per job: result.tif, then result_2.tif, result_3.tif, ...
    "asset_checksums": False,  # results list file:checksum (multihash sha2-256) for every asset
    "estimates": True,  # GET /jobs/{id}/estimate served and listed in capabilities; False: 501, unlisted
    "signed_url_lifetime": None,  # seconds a signed asset link is valid (then 410 ResultLinkExpired); None = unsigned
    "logs_page_size": None,  # log entries per GET /jobs/{id}/logs page (rel=next link with offset); None = all at once
    "error_log_entries": 1,  # error entries a failed job logs (the first carries the failure message)
    "seed": None,  # seed of the fault dice (and of the ``unordered`` listing order), for reproducible runs
    "profile": DEFAULT,  # the production server imitated: default, geopyspark, aggregator, fastapi (profiles.py)
    "listing_order": None,  # newest_first, oldest_first, unordered; None = the profile's own order
    "upstreams": ["vito", "eodc"],  # aggregator profile: upstream names, the prefixes of job ids
    "upstream_assignment": ROUND_ROBIN,  # aggregator profile: round_robin, or the one upstream new jobs go to
    "usage_keys": list(DEFAULT_USAGE_KEYS),  # the keys of USAGE_METRICS a job's usage reports
    "faults": [],
    **FAULT_RULE_DEFAULTS,
}

_RATES = ("error_rate", "rate_limit_rate", "drop_rate")


class SettingsError(ValueError):
    """A setting has an unknown name or a value of the wrong kind; the message names it."""


def _number(key: str, value: Any, *, minimum: float = 0.0, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SettingsError(f"setting {key!r} must be a number, got {value!r}")
    if value < minimum:
        raise SettingsError(f"setting {key!r} must be >= {minimum}, got {value!r}")
    return value


def _int_in(key: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise SettingsError(f"setting {key!r} must be an int in {low}..{high}, got {value!r}")
    return value


def _regex(key: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise SettingsError(f"setting {key!r} must be a regular expression string, got {value!r}")
    try:
        re.compile(value)
    except re.error as exc:
        raise SettingsError(f"setting {key!r} is not a valid regular expression: {exc}") from None
    return value


def _string_list(key: str, value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise SettingsError(f"setting {key!r} must be a list of strings, got {value!r}")
    return list(value)


def validate_fault_rule(rule: Mapping[str, Any], where: str = "fault rule") -> dict[str, Any]:
    """Check one rule; unknown keys are errors so a misspelt selector cannot silently fault everything."""
    unknown = sorted(set(rule) - set(FAULT_RULE_DEFAULTS))
    if unknown:
        raise SettingsError(f"{where}: unknown key(s) {unknown}; known: {sorted(FAULT_RULE_DEFAULTS)}")
    out = {**FAULT_RULE_DEFAULTS, **rule}
    for key in _RATES:
        rate = _number(f"{where}.{key}", out[key])
        if rate is not None and rate > 1:
            raise SettingsError(f"setting {where}.{key} is a probability in [0, 1], got {rate!r}")
    total = sum(out[k] for k in _RATES)
    if total > 1 + 1e-9:
        raise SettingsError(f"{where}: error_rate + rate_limit_rate + drop_rate must be <= 1, got {total}")
    status = out["error_status"]
    # 404 (JobNotFound) too: what a federation answers for every job of an upstream it cannot reach.
    if isinstance(status, bool) or not isinstance(status, int) or not (500 <= status <= 599 or status == 404):
        raise SettingsError(f"setting {where}.error_status must be 404 or an int in 500..599, got {status!r}")
    _number(f"{where}.retry_after", out["retry_after"])
    _number(f"{where}.latency", out["latency"])
    out["methods"] = [m.upper() for m in _string_list(f"{where}.methods", out["methods"]) or []] or None
    out["path"] = _regex(f"{where}.path", out["path"])
    out["endpoints"] = _string_list(f"{where}.endpoints", out["endpoints"])
    times = out["times"]
    if times is not None and (isinstance(times, bool) or not isinstance(times, int) or times < 0):
        raise SettingsError(f"setting {where}.times must be a non-negative int or None, got {times!r}")
    for key in ("truncate_after", "bytes_per_second"):
        value = out[key]
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise SettingsError(f"setting {where}.{key} must be a positive int or None, got {value!r}")
    if not isinstance(out["after"], bool):
        raise SettingsError(f"setting {where}.after must be true or false, got {out['after']!r}")
    return out


def _validate_profile(merged: dict[str, Any]) -> None:
    if merged["profile"] not in PROFILES:
        raise SettingsError(f"setting 'profile' must be one of {sorted(PROFILES)}, got {merged['profile']!r}")
    order = merged["listing_order"]
    if order is not None and order not in LISTING_ORDERS:
        raise SettingsError(f"setting 'listing_order' must be one of {list(LISTING_ORDERS)} or None, got {order!r}")
    if merged["profile"] == DEFAULT and order not in (None, NEWEST_FIRST):
        raise SettingsError(
            f"setting 'listing_order' {order!r} needs a profile other than {DEFAULT!r}, "
            f"whose cursor paging only works newest first"
        )
    upstreams = _string_list("upstreams", merged["upstreams"])
    if not upstreams or len(set(upstreams)) != len(upstreams):
        raise SettingsError(f"setting 'upstreams' must be a non-empty list of distinct names, got {upstreams!r}")
    for name in upstreams:
        if not re.fullmatch(r"[A-Za-z0-9_]{1,32}", name):
            raise SettingsError(
                f"setting 'upstreams': {name!r} must match [A-Za-z0-9_]{{1,32}} "
                f"({UPSTREAM_SEPARATOR!r} separates the upstream from the id)"
            )
    merged["upstreams"] = upstreams
    assignment = merged["upstream_assignment"]
    if assignment != ROUND_ROBIN and assignment not in upstreams:
        raise SettingsError(
            f"setting 'upstream_assignment' must be {ROUND_ROBIN!r} or one of {upstreams}, got {assignment!r}"
        )


def validate_settings(updates: Mapping[str, Any], base: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Merge ``updates`` into ``base`` (defaults when None) and return the checked result.

    Raises SettingsError naming the first bad key; ``base`` is never modified.
    """
    unknown = sorted(set(updates) - set(DEFAULT_SETTINGS))
    if unknown:
        raise SettingsError(f"unknown setting(s) {unknown}; known: {sorted(DEFAULT_SETTINGS)}")
    merged = copy.deepcopy(dict(base if base is not None else DEFAULT_SETTINGS))
    merged.update(copy.deepcopy(dict(updates)))

    if not isinstance(merged["name"], str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", merged["name"]):
        raise SettingsError(f"setting 'name' must match [A-Za-z0-9_.-]{{1,64}}, got {merged['name']!r}")
    _number("queue_seconds", merged["queue_seconds"])
    _number("run_seconds", merged["run_seconds"])
    limit = merged["max_concurrent_jobs"]
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise SettingsError(f"setting 'max_concurrent_jobs' must be a non-negative int or None, got {limit!r}")
    if merged["concurrent_limit_status"] not in (400, 429):
        raise SettingsError(
            f"setting 'concurrent_limit_status' must be 400 or 429, got {merged['concurrent_limit_status']!r}"
        )
    _regex("fail_title_regex", merged["fail_title_regex"])
    reject = merged["reject_process_graphs"]
    if not isinstance(reject, bool):
        _regex("reject_process_graphs", reject)
    _number("access_token_lifetime", merged["access_token_lifetime"], minimum=0.1)
    size = merged["result_size"]
    if isinstance(size, bool) or not isinstance(size, int) or not 16 <= size <= 100_000_000:
        raise SettingsError(f"setting 'result_size' must be an int in 16..100000000, got {size!r}")
    _int_in("result_assets", merged["result_assets"], 1, 100)
    keys = _string_list("usage_keys", merged["usage_keys"])
    unknown_keys = sorted(set(keys or []) - set(USAGE_METRICS))
    if keys is None or unknown_keys or len(set(keys)) != len(keys):
        raise SettingsError(
            f"setting 'usage_keys' must be a list of distinct names from {list(USAGE_METRICS)}, "
            f"got {merged['usage_keys']!r}"
        )
    merged["usage_keys"] = keys
    _int_in("error_log_entries", merged["error_log_entries"], 1, 10_000)
    if merged["logs_page_size"] is not None:
        _int_in("logs_page_size", merged["logs_page_size"], 1, 10_000)
    for flag in ("asset_checksums", "estimates"):
        if not isinstance(merged[flag], bool):
            raise SettingsError(f"setting {flag!r} must be true or false, got {merged[flag]!r}")
    lifetime = _number("signed_url_lifetime", merged["signed_url_lifetime"], allow_none=True)
    if lifetime is not None and lifetime <= 0:
        raise SettingsError(f"setting 'signed_url_lifetime' must be > 0 or None, got {lifetime!r}")
    seed = merged["seed"]
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise SettingsError(f"setting 'seed' must be an int or None, got {seed!r}")

    _validate_profile(merged)

    default_rule = validate_fault_rule({k: merged[k] for k in FAULT_RULE_DEFAULTS}, where="settings")
    merged.update(default_rule)
    if not isinstance(merged["faults"], (list, tuple)):
        raise SettingsError(f"setting 'faults' must be a list of rules, got {merged['faults']!r}")
    rules = []
    for i, rule in enumerate(merged["faults"]):
        if not isinstance(rule, Mapping):
            raise SettingsError(f"setting faults[{i}] must be a mapping, got {rule!r}")
        rules.append(validate_fault_rule(rule, where=f"faults[{i}]"))
    merged["faults"] = rules
    return merged


def job_path(job_id: str, *, subpaths: bool = True) -> str:
    """A fault rule ``path`` selecting one job: ``GET|PATCH|DELETE /jobs/{id}`` and, with ``subpaths``,
    its results, assets, logs, start and cancel too; other jobs and ``GET /jobs`` stay healthy.

    The rule's ``path`` is searched in the concrete path (``/jobs/j-1``, API prefix removed), so an
    anchored, escaped id is all it takes; this spells it once for tests of per-job failures.
    """
    return f"^/jobs/{re.escape(job_id)}{'(/|$)' if subpaths else '$'}"


def fault_rules(settings: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The default rule (top-level keys) followed by the explicit ``faults`` rules."""
    return [{k: settings[k] for k in FAULT_RULE_DEFAULTS}, *settings["faults"]]
