#!/usr/bin/env bash
# Store the outputs of a real, full-size run in the notebooks (what the docs site shows):
#   bash .ci/execute_notebooks.sh                        # every notebook, one at a time
#   bash .ci/execute_notebooks.sh nbs/06_methods.ipynb   # some of them
#   bash .ci/execute_notebooks.sh --jobs 2               # two at a time (one torch thread each)
# Runs .ci/execute_notebooks.py (IN_TEST unset; notest/slow/cuda cells skipped unless --flags names
# them; outputs saved; nbdev_clean --fname), regenerates README.md from nbs/index.ipynb, then
# checks the stored outputs (.ci/check_outputs.py): no errors, no warnings, no test-size run,
# every figure-making cell with its figure. Commit the notebooks and README.md afterwards.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[[ -x $PY ]] || PY=python3
export MPLBACKEND=Agg PYTHONUNBUFFERED=1
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$( [[ " $* " == *" --jobs "* ]] && echo 1 || nproc)}
unset IN_TEST
"$PY" .ci/execute_notebooks.py "$@"; rc=$?
"$PY" .ci/readme.py || rc=1
nbs=(); for a in "$@"; do [[ $a == *.ipynb ]] && nbs+=("$a"); done
"$PY" .ci/check_outputs.py "${nbs[@]}" || rc=1
exit $rc
