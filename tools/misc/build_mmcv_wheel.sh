#!/usr/bin/env bash
# Build (once) and print the path of an mmcv wheel with compiled ops for the
# interpreter given as $1 (default: .venv/bin/python).
#
# mmcv publishes no wheel for Python 3.11 + torch 2.14, so we build the sdist:
#   * MMCV_WITH_OPS=1 (mmseg/mmdet need mmcv._ext),
#   * --no-build-isolation (the build imports the installed torch),
#   * its setup.py asks for -std=c++14/17, which torch 2.14's headers reject,
#     so the unpacked sdist is switched to -std=c++20.
# The wheel is cached outside the repository, keyed by the mmcv, Python and
# torch versions, so a second `make test` on the same machine compiles nothing.
# Cache root: $MMSPD_CACHE (default ~/.cache/mmspd).
set -euo pipefail

python=${1:-.venv/bin/python}
here=$(cd "$(dirname "$0")/../.." && pwd)
version=$(sed -n 's/^mmcv==\([0-9][0-9.]*\).*/\1/p' "$here/requirements/stack.txt")
if [ -z "$version" ]; then
    echo "build_mmcv_wheel: no 'mmcv==X.Y.Z' pin in requirements/stack.txt" >&2
    exit 1
fi
abi=$("$python" -c 'import sys, torch; v = sys.version_info; print("py%d%d-torch%s" % (v[0], v[1], torch.__version__.split("+")[0]))')
cache=${MMSPD_CACHE:-$HOME/.cache/mmspd}/wheels/$abi
mkdir -p "$cache"

existing=$(ls "$cache"/mmcv-"$version"-*.whl 2>/dev/null | head -n 1 || true)
if [ -n "$existing" ]; then
    echo "build_mmcv_wheel: reusing $existing" >&2
    echo "$existing"
    exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "build_mmcv_wheel: building mmcv $version with ops for $abi (several minutes)" >&2
"$python" -m pip download --quiet --no-deps --no-binary :all: --no-build-isolation \
    "mmcv==$version" -d "$work" >&2
tar -xzf "$work/mmcv-$version.tar.gz" -C "$work"
src="$work/mmcv-$version"
sed -i 's/-std=c++1[47]/-std=c++20/g' "$src/setup.py"
MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} \
    "$python" -m pip wheel --no-build-isolation --no-deps -w "$work/dist" "$src" >&2
built=$(ls "$work"/dist/mmcv-"$version"-*.whl | head -n 1)
# Copy then rename, so an interrupted build never leaves a partial wheel that
# a later run would pick up.
cp "$built" "$cache/.partial.whl"
mv "$cache/.partial.whl" "$cache/$(basename "$built")"
echo "$cache/$(basename "$built")"
