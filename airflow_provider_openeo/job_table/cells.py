"""Whether a job-table cell is empty: one rule for every reader of a row.

A missing value comes back from SQL as None, from pandas as NaN, NaT or NA (a column's dtype decides which), so
"not set" must be asked in one way everywhere; an empty string or an empty list is a value, not a missing one.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd


def is_empty(value: Any) -> bool:
    """Whether ``value`` is a missing cell: None, NA, NaT or a NaN float (containers never are)."""
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, (float, np.floating)):
        return math.isnan(value)
    if isinstance(value, (np.datetime64, np.timedelta64)):
        return bool(np.isnat(value))
    return False


def clean(value: Any) -> Any:
    """The cell's value, or None when it is empty (see :func:`is_empty`)."""
    return None if is_empty(value) else value
