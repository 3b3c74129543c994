#!/usr/bin/env bash
# What students get: the ftlab wheel and the lessons -> deploy/student-bundle/. Nothing from solutions/.
set -euo pipefail
cd "$(dirname "$0")/.."
out=deploy/student-bundle
rm -rf "$out" && mkdir -p "$out"
python -m pip wheel --no-deps --quiet --wheel-dir "$out" .
cp -r lessons "$out/lessons"
find "$out" -name '.ipynb_checkpoints' -prune -exec rm -rf {} +
python - "$out"/ftlab-*.whl <<'PY'
import sys, zipfile
bad = [n for n in zipfile.ZipFile(sys.argv[1]).namelist() if n.startswith(("solutions/", "exercises/", "tests/"))]
sys.exit(f"the wheel holds instructor files: {bad[:5]}" if bad else 0)
PY
echo "$out: $(ls "$out")"
