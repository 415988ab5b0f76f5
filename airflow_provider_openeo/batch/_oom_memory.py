"""More memory for a job whose earlier attempt ran out of it: the failure policy's rule, applied to job options.

Backends take memory as job options with sizes in Spark's notation (openeo-geopyspark-driver: ``driver-memory``,
``executor-memory``, ``executor-memoryOverhead``, ``driver-memoryOverhead``, ``python-memory``; values such as
``"2g"``, ``"512m"``, ``"2G"``, ``"1500MB"``). The rule is either a factor (each memory option is multiplied by it
once per out-of-memory retry so far) or a callable ``(options, oom_retries) -> options`` for anything else.

Which options a factor raises: the memory options the merged job options hold; when they hold none, the memory
options the backend declares with a default in ``GET /processing_parameters`` (so "the backend's 2g" becomes 3g).
With neither there is nothing to raise: the options go unchanged, which is logged.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

log = logging.getLogger(__name__)

#: ``(merged options, out-of-memory retries so far) -> the options to send``.
MemoryCallable = Callable[[dict[str, Any], int], Mapping[str, Any]]
MemoryRule = float | MemoryCallable

#: Option names taken for memory sizes: geopyspark's ``*-memory`` and ``*-memoryOverhead``.
_MEMORY_NAME = re.compile(r"memory(overhead)?$", re.IGNORECASE)
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?\s*$", re.IGNORECASE)
_UNITS = "kmgt"


def is_memory_option(name: str) -> bool:
    return bool(_MEMORY_NAME.search(name))


def parse_size(value: Any) -> tuple[float, str, str] | None:
    """``"2g"`` -> ``(2.0, "g", "")``; the unit letter keeps its case, ``"b"``/``"ib"`` is kept as a suffix.
    None for anything that is not a size (a number without unit is taken as megabytes, Spark's reading)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value), "", ""
    match = _SIZE.match(str(value))
    if not match:
        return None
    return float(match.group(1)), match.group(2), match.group(3) or ""


def format_size(amount: float, unit: str, suffix: str) -> str:
    """An integral size in ``unit`` when there is one, else in the next smaller unit (``4.5g`` -> ``4608m``)."""
    index = _UNITS.find(unit.lower()) if unit else -1
    while index > 0 and not float(amount).is_integer():
        amount *= 1024
        index -= 1
        unit = _UNITS[index].upper() if unit.isupper() else _UNITS[index]
    return f"{math.ceil(amount - 1e-9)}{unit}{suffix}"


def scaled_size(value: Any, factor: float) -> Any:
    """``value`` times ``factor`` in the same notation; a value that is no size comes back unchanged."""
    parsed = parse_size(value)
    if parsed is None:
        return value
    amount, unit, suffix = parsed
    if isinstance(value, (int, float)):
        return math.ceil(amount * factor)
    return format_size(amount * factor, unit, suffix)


def declared_memory_defaults(parameters: Iterable[Mapping[str, Any]] | None) -> dict[str, Any]:
    """The memory options a backend declares with a size as default (``GET /processing_parameters``)."""
    found = {}
    for parameter in parameters or ():
        name, default = parameter.get("name"), parameter.get("default")
        if isinstance(name, str) and is_memory_option(name) and parse_size(default) is not None:
            found[name] = default
    return found


def raise_memory(
    options: Mapping[str, Any],
    rule: MemoryRule,
    oom_retries: int,
    parameters: Iterable[Mapping[str, Any]] | None = None,
    *,
    label: str = "",
) -> dict[str, Any]:
    """The options for a job after ``oom_retries`` out-of-memory retries (see the module doc)."""
    merged = dict(options)
    if oom_retries <= 0:
        return merged
    if callable(rule):
        raised = rule(dict(merged), oom_retries)
        if not isinstance(raised, Mapping):
            raise TypeError(f"the out-of-memory rule returned {type(raised).__name__}, not a mapping of job options")
        result = dict(raised)
    else:
        present = {name: value for name, value in merged.items() if is_memory_option(name)}
        base = present or declared_memory_defaults(parameters)
        if not base:
            log.warning(
                "%s: out-of-memory retry %d, but neither the job options nor the backend's processing parameters "
                "name a memory option to raise; sending the options unchanged",
                label,
                oom_retries,
            )
            return merged
        factor = float(rule) ** oom_retries
        result = {**merged, **{name: scaled_size(value, factor) for name, value in base.items()}}
    changes = {name: (merged.get(name), value) for name, value in result.items() if merged.get(name) != value}
    if changes:
        described = ", ".join(f"{name} {old} -> {new}" for name, (old, new) in sorted(changes.items()))
        log.info("%s: out-of-memory retry %d: %s", label, oom_retries, described)
    return result
