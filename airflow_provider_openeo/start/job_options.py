"""Job options of a row: reading them, merging the layers, and checking them against the backend's parameters.

Pure functions (no HTTP, no database), so every rule has one home and is tested on its own:

* :func:`parse_job_options`: what a batch's ``job_options=`` or a row's ``job_options`` column may hold (a JSON
  object, or its text); anything else is an error naming where it came from.
* :func:`merge_job_options`: the layers, lowest first. The batch uses, from lowest to highest: the process's
  ``default_job_options`` (processing-parameters extension), the options ``start_job`` sent itself, the batch's
  ``job_options=``, the row's ``job_options`` column. A higher layer replaces a key of a lower one as a whole (no
  deep merge: an option's value is the backend's to interpret, and half of one object merged into another would
  be a value nobody wrote); a ``null`` removes the key, so a row can drop a batch-wide option and get the
  backend's own default.
* :func:`job_option_problems`: the merged options against ``GET /processing_parameters``'s
  ``create_job_parameters``: an unknown option, or a value outside its JSON Schema (``type``, ``enum``,
  ``minimum``/``maximum``, ``exclusiveMinimum``/``exclusiveMaximum``, ``pattern``, ``minLength``/``maxLength``,
  nested ``properties``), each one message naming the option.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from airflow_provider_openeo.job_table.cells import is_empty

#: The job table's column that holds a row's own options.
JOB_OPTIONS_COLUMN = "job_options"
#: The job table's column that holds the openEO ``budget`` of a row's job (``POST /jobs`` ``budget``).
JOB_BUDGET_COLUMN = "job_budget"

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list, tuple),
    "string": (str,),
    "boolean": (bool,),
    "null": (type(None),),
    "number": (int, float),
    "integer": (int,),
}


def parse_job_options(value: Any, *, where: str) -> dict[str, Any]:
    """``value`` as a dict of options: a mapping with string keys, or the JSON text of one; empty (None, NaN, ``""``)
    is no options. ``where`` names the source in the error (``"job_options"``, ``"row 3: field 'job_options'"``)."""
    if is_empty(value):
        return {}
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return {}
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"{where} is not valid JSON ({exc}): {_short(text)}") from None
    if not isinstance(value, Mapping):
        raise ValueError(
            f'{where} must be a JSON object of job options, e.g. {{"executor-memory": "4g"}}, got '
            f"{type(value).__name__} {_short(repr(value))}"
        )
    bad_keys = [key for key in value if not isinstance(key, str) or not key]
    if bad_keys:
        raise ValueError(f"{where}: option names must be non-empty strings, got {bad_keys!r}")
    options = dict(value)
    try:
        json.dumps(options, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where} cannot be sent as JSON: {exc}") from None
    return options


def merge_job_options(*layers: Mapping[str, Any] | None) -> dict[str, Any]:
    """The layers merged per top-level key, lowest first; a ``None`` value removes the key (see the module doc)."""
    merged: dict[str, Any] = {}
    for layer in layers:
        for key, value in (layer or {}).items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
    return merged


def job_option_problems(options: Mapping[str, Any], parameters: Iterable[Mapping[str, Any]]) -> list[str]:
    """What is wrong with ``options`` by the backend's ``create_job_parameters``; empty when nothing is."""
    known = {str(p.get("name")): p for p in parameters if isinstance(p, Mapping) and p.get("name")}
    problems = []
    for name, value in options.items():
        parameter = known.get(name)
        if parameter is None:
            problems.append(f"job option {name!r} is not one the backend knows (it knows: {', '.join(sorted(known))})")
            continue
        schema = parameter.get("schema")
        for problem in schema_problems(value, schema if isinstance(schema, Mapping) else {}):
            problems.append(f"job option {name!r}: {problem}")
    return problems


def schema_problems(value: Any, schema: Mapping[str, Any], path: str = "") -> list[str]:
    """The JSON Schema keywords backends use in processing parameters, checked on one value.

    Only the keywords listed in the module doc; others (``format``, ``oneOf``, ...) are left to the backend, which
    checks the options itself too: this check exists to refuse a row before a job exists, not to replace it.
    """
    where = f"{path}: " if path else ""
    types = schema.get("type")
    if types is not None:
        wanted = [types] if isinstance(types, str) else list(types)
        if wanted and not any(_is_type(value, t) for t in wanted):
            return [f"{where}{value!r} is not of type {' or '.join(map(str, wanted))}"]
    problems = []
    if "enum" in schema and value not in list(schema["enum"]):
        problems.append(f"{where}{value!r} is not one of {list(schema['enum'])!r}")
    if _is_number(value):
        for keyword, fails, words in (
            ("minimum", lambda v, b: v < b, "less than the minimum"),
            ("maximum", lambda v, b: v > b, "more than the maximum"),
            ("exclusiveMinimum", lambda v, b: v <= b, "not more than the exclusive minimum"),
            ("exclusiveMaximum", lambda v, b: v >= b, "not less than the exclusive maximum"),
        ):
            bound = schema.get(keyword)
            if _is_number(bound) and fails(value, bound):
                problems.append(f"{where}{value!r} is {words} {bound!r}")
    if isinstance(value, str):
        pattern = schema.get("pattern")
        if isinstance(pattern, str) and re.search(pattern, value) is None:
            problems.append(f"{where}{value!r} does not match the pattern {pattern!r}")
        if isinstance(schema.get("minLength"), int) and len(value) < schema["minLength"]:
            problems.append(f"{where}{value!r} is shorter than {schema['minLength']} characters")
        if isinstance(schema.get("maxLength"), int) and len(value) > schema["maxLength"]:
            problems.append(f"{where}{value!r} is longer than {schema['maxLength']} characters")
    if isinstance(value, Mapping):
        properties = schema.get("properties")
        if isinstance(properties, Mapping):
            for key, item in value.items():
                sub = properties.get(key)
                inner = f"{path}.{key}" if path else str(key)
                if isinstance(sub, Mapping):
                    problems.extend(schema_problems(item, sub, inner))
                elif schema.get("additionalProperties") is False:
                    problems.append(f"{inner}: not a known key (known: {', '.join(sorted(properties))})")
    return problems


def _is_type(value: Any, name: str) -> bool:
    if name == "integer":
        return not isinstance(value, bool) and (
            isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        )
    if name == "number":
        return _is_number(value)
    expected = _JSON_TYPES.get(name)
    return expected is None or isinstance(value, expected)


def _is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float))


def _short(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
