#!/usr/bin/env bash
# Creates or refreshes .venv/ with the pinned stack. Idempotent: a .venv whose stamp
# matches the pins and which imports the stack is left alone. The mmcv wheel (an
# 11-minute C++ build on 2 cores) is cached outside the checkout, keyed by torch,
# Python and platform, so it is built once per machine.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
PY=$VENV/bin/python
STAMP=$VENV/.mmregnet-stamp
PIN_FILES="constraints.txt pyproject.toml requirements.txt requirements/*.txt tools/setup_env.sh tools/setup/patch_mmcv_cxx20.py"
TORCH_VERSION=${TORCH_VERSION:-2.14.1}
TORCHVISION_VERSION=${TORCHVISION_VERSION:-0.29.1}
want=$(cat $PIN_FILES | sha256sum | cut -c1-16)

stack_imports() {
    "$PY" - <<'PYEOF' 2>/dev/null
import torchvision.ops  # a torch/torchvision mismatch fails here
import mmcv, mmcv.ops, mmdet, mmdet3d, mmengine, mmpretrain, mmregnet, pycls, pytest, timm
import onnxruntime
assert mmcv.__version__ == '2.1.0', mmcv.__version__
PYEOF
}

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && stack_imports; then
    exit 0
fi

if [ ! -x "$PY" ]; then
    base=${PYTHON:-$(command -v python3.11 || command -v python3)}
    echo "[setup] creating $VENV with $base"
    "$base" -m venv "$VENV"
fi
pip_install() { "$PY" -m pip install --disable-pip-version-check -c constraints.txt "$@"; }

pip_install -q "setuptools>=77.0.3,<82" wheel ninja
# Keep a torch + torchvision pair the user already put in the venv (a CUDA build of
# theirs, say) if both import together and torch meets requirements/models.txt's
# floor; otherwise install the tested pair. torch 2.14.1
# and torchvision 0.29.1 are the registry's builds that import together and run on a
# CPU as well as a GPU (the CPU-only torch 2.13.0 has no torchvision to pair with).
if ! "$PY" -c "import torch, torchvision.ops; assert tuple(map(int, torch.__version__.split('+')[0].split('.')[:2])) >= (2, 6)" 2>/dev/null; then
    echo "[setup] installing torch==$TORCH_VERSION torchvision==$TORCHVISION_VERSION"
    pip_install "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION"
fi

if ! "$PY" -c "import mmcv, mmcv.ops; assert mmcv.__version__ == '2.1.0'" 2>/dev/null; then
    key=$("$PY" -c "import sys, sysconfig, torch; print(f'torch{torch.__version__}-cp{sys.version_info[0]}{sys.version_info[1]}-{sysconfig.get_platform()}')")
    cache=${MMREGNET_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mmregnet}/mmcv-2.1.0/$key
    mkdir -p "$cache"
    wheel=$(ls "$cache"/mmcv-2.1.0-*.whl 2>/dev/null | head -n1 || true)
    if [ -z "$wheel" ]; then
        echo "[setup] building mmcv 2.1.0 with ops for $key (about 11 minutes on 2 cores, once per machine)"
        tmp=$(mktemp -d "$cache/build.XXXXXX")
        # Without --no-build-isolation pip builds against a fresh torch-less env and silently drops the ops.
        "$PY" -m pip download --disable-pip-version-check --no-deps --no-binary :all: \
            --no-build-isolation mmcv==2.1.0 -d "$tmp"
        tar -xzf "$tmp"/mmcv-2.1.0.tar.gz -C "$tmp"
        # torch >= 2.14's headers need C++20; mmcv 2.1.0 asks for C++17 (a two-line patch).
        if "$PY" -c "import sys, torch; sys.exit(tuple(map(int, torch.__version__.split('+')[0].split('.')[:2])) < (2, 14))"; then
            "$PY" tools/setup/patch_mmcv_cxx20.py "$tmp/mmcv-2.1.0"
        fi
        MMCV_WITH_OPS=1 FORCE_CUDA=${FORCE_CUDA:-0} MAX_JOBS=${MAX_JOBS:-$(nproc)} \
            "$PY" -m pip wheel --disable-pip-version-check --no-build-isolation --no-deps \
            "$tmp/mmcv-2.1.0" -w "$tmp"
        built=$(ls "$tmp"/mmcv-2.1.0-*.whl)
        mv "$built" "$cache/"   # rename within one file system: the cache never holds a partial wheel
        rm -rf "$tmp"
        wheel="$cache/$(basename "$built")"
    fi
    echo "[setup] installing cached $wheel"
    pip_install --no-deps "$wheel"
fi

# requirements/*.txt are the one list of requirements (pyproject.toml reads them into
# the package's extras); mmcv is already the cached build above, so pip keeps it.
pip_install -e ".[all]"
stack_imports || { echo "[setup] the stack does not import; see the errors above" >&2; "$PY" -c "import mmcv.ops, mmdet3d, mmregnet"; exit 1; }
echo "$want" > "$STAMP"
echo "[setup] $VENV ready"
