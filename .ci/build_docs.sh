#!/usr/bin/env bash
# Build the docs site without Quarto and check it: nbdev's notebook processing + pandoc (MathML
# math, no CDN), a link check, then headless Chromium opening every page.
#   bash .ci/build_docs.sh                 # what .ci/run does: install tools if missing, build, check, browser check
#   bash .ci/build_docs.sh --no-browser    # skip the Chromium check
#   bash .ci/build_docs.sh --no-exec       # do not execute notebooks saved without outputs (fast, no plots)
# The site lands in _site/ (open _site/index.html).  The GitHub Pages site still uses `nbdev_docs` (Quarto).
set -euo pipefail
cd "$(dirname "$0")/.."
browser=1; build_args=()
for a in "$@"; do
  case $a in
    --no-browser) browser=0 ;;
    --browser) browser=1 ;;
    *) build_args+=("$a") ;;
  esac
done
PY=${PYTHON:-.venv/bin/python}
[[ -x $PY ]] || PY=python3
export MPLBACKEND=Agg

# Debian packages, installed only when missing (CI runs on a fresh machine).
need=()
command -v pandoc >/dev/null || need+=(pandoc)
if [[ $browser == 1 ]] && ! command -v chromium >/dev/null; then need+=(chromium); fi
if (( ${#need[@]} )); then
  t0=$SECONDS
  echo "installing ${need[*]} (apt-get)"
  SUDO=""; [[ $(id -u) == 0 ]] || SUDO=sudo
  $SUDO apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
  echo "installed in $((SECONDS - t0))s"
fi

# The checks themselves must catch what they exist for.
"$PY" .ci/docs/selftest.py $([[ $browser == 1 ]] && echo --browser)

t0=$SECONDS
"$PY" .ci/build_docs.py "${build_args[@]}"
echo "docs built and link-checked in $((SECONDS - t0))s"
if [[ $browser == 1 ]]; then
  t0=$SECONDS
  "$PY" .ci/browser_check.py _site
  echo "browser check in $((SECONDS - t0))s"
fi
