#!/usr/bin/env bash
# tools/misc/gpu_check.py on a machine that has torch but lacks mmengine and
# no package index: fetch the wheels where there is one, carry them over.
#
#   bash tools/misc/gpu_check.sh --fetch-wheels
#       downloads the pure-Python wheels mmspd's optimizer tests need beyond
#       torch (mmengine and its small dependencies) into work_dirs/wheels/
#   bash tools/misc/gpu_check.sh [gpu_check.py options]
#       installs work_dirs/wheels/*.whl (if any) into /tmp/mmspd-site, then
#       runs tools/misc/gpu_check.py (report: work_dirs/gpu_check.json)
#
# PYTHON selects the interpreter (default python3); the exit status is the
# check's.
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python3}
WHEEL_DIR=work_dirs/wheels
# pinned as in requirements/stack.txt
WHEELS="mmengine==0.10.7 addict==2.4.0 yapf==0.43.0 platformdirs==4.3.8
termcolor==3.1.0"

if [[ "${1:-}" == "--fetch-wheels" ]]; then
    mkdir -p "$WHEEL_DIR"
    # shellcheck disable=SC2086
    "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: \
        -d "$WHEEL_DIR" $WHEELS
    ls "$WHEEL_DIR"
    exit 0
fi

if compgen -G "$WHEEL_DIR/*.whl" > /dev/null; then
    site=/tmp/mmspd-site
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile \
        --no-cache-dir --upgrade --target "$site" "$WHEEL_DIR"/*.whl >&2
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "$PYTHON" tools/misc/gpu_check.py "$@"
