#!/usr/bin/env bash
# Build the docs site -- the one CI checks and .github/workflows/deploy.yaml publishes -- and check
# it: nbdev's notebook processing of the notebooks' STORED outputs (nothing is executed: outputs come
# from .ci/execute_notebooks.sh) + pandoc, KaTeX for the math (npm package, shipped in the site),
# Pagefind's search index, a link check, then headless Chromium opening every page and searching.
#   bash .ci/build_docs.sh                 # what .ci/run does: install tools if missing, build, check, browser check
#   bash .ci/build_docs.sh --no-browser    # skip the Chromium check
# The site lands in _site/ (serve it: python3 -m http.server -d _site; search needs http, not file://).
# Tools: pandoc and chromium (and node/npm when missing) from Debian; KaTeX from npm into
# $DOCS_TOOLS (default ~/.cache/randsmooth-docs); Pagefind from PyPI.
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
command -v npm >/dev/null || need+=(nodejs npm)
if [[ $browser == 1 ]] && ! command -v chromium chromium-browser google-chrome >/dev/null; then
  need+=(chromium)
fi
if (( ${#need[@]} )); then
  t0=$SECONDS
  echo "installing ${need[*]} (apt-get)"
  SUDO=""; [[ $(id -u) == 0 ]] || SUDO=sudo
  $SUDO apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
  echo "installed in $((SECONDS - t0))s"
fi

# Pagefind (search index), from PyPI into this Python, only when missing.
if ! "$PY" -c 'import pagefind_bin' 2>/dev/null; then
  echo "installing pagefind (pip)"
  "$PY" -m pip install -q 'pagefind[bin]>=1.5,<2'
fi

# KaTeX (math typesetting, shipped with the site), from npm, only when missing.
KATEX_VERSION=0.16.22
DOCS_TOOLS=${DOCS_TOOLS:-$HOME/.cache/randsmooth-docs}
export KATEX_DIST=$DOCS_TOOLS/node_modules/katex/dist
if ! grep -qs "\"version\": \"$KATEX_VERSION\"" "$DOCS_TOOLS/node_modules/katex/package.json"; then
  echo "installing katex@$KATEX_VERSION (npm) into $DOCS_TOOLS"
  mkdir -p "$DOCS_TOOLS"
  npm install --prefix "$DOCS_TOOLS" --no-audit --no-fund --silent "katex@$KATEX_VERSION"
fi

# The checks themselves must catch what they exist for.
"$PY" .ci/docs/selftest.py $([[ $browser == 1 ]] && echo --browser)

t0=$SECONDS
"$PY" .ci/build_docs.py "${build_args[@]}"
echo "docs built and link-checked in $((SECONDS - t0))s"
if [[ $browser == 1 ]]; then
  t0=$SECONDS
  "$PY" .ci/browser_check.py _site --search Smooth.certify --search-top smooth.html   # an API name finds its page
  echo "browser check in $((SECONDS - t0))s"
fi
