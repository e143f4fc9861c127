#!/usr/bin/env bash
# Real pages of text for the OCR comparison with Immich's pipeline (ml_target/testing/ocr_real.py):
# OpenCV's sample images of a book page (imageTextN.png, the same page slightly rotated in
# imageTextR.png) and a photographed cookie box (box.png), taken from Debian's opencv-doc package.
# apt verifies the package against the signed archive index; only these three files are kept, in
# .cache/real-text/. Prints the directory. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."

target=.cache/real-text
files=(imageTextN.png imageTextR.png box.png)
have=1
for f in "${files[@]}"; do [ -s "$target/$f" ] || have=0; done
if [ "$have" = 1 ]; then
  echo "$target"
  exit 0
fi

command -v apt-get >/dev/null || { echo "apt-get is needed to fetch Debian's opencv-doc" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if ! (cd "$work" && apt-get download -qq opencv-doc >/dev/null 2>&1); then
  [ "$(id -u)" = 0 ] || { echo "apt-get download opencv-doc failed (apt-get update needs root)" >&2; exit 1; }
  apt-get update -qq >/dev/null
  (cd "$work" && apt-get download -qq opencv-doc >/dev/null)
fi
members=()
for f in "${files[@]}"; do members+=("./usr/share/doc/opencv-doc/examples/data/$f"); done
dpkg-deb --fsys-tarfile "$work"/opencv-doc_*.deb | tar -x -C "$work" "${members[@]}"
mkdir -p "$target"
for f in "${files[@]}"; do cp "$work/usr/share/doc/opencv-doc/examples/data/$f" "$target/$f"; done
echo "$target"
