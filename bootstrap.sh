#!/usr/bin/env bash
# Set up the pip route: a .venv with pinned dependencies, real rclpy from PyPI,
# locally generated tf2_msgs and hri_msgs, and nlml_hpe installed in editable mode.
#
#   bash bootstrap.sh            # idempotent; re-runs skip finished steps
#   NLML_HPE_VENV=/path bash bootstrap.sh
#
# Needs Python 3.11 (the ROS 2 Kilted wheels are cp311) and access to PyPI.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${NLML_HPE_VENV:-$here/.venv}"
python="${PYTHON:-python3.11}"
command -v "$python" >/dev/null 2>&1 || python=python3

log() { printf '[bootstrap] %s\n' "$*"; }

# 1. The virtual environment.
if [ ! -x "$venv/bin/python" ]; then
  log "creating $venv with $($python --version 2>&1)"
  "$python" -m venv "$venv"
fi
vpy="$venv/bin/python"
"$vpy" -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required (ROS 2 Kilted wheels are cp311), found " + sys.version' \
  || { echo "bootstrap: $venv does not run Python 3.11; delete it and set PYTHON=python3.11" >&2; exit 1; }

# 2. Pinned dependencies; skipped when requirements.txt has not changed.
stamp="$venv/.nlml_hpe_requirements.sha256"
want="$(cat "$here/requirements.txt" "$here/setup.py" | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  log "installing pinned requirements (first run takes a few minutes)"
  "$vpy" -m pip install --quiet --disable-pip-version-check --upgrade pip
  "$vpy" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"
  "$vpy" -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e "$here"
  echo "$want" >"$stamp"
else
  log "requirements up to date"
fi

# 3. tf2_msgs and hri_msgs (ROS4HRI) are not on PyPI: generate each with rosidl from
#    its .msg definitions in tools/msggen/ unless it is importable already (a sourced
#    ROS 2 install has them).
missing=()
for pkg in tf2_msgs hri_msgs; do
  if "$vpy" -c "import $pkg.msg" >/dev/null 2>&1; then
    log "$pkg importable"
  else
    missing+=("$pkg")
  fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "generating ${missing[*]} with rosidl + colcon"
  "$vpy" -m pip install --quiet --disable-pip-version-check -r "$here/requirements-msggen.txt"
  pyinc="$("$vpy" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
  npinc="$("$vpy" -c 'import numpy; print(numpy.get_include())')"
  # The wheels' CMake configs point at the build machine's interpreter (grep finds
  # nothing once an earlier run has fixed them: that must not stop the script).
  { grep -rlZ '/opt/python/cp311-cp311' "$venv"/share/*/cmake/ 2>/dev/null || true; } \
    | xargs -0 -r sed -i \
      -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$npinc#g" \
      -e "s#/opt/python/cp311-cp311/include/python3.11#$pyinc#g"
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  mkdir -p "$work/src"
  for pkg in "${missing[@]}"; do cp -r "$here/tools/msggen/$pkg" "$work/src/"; done
  (
    cd "$work"
    export PATH="$venv/bin:$PATH" AMENT_PREFIX_PATH="$venv" CMAKE_PREFIX_PATH="$venv"
    colcon --log-base "$work/log" build --merge-install --install-base "$venv" \
      --build-base "$work/build" --base-paths "$work/src" \
      --cmake-args -DBUILD_TESTING=OFF -DPython3_EXECUTABLE="$vpy" >"$work/colcon.log" 2>&1 \
      || { cat "$work/colcon.log" >&2; exit 1; }
  )
  for pkg in "${missing[@]}"; do
    "$vpy" -c "import $pkg.msg" || { echo "bootstrap: $pkg still not importable" >&2; exit 1; }
  done
  log "${missing[*]} generated"
fi

log "ready: $venv (try: $venv/bin/nlml-hpe --help)"
