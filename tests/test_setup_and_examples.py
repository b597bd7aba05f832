"""The setup script (conda branch with a fake conda; venv idempotence) and the two example scripts."""

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

FAKE_CONDA = r"""#!/usr/bin/env bash
# Records every call; pretends the env exists once `env create` has run.
echo "conda $*" >> "$FAKE_CONDA_LOG"
case "$1 $2" in
  "env list") echo "# conda environments:"; echo "base  /opt/conda";
              [ -f "$FAKE_CONDA_STATE" ] && echo "multitask_transformer  /opt/conda/envs/multitask_transformer";;
  "env create") touch "$FAKE_CONDA_STATE";;
esac
# `conda run ... python -` reads a script from stdin: swallow it.
if [ "$1" = run ] && [ "${@: -1}" = "-" ]; then cat > /dev/null; fi
exit 0
"""


def run_setup(project: Path, env: dict, *action: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "conda_env_setup.sh", *action], cwd=project, env=env, capture_output=True, text=True, timeout=120
    )


def fake_conda_project(tmp_path: Path) -> tuple[Path, dict, Path]:
    """A copy of the setup files and a fake ``conda`` first on PATH: (project, environment, the conda call log)."""
    project = tmp_path / "project"
    project.mkdir()
    for name in ("conda_env_setup.sh", "environment.yml", "pyproject.toml", "constraints.txt"):
        shutil.copy(ROOT / name, project / name)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "conda").write_text(FAKE_CONDA)
    (bin_dir / "conda").chmod(0o755)
    log = tmp_path / "conda.log"
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "FAKE_CONDA_LOG": str(log),
        "FAKE_CONDA_STATE": str(tmp_path / "created"),
        "HOME": str(tmp_path),
    }
    return project, env, log


def test_conda_branch_with_fake_conda(tmp_path):
    project, env, log = fake_conda_project(tmp_path)

    first = run_setup(project, env)
    assert first.returncode == 0, first.stderr
    calls = log.read_text().splitlines()
    create = calls.index("conda env create -n multitask_transformer -f environment.yml")
    torch_install = next(i for i, c in enumerate(calls) if c.endswith("-m pip install -c constraints.txt torch==2.13.0"))
    package_install = next(i for i, c in enumerate(calls) if "pip install -c constraints.txt torch==2.13.0 -e" in c)
    assert create < torch_install < package_install
    assert any("ipykernel install --user --name multitask_transformer" in c for c in calls)
    assert not (project / ".venv").exists()
    assert "installed packages" in first.stdout

    log.write_text("")
    second = run_setup(project, env)
    assert second.returncode == 0, second.stderr
    calls = log.read_text().splitlines()
    assert not any("pip install" in c or "env create" in c or "env update" in c for c in calls), calls
    assert "nothing installed" in second.stdout

    (project / "environment.yml").write_text((project / "environment.yml").read_text() + "\n# changed\n")
    log.write_text("")
    third = run_setup(project, env)
    assert third.returncode == 0, third.stderr
    assert "conda env update -n multitask_transformer -f environment.yml" in log.read_text()

    (project / "constraints.txt").write_text((project / "constraints.txt").read_text() + "# changed\n")
    log.write_text("")
    fourth = run_setup(project, env)
    assert fourth.returncode == 0, fourth.stderr
    assert "pip install -c constraints.txt torch==2.13.0 -e" in log.read_text(), "a new constraints.txt reinstalls"


def test_freeze_sets_up_then_writes_constraints_in_that_environment(tmp_path):
    project, env, log = fake_conda_project(tmp_path)
    result = run_setup(project, env, "freeze")
    assert result.returncode == 0, result.stderr
    calls = log.read_text().splitlines()
    assert calls[-1] == "conda run --no-capture-output -n multitask_transformer python .ci/freeze_constraints.py"
    assert any("pip install -c constraints.txt" in c for c in calls[:-1])


def test_environment_yml_pip_section_reads_the_constraints():
    pip_lines = (ROOT / "environment.yml").read_text().split("  - pip:\n", 1)[1].splitlines()
    assert pip_lines[0].split("#")[0].strip() == "- -c constraints.txt"


def test_setup_rejects_unknown_action():
    result = subprocess.run(["bash", "conda_env_setup.sh", "tset"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2 and "usage" in result.stderr


@pytest.mark.skipif(Path(sys.prefix).resolve() != (ROOT / ".venv").resolve(), reason="runs inside the project's .venv")
def test_venv_setup_second_run_installs_nothing():
    env = {k: v for k, v in os.environ.items() if k not in ("CONDA_EXE", "MAMBA_EXE")}
    env["PATH"] = ":".join(p for p in env["PATH"].split(":") if not (Path(p) / "conda").exists() and not (Path(p) / "mamba").exists())
    stamp = ROOT / ".venv" / ".setup-stamp"
    site_packages = Path(sysconfig.get_paths()["purelib"])

    def installed():
        """Every entry of site-packages with its modification time: an install adds or rewrites some."""
        return {item.name: item.stat().st_mtime_ns for item in site_packages.iterdir()}

    stamp_before, packages_before = (stamp.read_text(), stamp.stat().st_mtime_ns), installed()
    result = run_setup(ROOT, env)
    assert result.returncode == 0, result.stderr
    assert "nothing installed" in result.stdout
    assert "pip install" not in result.stdout + result.stderr
    assert (stamp.read_text(), stamp.stat().st_mtime_ns) == stamp_before  # the stamp was not rewritten
    assert installed() == packages_before  # no package was installed, upgraded or removed


def run_script(name: str) -> str:
    result = subprocess.run([sys.executable, name], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_embedding_example_prints_seed_values():
    out = run_script("embedding_example.py")
    assert "Embeddings size: torch.Size([3, 384])" in out
    rows = out.splitlines()[2:5]
    expected = [(0.376084, "dog", "cat"), (0.069512, "dog", "sky"), (0.021868, "sky", "cat")]
    for row, (value, first, second) in zip(rows, expected):
        assert float(row.split()[1]) == pytest.approx(value, abs=1e-4)
        assert first in row and second in row


def test_prediction_example_is_reproducible_and_says_untrained():
    first = run_script("prediction_example.py")
    assert "UNTRAINED" in first
    assert "text_class" in first and "sentiment" in first
    assert first == run_script("prediction_example.py")
