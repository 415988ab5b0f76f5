"""The example DAGs ship with the package and copy into a DAG folder where Airflow parses them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from airflow_provider_openeo.examples import copy_examples, example_files, examples_dir, main
from tests.conftest import REPO

EXPECTED = {
    ".airflowignore",
    "_common.py",
    "example_openeo_custom_start_job.py",
    "example_openeo_geometry.py",
    "example_openeo_process_based.py",
    "example_openeo_recurring.py",
    "example_openeo_stac_chain.py",
    "udp/ndvi_timeseries.json",
}


def test_every_example_file_is_copied_and_none_overwritten_unasked(tmp_path: Path, capsys) -> None:
    assert {str(p) for p in example_files()} == EXPECTED
    assert main([str(tmp_path / "dags")]) == 0
    assert {str(p.relative_to(tmp_path / "dags")) for p in (tmp_path / "dags").rglob("*") if p.is_file()} == EXPECTED
    assert "copied" in capsys.readouterr().out
    (tmp_path / "dags" / "_common.py").write_text("# mine", encoding="utf-8")
    assert main([str(tmp_path / "dags")]) == 1
    assert "--force" in capsys.readouterr().err
    assert (tmp_path / "dags" / "_common.py").read_text(encoding="utf-8") == "# mine"  # nothing copied
    copy_examples(tmp_path / "dags", overwrite=True)
    assert (tmp_path / "dags" / "_common.py").read_bytes() == (examples_dir() / "_common.py").read_bytes()


def test_copied_examples_parse_in_a_dag_folder_of_their_own(tmp_path: Path) -> None:
    copy_examples(tmp_path / "dags")
    script = (  # the dag-processor puts a bundle's folder on sys.path before parsing its files: so does this
        f"import sys; sys.path.append({str(tmp_path / 'dags')!r})\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        f"bag = DagBag(dag_folder={str(tmp_path / 'dags')!r})\n"
        "assert not bag.import_errors, bag.import_errors\n"
        "print(sorted(bag.dag_ids))\n"
    )
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path / "home"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "example_openeo_process_based" in done.stdout and "example_openeo_recurring" in done.stdout
    assert "example_openeo_stac_tiles" in done.stdout and "example_openeo_stac_stage2" in done.stdout


def test_the_wheel_carries_the_examples(tmp_path: Path) -> None:
    uv = shutil.which("uv") or str(Path.home() / ".local" / "bin" / "uv")
    if not Path(uv).exists():
        pytest.skip("uv (which `make install` installs) is not here to build the wheel")
    built = subprocess.run(
        [uv, "build", "--wheel", "-q", "-o", str(tmp_path), str(REPO)], capture_output=True, text=True, timeout=300
    )
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = tmp_path.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"airflow_provider_openeo/example_dags/{name}" for name in EXPECTED} <= names
