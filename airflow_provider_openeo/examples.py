"""``python -m airflow_provider_openeo.examples DAGS_FOLDER``: copy the example DAGs into a DAG folder.

The examples are runnable documentation (process-based over dates, geometry, recurring, an MBJM script migrated),
and a user who installed the wheel has no repository checkout to copy them from: the wheel carries them as
``airflow_provider_openeo/example_dags`` (with their shared ``_common.py`` and the UDP they use). Their settings
come from ``OPENEO_EXAMPLE_*`` environment variables (``_common.py``); ``make local-backend`` serves the UDP.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

#: Where the wheel puts them (pyproject.toml, force-include), beside this module.
_PACKAGED = Path(__file__).with_name("example_dags")
#: Where they are in a source checkout (an editable install reads this one).
_SOURCE = Path(__file__).resolve().parent.parent / "example_dags"


def examples_dir() -> Path:
    """The example DAG folder shipped with the installed package (or of the checkout it is installed from)."""
    for candidate in (_PACKAGED, _SOURCE):
        if (candidate / "_common.py").is_file():
            return candidate
    raise FileNotFoundError(f"no example DAGs beside the package ({_PACKAGED}) or in a source checkout ({_SOURCE})")


def example_files(source: Path | None = None) -> list[Path]:
    """The files to copy, relative to the example folder: the DAGs, ``_common.py``, the UDP JSON and the
    ``.airflowignore`` that keeps Airflow from parsing the helpers as DAG files."""
    root = source or examples_dir()
    return sorted(
        path.relative_to(root)
        for path in root.rglob("*")
        if path.is_file() and path.suffix != ".pyc" and "__pycache__" not in path.parts
    )


def copy_examples(destination: Path, *, overwrite: bool = False) -> list[Path]:
    """Copy every example file into ``destination``; refuses (copying nothing) if one is there already."""
    source = examples_dir()
    files = example_files(source)
    existing = [destination / name for name in files if (destination / name).exists()]
    if existing and not overwrite:
        names = ", ".join(str(path) for path in existing)
        raise FileExistsError(f"{names} already exist(s); pass --force to overwrite")
    copied = []
    for name in files:
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / name, target)
        copied.append(target)
    return copied


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m airflow_provider_openeo.examples", description=__doc__)
    parser.add_argument("dags_folder", type=Path, help="the DAG folder (Airflow's [core] dags_folder)")
    parser.add_argument("--force", action="store_true", help="overwrite example files already there")
    args = parser.parse_args(argv)
    try:
        copied = copy_examples(args.dags_folder, overwrite=args.force)
    except (FileExistsError, FileNotFoundError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for path in copied:
        print(f"copied {path}")
    print(
        "The examples read OPENEO_EXAMPLE_* environment variables (see _common.py); `make local-backend` in the "
        "repository serves the UDP they use."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
