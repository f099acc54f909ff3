#!/usr/bin/env bash
# Check that the run-time dependencies (requirements-runtime.txt) install from
# wheels on every platform robots run: CPython 3.10-3.13 on x86_64 and aarch64.
#
#   bash tools/check_platforms.sh [PIP]      # PIP defaults to .venv/bin/pip
#
# Resolves each combination with `pip install --dry-run --only-binary=:all:`
# (glibc 2.17-2.35 manylinux wheels) and prints one line per platform; exits 1
# if any fails.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
pip="${1:-$here/.venv/bin/pip}"
target="$(mktemp -d)"
trap 'rm -rf "$target"' EXIT
fail=0
for arch in x86_64 aarch64; do
  plats=(--platform "manylinux2014_$arch")
  for v in 17 24 25 26 27 28 29 30 31 32 33 34 35; do plats+=(--platform "manylinux_2_${v}_$arch"); done
  for py in 3.10 3.11 3.12 3.13; do
    out="$("$pip" install --dry-run --ignore-installed --only-binary=:all: "${plats[@]}" \
      --python-version "$py" --target "$target" -r "$here/requirements-runtime.txt" 2>&1)"
    line="$(grep '^Would install' <<<"$out")"
    if [ -n "$line" ]; then
      echo "ok   cp${py/./}-$arch: ${line#Would install }"
    else
      echo "FAIL cp${py/./}-$arch: $(grep -m1 '^ERROR' <<<"$out")"
      fail=1
    fi
  done
done
exit $fail
