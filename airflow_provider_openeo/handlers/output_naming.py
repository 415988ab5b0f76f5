"""Where a row's results land and what its files are called: a rule over the row, instead of a handler subclass.

MBJM puts every job's files in ``root_dir/job_{id}`` under the names the backend gives; users who want them filed
by tile or date (``tiles/31UFS/2024-05``, ``ndvi_31UFS_2024-05.tif``) subclass the manager and override
``get_job_dir``. Here that is two arguments, each a format string over the row or a callable of it:

- ``output_dir``: the directory under ``root_dir``, ``"/"`` between levels (``"tiles/{tile}/{year}"``); default
  ``job_{job_id}``.
- ``asset_name``: each asset's file name (``"ndvi_{tile}_{year}{ext}"``); default the name MBJM would choose.

A format string may use the row's columns and ``job_id``, ``row_id`` (and, for ``asset_name``, the asset's
``key``, its default ``name``, ``stem`` and ``ext``); a callable gets the same as one mapping. Whatever the rule
gives must be plain names: every level of ``output_dir`` and every ``asset_name`` must be a safe file name as
``_safe_paths`` judges asset names (no ``..``, no absolute path, no hidden or reserved name, no control
characters). A row whose values make an unsafe name is refused, naming the row, the rule and what it gave; its
results are not stored anywhere else. The template itself is checked when the DAG file is parsed (syntax, fields
by name only, no literal ``..`` or leading ``/``), and its fields against the source's columns when the source is a
frame known then.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from airflow_provider_openeo.exceptions import OutputNamingError
from airflow_provider_openeo.handlers._safe_paths import is_safe_file_name, unsafe_name_reason

__all__ = ["OutputNaming", "OutputNamingError"]

#: Fields every rule may use besides the row's columns.
ROW_FIELDS = frozenset({"job_id", "row_id"})
#: Fields an ``asset_name`` rule may use besides those.
ASSET_FIELDS = frozenset({"key", "name", "stem", "ext"})

Rule = str | Callable[[Mapping[str, Any]], str]


class OutputNaming:
    """The two rules, checked once; picklable (a callable must be importable, as ``start_job`` must)."""

    def __init__(self, output_dir: Rule | None = None, asset_name: Rule | None = None) -> None:
        self.output_dir = _checked("output_dir", output_dir, allow_levels=True)
        self.asset_name = _checked("asset_name", asset_name, allow_levels=False)

    def __bool__(self) -> bool:
        return self.output_dir is not None or self.asset_name is not None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, OutputNaming) and vars(self) == vars(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"OutputNaming(output_dir={self.output_dir!r}, asset_name={self.asset_name!r})"

    def check_columns(self, columns: Iterable[Any]) -> None:
        """Parse time, for a source known then: every field a template names is a column or a built-in field."""
        known = {str(c) for c in columns} | ROW_FIELDS
        rules = (("output_dir", self.output_dir, set()), ("asset_name", self.asset_name, ASSET_FIELDS))
        for label, rule, extra in rules:
            if isinstance(rule, str):
                missing = sorted(set(_fields(rule)) - known - extra)
                if missing:
                    raise OutputNamingError(
                        f"{label} {rule!r} names {missing}, which are neither columns of the job source "
                        f"({', '.join(sorted(known - ROW_FIELDS))}) nor {sorted(ROW_FIELDS | extra)}"
                    )

    def directory_parts(self, values: Mapping[str, Any], *, job_id: str, row_id: Any) -> list[str] | None:
        """The levels of the row's directory under ``root_dir``, or None for the default ``job_{id}``."""
        if self.output_dir is None:
            return None
        fields = {**values, "job_id": job_id, "row_id": row_id}
        text = _render("output_dir", self.output_dir, fields, row_id)
        parts = text.replace("\\", "/").split("/")
        for part in parts:
            _require_safe("output_dir", self.output_dir, text, part, row_id)
        return parts

    def file_name(self, values: Mapping[str, Any], *, job_id: str, row_id: Any, key: str, name: str) -> str | None:
        """The asset's file name by the rule, or None for the default ``name``."""
        if self.asset_name is None:
            return None
        stem, dot, extension = name.rpartition(".")
        if not dot:
            stem, extension = name, ""
        fields = {
            **values, "job_id": job_id, "row_id": row_id, "key": key, "name": name, "stem": stem,
            "ext": f".{extension}" if extension else "",
        }  # fmt: skip
        text = _render("asset_name", self.asset_name, fields, row_id)
        _require_safe("asset_name", self.asset_name, text, text, row_id)
        return text


def _checked(label: str, rule: Any, *, allow_levels: bool) -> Rule | None:
    if rule is None or callable(rule):
        return rule
    if not isinstance(rule, str):
        raise OutputNamingError(f"{label} must be a format string or a callable of the row, got {type(rule).__name__}")
    if not rule.strip():
        raise OutputNamingError(f"{label} must not be empty")
    try:
        fields = _fields(rule)
    except ValueError as exc:
        raise OutputNamingError(f"{label} {rule!r} is not a valid format string: {exc}") from None
    if any(not field or field.isdigit() for field in fields):
        raise OutputNamingError(f"{label} {rule!r}: name every field ({{tile}}, {{job_id}}), none by position")
    literal = "".join(text for text, *_ in string.Formatter().parse(rule))
    if rule.startswith(("/", "\\")) or (len(rule) > 1 and rule[1] == ":"):
        raise OutputNamingError(f"{label} {rule!r} is an absolute path; it is a path under root_dir")
    if ".." in literal.replace("\\", "/").split("/"):
        raise OutputNamingError(f"{label} {rule!r} climbs out of root_dir ('..')")
    if not allow_levels and ("/" in literal or "\\" in literal):
        raise OutputNamingError(f"{label} {rule!r} names a sub-directory; use output_dir for directories")
    return rule


def _fields(template: str) -> list[str]:
    """The top-level field names of a format string (``{a.b}`` and ``{a[0]}`` count as ``a``)."""
    names = []
    for _, field, _, _ in string.Formatter().parse(template):
        if field is not None:
            names.append(field.split(".", 1)[0].split("[", 1)[0])
    return names


def _render(label: str, rule: Rule, fields: Mapping[str, Any], row_id: Any) -> str:
    try:
        text = rule(fields) if callable(rule) else rule.format_map(_Fields(fields))
    except KeyError as exc:
        raise OutputNamingError(
            f"row {row_id!r}: {label} {_describe(rule)} needs field {exc.args[0]!r}, which the row does not have "
            "(or has empty)"
        ) from None
    except Exception as exc:
        failure = f"{type(exc).__name__}: {exc}"
        raise OutputNamingError(f"row {row_id!r}: {label} {_describe(rule)} failed: {failure}") from None
    if not isinstance(text, str) or not text.strip():
        raise OutputNamingError(f"row {row_id!r}: {label} {_describe(rule)} gave {text!r}, not a name")
    return text


def _require_safe(label: str, rule: Rule, text: str, part: str, row_id: Any) -> None:
    if not is_safe_file_name(part):
        reason = "it climbs out of root_dir ('..')" if part.strip() == ".." else unsafe_name_reason(part)
        raise OutputNamingError(f"row {row_id!r}: {label} {_describe(rule)} gave {text!r}, refused: {part!r}: {reason}")


def _describe(rule: Rule) -> str:
    return repr(rule) if isinstance(rule, str) else getattr(rule, "__name__", "callable")


class _Fields(dict):
    """Format fields; a missing value (None, NaN) is refused like a missing column rather than written as 'None',
    and a whole float is written as the integer it is."""

    def __missing__(self, key: str) -> Any:
        raise KeyError(key)

    def __getitem__(self, key: str) -> Any:
        value = super().__getitem__(key)
        if value is None or (isinstance(value, float) and value != value):
            raise KeyError(key)
        if isinstance(value, float) and value.is_integer():
            return int(value)  # 2024, not 2024.0: an empty cell elsewhere in the column makes ints floats
        return value
