"""Moved to :mod:`airflow_provider_openeo.batch.tiling`; this import path stays, for the DAGs that use it.

The name is an alias of the moved module itself (not a copy of its names), so patching either path
patches the same module.
"""

import sys

from airflow_provider_openeo.batch import tiling as _moved

sys.modules[__name__] = _moved
