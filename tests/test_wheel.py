"""The distribution installs outside the repository: a wheel carries its three import packages, the
bundled dataset and the ``mtt`` command.

The wheel is built from a copy of the sources in ``tmp_path`` (so setuptools' ``build/`` and
``*.egg-info`` never land in the repository), installed with ``pip install --target``, and
imported from a process whose working directory is outside the repository.
"""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from colab_reader import PACKAGES, build_wheel, copy_project_sources

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_ships_the_bundled_csv_and_load_bundled_works_outside_the_repo(tmp_path):
    source = copy_project_sources(ROOT, tmp_path / "source")
    wheel = build_wheel(source, tmp_path / "wheels")
    assert wheel.name.startswith("mtt_helpers-")
    names = zipfile.ZipFile(wheel).namelist()
    assert "mtt_helpers/data_files/multitask_sentences.csv" in names
    modules = {str(path.relative_to(ROOT).as_posix()) for package in PACKAGES for path in (ROOT / package).rglob("*.py")}
    assert modules <= set(names), sorted(modules - set(names))  # every module of every package ships
    (entry_points,) = [name for name in names if name.endswith(".dist-info/entry_points.txt")]
    assert "mtt = mtt.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()

    target = tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    subprocess.run([*pip, "install", str(wheel), "--target", str(target), "--no-deps", "-q"], check=True, cwd=tmp_path)
    shutil.rmtree(source)  # nothing may still point at the sources
    script = (
        "import mtt_helpers, mtt_helpers.data as d, mtt.cli, mtt_core.onnx_runtime;"
        "frame = d.load_bundled();"
        "print(mtt_helpers.__file__);"
        "print(len(frame), sorted(frame['split'].unique()))"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                            env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr[-2000:]
    module_file, summary = result.stdout.splitlines()[-2:]
    assert Path(module_file).is_relative_to(target), f"imported {module_file}, not the installed copy"
    assert summary == "1800 ['dev', 'test', 'train']"
