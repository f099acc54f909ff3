#!/usr/bin/env bash
# Set up the pip route: a .venv with pinned dependencies, real rclpy from PyPI,
# locally generated tf2_msgs and hri_msgs, and nlml_hpe installed in editable mode.
# Where ../shared/ros2_launch exists, also ROS 2's launch tools and ros2 CLI (not on
# PyPI), so that `.venv/bin/ros2 launch nlml_hpe pose.launch.py` runs.
#
#   bash bootstrap.sh            # idempotent; re-runs skip finished steps
#   NLML_HPE_VENV=/path NLML_HPE_SHARED=/path/to/shared bash bootstrap.sh
#
# Needs Python 3.11 (the ROS 2 Kilted wheels are cp311) and access to PyPI.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${NLML_HPE_VENV:-$here/.venv}"
shared="${NLML_HPE_SHARED:-$here/../shared}"
launch_dir="$(cd "$shared/ros2_launch" 2>/dev/null && pwd)" || launch_dir="$shared/ros2_launch"
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

# 3. Interface packages that are not on PyPI: generate each with rosidl from its
#    definitions unless it is importable already (a sourced ROS 2 install has them):
#    tf2_msgs and hri_msgs (ROS4HRI) from tools/msggen/, and composition_interfaces
#    (imported by launch_ros) from ../shared/ros2_launch at bootstrap time.
with_launch=0
[ -d "$launch_dir/wheels" ] && with_launch=1
# (Each key is what must import: an older hri_msgs without FacialLandmarks is rebuilt.)
declare -A sources=([tf2_msgs.msg]="$here/tools/msggen/tf2_msgs"
                    ["hri_msgs.msg import FacialLandmarks"]="$here/tools/msggen/hri_msgs")
if [ "$with_launch" = 1 ] && [ -d "$launch_dir/composition_interfaces" ]; then
  sources[composition_interfaces.srv]="$launch_dir/composition_interfaces"
fi
missing=()
importable() {
  case "$1" in *" import "*) "$vpy" -c "from $1" ;; *) "$vpy" -c "import $1" ;; esac
}
for mod in "${!sources[@]}"; do
  if importable "$mod" >/dev/null 2>&1; then
    log "${mod%%.*} importable"
  else
    missing+=("$mod")
  fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  names=""
  for mod in "${missing[@]}"; do names="$names ${mod%%.*}"; done
  names="${names# }"
  log "generating $names with rosidl + colcon"
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
  for mod in "${missing[@]}"; do cp -r "${sources[$mod]}" "$work/src/"; done
  (
    cd "$work"
    export PATH="$venv/bin:$PATH" AMENT_PREFIX_PATH="$venv" CMAKE_PREFIX_PATH="$venv"
    colcon --log-base "$work/log" build --merge-install --install-base "$venv" \
      --build-base "$work/build" --base-paths "$work/src" \
      --cmake-args -DBUILD_TESTING=OFF -DPython3_EXECUTABLE="$vpy" >"$work/colcon.log" 2>&1 \
      || { cat "$work/colcon.log" >&2; exit 1; }
  )
  for mod in "${missing[@]}"; do
    importable "$mod" || { echo "bootstrap: ${mod%%.*} still not importable" >&2; exit 1; }
  done
  log "$names generated"
fi

# 4. launch, launch_ros, ros2launch and the ros2 CLI (ros2 launch / lifecycle / param /
#    topic) are not on PyPI: install the pure-Python wheels of ../shared/ros2_launch
#    (built unchanged from the ROS 2 sources) with --no-deps, and their PyPI
#    dependencies from requirements-launch.txt. Skipped when the folder is absent (the
#    launch tests then skip) or when the wheels have not changed since the last run.
#    (After step 3: a pip install after these wheels warns that launch_ros needs
#    "ament_index_python", which the ROS wheels ship as ros-kilted-ament-index-python.)
if [ "$with_launch" = 1 ]; then
  stamp="$venv/.nlml_hpe_ros2_launch.sha256"
  want="$(sha256sum "$here/requirements-launch.txt" "$launch_dir"/wheels/*.whl | sha256sum | cut -d' ' -f1)"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    log "installing ros2 launch and CLI wheels from $launch_dir"
    "$vpy" -m pip install --quiet --disable-pip-version-check -r "$here/requirements-launch.txt"
    "$vpy" -m pip install --quiet --disable-pip-version-check --no-deps --force-reinstall \
      "$launch_dir"/wheels/*.whl
    echo "$want" >"$stamp"
  else
    log "ros2 launch and CLI wheels up to date"
  fi
else
  log "no $launch_dir: ros2 launch and the ros2 CLI are not installed (the launch tests skip)"
fi

# 5. Make the venv an ament prefix holding nlml_hpe, as a colcon install would (the
#    editable install puts neither share/nlml_hpe nor lib/nlml_hpe in place): the
#    package marker, share/nlml_hpe with links to this checkout's package.xml, launch
#    file, configs and models (setup.py's data_files), and lib/nlml_hpe/head_pose_node.
#    A .pth file appends the venv to AMENT_PREFIX_PATH in its Python processes, so
#    `.venv/bin/ros2 launch nlml_hpe pose.launch.py` needs nothing sourced.
share="$venv/share/nlml_hpe"
mkdir -p "$venv/share/ament_index/resource_index/packages" "$venv/lib/nlml_hpe" \
  "$share/launch" "$share/config" "$share/models"
touch "$venv/share/ament_index/resource_index/packages/nlml_hpe"
find "$share" -type l -delete
ln -sf "$here/package.xml" "$share/package.xml"
for f in "$here"/launch/*.launch.py; do ln -sf "$f" "$share/launch/"; done
for f in "$here"/config/*.yaml "$here"/config/*.rviz; do ln -sf "$f" "$share/config/"; done
for f in "$here"/models/*.safetensors "$here"/models/*.json; do ln -sf "$f" "$share/models/"; done
ln -sfn ../../bin/head_pose_node "$venv/lib/nlml_hpe/head_pose_node"
site="$("$vpy" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
cat >"$site/nlml_hpe_ament_prefix.pth" <<'PTH'
import os, sys; p = os.environ.get('AMENT_PREFIX_PATH', ''); sys.prefix in p.split(os.pathsep) or os.environ.__setitem__('AMENT_PREFIX_PATH', os.pathsep.join(filter(None, [p, sys.prefix])))
PTH
log "nlml_hpe registered in the ament index of $venv"

log "ready: $venv (try: $venv/bin/nlml-hpe --help)"
