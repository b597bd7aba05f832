#!/usr/bin/env bash
# Sets up the multitask_transformer environment, then optionally runs the tutorial.
#
#   bash conda_env_setup.sh          set up only
#   bash conda_env_setup.sh run      set up, then execute every notebook in place (fresh outputs)
#   bash conda_env_setup.sh test     set up, then run all tests (unit tests + notebooks via nbval)
#   bash conda_env_setup.sh freeze   set up, then rewrite constraints.txt from that environment
#
# With conda or mamba on PATH it creates/updates the conda env `multitask_transformer`
# from environment.yml; otherwise it creates ./.venv with python3 -m venv and pip.
# Either way torch==2.13.0 is installed first (an unpinned torch pulls a multi-GB CUDA
# build), and every pip install reads constraints.txt (the versions the tests ran with).
# A second run finds its stamp and installs nothing.
#
# Settings (environment variables):
#   MTT_ENV_NAME          conda env name (default multitask_transformer)
#   MTT_TORCH_INDEX_URL   extra pip index for torch, e.g. https://download.pytorch.org/whl/cpu
#   MTT_DATA_DIR          folder of the external datasets used by the notebooks (see README)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"
ACTION="${1:-setup}"
shift || true
case "$ACTION" in setup|run|test|freeze) ;; *)
  echo "usage: bash conda_env_setup.sh [setup|run|test|freeze] [extra pytest args]" >&2; exit 2 ;;
esac

ENV_NAME="${MTT_ENV_NAME:-multitask_transformer}"
TORCH_SPEC="torch==2.13.0"
EXTRAS=".[notebooks,test,offline-model]"
CONSTRAINTS=(-c constraints.txt)
# What the installed environment was built from: when these files change, reinstall.
WANT_STAMP="$(cat environment.yml pyproject.toml constraints.txt conda_env_setup.sh | sha256sum | cut -c1-16)"

if command -v mamba >/dev/null 2>&1; then CONDA=mamba
elif command -v conda >/dev/null 2>&1; then CONDA=conda
else CONDA=""; fi

if [ -n "$CONDA" ]; then
  KIND="conda env '$ENV_NAME' ($CONDA)"
  STAMP_FILE=".setup-stamp-$ENV_NAME"
  PY=("$CONDA" run --no-capture-output -n "$ENV_NAME" python)
  if "$CONDA" env list | awk '{print $1}' | grep -x "$ENV_NAME" >/dev/null; then
    if [ "$(cat "$STAMP_FILE" 2>/dev/null)" != "$WANT_STAMP" ]; then
      echo "==> updating $KIND from environment.yml"
      "$CONDA" env update -n "$ENV_NAME" -f environment.yml
    fi
  else
    echo "==> creating $KIND from environment.yml"
    "$CONDA" env create -n "$ENV_NAME" -f environment.yml
  fi
else
  KIND="virtual environment ./.venv (pip)"
  STAMP_FILE=".venv/.setup-stamp"
  PY=(.venv/bin/python)
  if [ ! -x .venv/bin/python ]; then
    echo "==> creating $KIND"
    python3 -m venv .venv
  fi
fi

if [ "$(cat "$STAMP_FILE" 2>/dev/null)" != "$WANT_STAMP" ]; then
  echo "==> installing $TORCH_SPEC first (CPU build where no GPU index is given)"
  "${PY[@]}" -m pip install --upgrade pip
  "${PY[@]}" -m pip install "${CONSTRAINTS[@]}" "$TORCH_SPEC" ${MTT_TORCH_INDEX_URL:+--extra-index-url "$MTT_TORCH_INDEX_URL"}
  echo "==> installing mtt_helpers (editable) with notebook and test extras, at the versions in constraints.txt"
  "${PY[@]}" -m pip install "${CONSTRAINTS[@]}" "$TORCH_SPEC" -e "$EXTRAS"
  echo "==> registering the Jupyter kernel '$ENV_NAME'"
  "${PY[@]}" -m ipykernel install --user --name "$ENV_NAME" --display-name "Python ($ENV_NAME)"
  echo "$WANT_STAMP" > "$STAMP_FILE"
  INSTALLED="installed packages"
else
  INSTALLED="already up to date: nothing installed"
fi

"${PY[@]}" - <<'PY'
import importlib
for name in ("torch", "sentence_transformers", "sklearn", "pandas", "matplotlib", "mtt_helpers"):
    module = importlib.import_module(name)
    print(f"    import {name:<22} {getattr(module, '__version__', 'ok')}")
PY
echo "==> $KIND: $INSTALLED"

case "$ACTION" in
  run)
    echo "==> executing notebooks in place"
    for notebook in notebooks/[0-9]*.ipynb notebooks/solutions/[0-9]*.ipynb; do
      [ -e "$notebook" ] || continue
      echo "    $notebook"
      "${PY[@]}" -m jupyter nbconvert --to notebook --execute --inplace \
        --ExecutePreprocessor.timeout=1800 "$notebook"
    done
    echo "==> copying the notebooks' results files into README.md"
    "${PY[@]}" - <<'PY'
import re
from pathlib import Path

readme = Path("README.md")
pattern = re.compile(r"(<!-- results: (\S+) -->\n).*?(<!-- /results -->)", re.S)
text = pattern.sub(lambda m: m[1] + Path(m[2]).read_text().strip() + "\n" + m[3], readme.read_text())
readme.write_text(text)
PY
    ;;
  test)
    echo "==> running tests"
    "${PY[@]}" -m pytest "$@"
    ;;
  freeze)
    echo "==> writing constraints.txt from $KIND"
    "${PY[@]}" .ci/freeze_constraints.py
    ;;
esac
