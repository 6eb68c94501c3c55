#!/usr/bin/env bash
# Idempotent setup from a bare Debian 12 machine: Debian build tools, a pinned .venv (ROS 2 Kilted
# wheels, torch CPU, FAISS, OpenCV, rosbags, rasterio...), the interfaces package built into the venv,
# and this package installed editable. Each step is skipped when its inputs have not changed.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=$ROOT/.venv
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3

log() { printf '[setup] %s\n' "$*"; }

# 1. Debian packages: build tools for the rosidl interfaces package, and chromium, which the tests use to
#    render report.html headless (they skip without it).
missing=()
for tool in cmake g++ make chromium; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# 2. The virtual environment with pinned Python packages.
if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV with $($PY --version)"
  "$PY" -m venv "$VENV"
fi
# shellcheck disable=SC1091
. "$VENV/bin/activate"
req_hash=$(cat requirements.txt constraints.txt | sha256sum | cut -c1-16)
if [ "$(cat "$VENV/.gdn-requirements" 2>/dev/null)" != "$req_hash" ]; then
  log "installing pinned Python packages (first time: about a minute)"
  python -m pip install -q --disable-pip-version-check --upgrade "pip==26.3" >/dev/null
  python -m pip install -q --disable-pip-version-check -r requirements.txt -c constraints.txt
  echo "$req_hash" > "$VENV/.gdn-requirements"
  rm -f "$VENV/.gdn-interfaces"
fi

# 3. The interfaces package, built with plain CMake into the venv (colcon is not needed here).
IFACE=ros2_ws/src/gps_denied_nav_interfaces
iface_hash=$(find "$IFACE" -type f | sort | xargs cat | sha256sum | cut -c1-16)
if [ "$(cat "$VENV/.gdn-interfaces" 2>/dev/null)" != "$iface_hash" ]; then
  log "building $IFACE into the venv"
  # The wheels' CMake exports name the wheel build machine's Python and numpy include dirs;
  # point them at this interpreter's so that rosidl's generated C extension can build.
  py_inc=$(python -c "import sysconfig; print(sysconfig.get_paths()['include'])")
  np_inc=$(python -c "import numpy; print(numpy.get_include())")
  grep -rlZ "/opt/python/cp311-cp311" "$VENV/share" 2>/dev/null | xargs -0 -r sed -i \
    -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$np_inc#g" \
    -e "s#/opt/python/cp311-cp311/include/python3.11#$py_inc#g"
  build=$ROOT/build/gps_denied_nav_interfaces
  rm -rf "$build"; mkdir -p "$ROOT/build"
  cmake -S "$IFACE" -B "$build" -DCMAKE_INSTALL_PREFIX="$VENV" -DCMAKE_PREFIX_PATH="$VENV" \
    -DPython3_EXECUTABLE="$(command -v python)" -DBUILD_TESTING=OFF >"$build.log" 2>&1 \
    && cmake --build "$build" -j2 >>"$build.log" 2>&1 \
    && cmake --install "$build" >>"$build.log" 2>&1 \
    || { tail -30 "$build.log"; log "interfaces build failed; full log: $build.log"; exit 1; }
  # Installed under lib/python3.X/site-packages of the venv prefix; check it imports.
  python -c "from gps_denied_nav_interfaces.msg import VisualFix" \
    || { log "interfaces built but do not import"; exit 1; }
  echo "$iface_hash" > "$VENV/.gdn-interfaces"
fi

# 4. This package, editable, so `gdn` and the node executables are on PATH in the venv.
if [ ! -x "$VENV/bin/gdn" ] || [ setup.py -nt "$VENV/bin/gdn" ]; then
  log "installing gps_denied_nav (editable)"
  python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e . >/dev/null
  touch "$VENV/bin/gdn"
fi
log "ready: $(python --version), venv $VENV"
