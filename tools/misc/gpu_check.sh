#!/usr/bin/env bash
# The single command a session with a GPU runs first (see gpu_check.py for
# what it checks). Prints one JSON object; under 8 minutes on one H200.
#
#   bash tools/misc/gpu_check.sh --fetch-wheels   # HERE, with pip's index:
#       downloads the pure-Python wheels the GPU machine lacks (mmengine and
#       its small dependencies) into .whl/ (git-ignored via
#       .git/info/exclude), for the device tool to carry
#   bash tools/misc/gpu_check.sh [gpu_check.py options]   # THERE:
#       installs .whl/*.whl (if any) into /tmp/mmspd-site, then runs the check
#
# Through the device tool: command
#   bash tools/misc/gpu_check.sh --json $OUT/gpu_check.json
# with carry [".whl"] and timeout_s 540 (the check stops itself at 470 s;
# its parts fit a 450 s budget and are skipped, with the reason, past it).
#
# PYTHON selects the interpreter (default python3). Its exit status is the
# check's; parts that cannot run are reported in the JSON, not as failures.
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python3}
# pure-Python packages mmspd's optimizer tests and tools import beyond
# torch: mmengine (pinned as in requirements/stack.txt) and its needs
WHEELS="mmengine==0.10.7 addict==2.4.0 yapf==0.43.0 platformdirs==4.3.8
termcolor==3.1.0"

if [[ "${1:-}" == "--fetch-wheels" ]]; then
    mkdir -p .whl
    grep -qx '/.whl/' .git/info/exclude 2>/dev/null || \
        echo '/.whl/' >> .git/info/exclude
    # shellcheck disable=SC2086
    "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: \
        -d .whl $WHEELS
    ls .whl
    exit 0
fi

if compgen -G '.whl/*.whl' > /dev/null; then
    site=/tmp/mmspd-site
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile \
        --no-cache-dir --upgrade --target "$site" .whl/*.whl >&2
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec timeout 470 "$PYTHON" tools/misc/gpu_check.py "$@"
