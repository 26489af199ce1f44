#!/usr/bin/env bash
# Fill the ignored folder .whl/ with the wheels that tests/gpu/run.sh installs on the GPU machine:
# what the project and its tests need beyond the GPU image (Python 3.12, x86-64, no internet there).
#   bash tests/gpu/prepare_wheels.sh          # run here, where pip reaches the package index
# pip resolves one version of each package for Python 3.12 on manylinux x86-64; the packages the
# image already holds (tests/gpu/image_packages.txt, from the device notes) are then removed, so
# the image's own torch, numpy, ... are the ones used.  Prints the wheels kept and their size.
set -euo pipefail
cd "$(dirname "$0")/../.."
DEST=${WHEEL_DIR:-.whl}
# The dev pins of settings.ini (nbdev and its helpers), and the runtime needs the image lacks.
PKGS=(nbdev==2.4.14 execnb==0.1.18 fastcore==1.12.4 ghapi==1.0.10 fastgit==0.0.1 'ipywidgets>=8.0')
rm -rf "$DEST"; mkdir -p "$DEST"
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 \
         manylinux1_x86_64 manylinux_2_24_x86_64 manylinux_2_31_x86_64 manylinux_2_34_x86_64; do
  platforms+=(--platform "$p")
done
python3 -m pip download -q --only-binary=:all: --python-version 3.12 --implementation cp \
  "${platforms[@]}" -d "$DEST" "${PKGS[@]}" 2> >(grep -v 'is ignored: it is neither' >&2)
# Drop what the image already has (names compared the way pip normalises them).
norm() { tr 'A-Z_.' 'a-z--' <<<"$1"; }
declare -A have
while read -r name; do [[ -z $name || $name == \#* ]] || have[$(norm "$name")]=1; done \
  <tests/gpu/image_packages.txt
for w in "$DEST"/*.whl; do
  name=$(norm "$(basename "$w" | cut -d- -f1)")
  if [[ -n ${have[$name]:-} ]]; then rm "$w"; fi
done
ls "$DEST"
echo "$(ls "$DEST"/*.whl | wc -l) wheels, $(du -sh "$DEST" | cut -f1) in $DEST/"
