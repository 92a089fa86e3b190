#!/usr/bin/env bash
# Create (or update) the virtual environment in .venv with samtrack and everything its tests need.
# Idempotent: run it again at any time; steps already done are skipped.
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
VENV=${SAMTRACK_VENV:-.venv}
# PyPI's sam2 1.1.0 is a third-party upload of Meta's commit 2b90b9f; install it only if its
# sdist hash is the one that was checked against Meta's source.
SAM2_SDIST_SHA256=7e0ea252d43c10d853e3acfce0b5770ac683c30481bd6de311300e9d44f45b74
# torch/torchvision pinned to releases known to work with sam2 1.1.0 here; pyproject keeps lower bounds.
TORCH_PINS=("torch==2.14.1" "torchvision==0.29.1")

log() { printf '[setup] %s\n' "$*"; }

# Debian packages: GStreamer 1.x with the plugins samtrack's sources and sinks use (good: matroska,
# vp8, jpeg, rtsp, v4l2; ugly: x264; libav: H.264 decoding), the RTSP server bindings, and what
# PyGObject needs to build inside the venv (the venv cannot see Debian's python3-gi); and Chromium
# with a font, which the viewer's tests drive through Playwright (Playwright never downloads a browser).
DEB_PACKAGES=(
  gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly
  gstreamer1.0-libav gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0 gir1.2-gst-rtsp-server-1.0
  libgirepository1.0-dev libcairo2-dev pkg-config chromium fonts-dejavu-core
)
missing=()
if command -v dpkg >/dev/null 2>&1; then
  for p in "${DEB_PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
fi
HAVE_GST_DEPS=1
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO=$(command -v sudo || true)
  if command -v apt-get >/dev/null 2>&1 && { [ "$(id -u)" = 0 ] || [ -n "$SUDO" ]; }; then
    log "installing Debian packages: ${missing[*]}"
    $SUDO apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  else
    HAVE_GST_DEPS=0
    log "WARNING: cannot install ${missing[*]} (no apt-get or no root): sources fall back to OpenCV," \
        "viewer browser tests are skipped"
  fi
elif ! command -v dpkg >/dev/null 2>&1; then
  HAVE_GST_DEPS=0
  log "WARNING: not a Debian system: install GStreamer and PyGObject yourself, or sources fall back to OpenCV"
fi

[ -x "$VENV/bin/python" ] || { log "creating $VENV"; "$PYTHON" -m venv "$VENV"; }
PY="$VENV/bin/python"
PIP=("$PY" -m pip install -q --disable-pip-version-check)
# This machine's pip config names local indexes that may be absent: hide only that warning.
exec 2> >(grep -v "^WARNING: Location .* is ignored" >&2)

"${PIP[@]}" --upgrade pip "setuptools>=68" wheel
log "installing torch"
"${PIP[@]}" "${TORCH_PINS[@]}"

if ! "$PY" -c 'import importlib.metadata as m, sys; sys.exit(m.version("sam2") != "1.1.0")' 2>/dev/null; then
  log "installing sam2==1.1.0 (sdist, hash-checked, no CUDA extension)"
  dl=$(mktemp -d)
  SAM2_BUILD_CUDA=0 "$PY" -m pip download -q --no-deps --no-build-isolation --no-binary :all: \
    sam2==1.1.0 -d "$dl"
  got=$(sha256sum "$dl"/sam2-1.1.0.tar.gz | cut -d' ' -f1)
  if [ "$got" != "$SAM2_SDIST_SHA256" ]; then
    echo "sam2-1.1.0.tar.gz has sha256 $got, expected $SAM2_SDIST_SHA256: refusing to install it" >&2
    exit 1
  fi
  SAM2_BUILD_CUDA=0 "${PIP[@]}" --no-build-isolation "$dl"/sam2-1.1.0.tar.gz
  rm -rf "$dl"
fi

log "installing samtrack (editable) with test dependencies"
if [ "$HAVE_GST_DEPS" = 1 ]; then
  "${PIP[@]}" -e ".[dev,bench,concepts,gstreamer]"
else
  "${PIP[@]}" -e ".[dev,bench,concepts]"
fi
# Type stubs of TensorRT for mypy; --no-deps: its dependency is TensorRT itself, which cannot install here.
"${PIP[@]}" --no-deps "tensorrt-stubs==10.13.0.35.1"
"$PY" -c 'import torch, sam2, tracker' && log "ok: $("$PY" -c 'import torch; print("torch", torch.__version__)')"
