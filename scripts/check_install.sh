#!/usr/bin/env bash
# The installed command, as a user gets it: a fresh virtual environment in a temporary folder,
# `pip install` of this checkout, then `driftwave` run from another directory (so nothing of the
# checkout is on the path): --help, a 2 s render with the shipped default bundle, devices, bench.
# Run by .ci/run before the test suite; by hand: bash scripts/check_install.sh
# PYTHON picks the interpreter (default python3).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# The environment (about 1.5 GB) goes to /dev/shm where it is a writable tmpfs with room: writing
# and deleting that many files on a disk mounted with online discard takes minutes.
BASE=${TMPDIR:-/tmp}
if [ -d /dev/shm ] && [ -w /dev/shm ] && [ "$(df -Pk /dev/shm | awk 'NR==2 {print $4}')" -gt 4000000 ]; then
  BASE=/dev/shm
fi
TMP=$(mktemp -d -p "$BASE")
trap 'rm -rf "$TMP"' EXIT
START=$SECONDS
step() { echo "check_install: $* ($((SECONDS - START)) s)"; }
# pip, quiet, no bytecode compiled ahead (imports compile what they use), less the warnings
# about index folders of the machine's pip configuration that lack a package
pip_q() { "$PIP" install -q --no-compile "$@" 2> >(grep -v "is neither a file nor a directory" >&2); }

# A copy of the checkout's files (tracked and untracked, not ignored): a stale build/ or
# *.egg-info in the working tree cannot leak into the wheel, and the build writes nothing there.
mkdir "$TMP/src"
if git -C "$ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  (cd "$ROOT" && git ls-files -z -co --exclude-standard \
     | while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done \
     | tar --null -T - -cf -) | tar -C "$TMP/src" -xf -
else
  cp -a "$ROOT/." "$TMP/src/"
  rm -rf "$TMP/src/.venv" "$TMP/src/build" "$TMP/src"/*.egg-info
fi

${PYTHON:-python3} -m venv "$TMP/venv"
PIP="$TMP/venv/bin/pip"
# torch first and pinned exactly as pyproject.toml pins it: unpinned, pip would fetch a CUDA build of several GB
pip_q torch==2.13.0
step "torch installed"
pip_q "$TMP/src"
step "driftwave installed"

BIN="$TMP/venv/bin"
cd "$(mktemp -d -p "$TMP")"
"$BIN/driftwave" --help >help.txt
grep -q "render" help.txt
# the default bundle is the installed package's own file
"$BIN/python" -c "import sys, main; p = main.DEFAULT_BUNDLE; assert p.is_file() and str(p).startswith(sys.prefix), p"
"$BIN/driftwave" render out.wav --seconds 2
"$BIN/python" -c "
import soundfile as sf
i = sf.info('out.wav')
assert abs(i.duration - 2.0) < 0.05, i.duration
print(f'check_install: out.wav {i.duration:.3f} s at {i.samplerate} Hz')"
"$BIN/driftwave" devices >devices.txt 2>/dev/null
grep -q "Audio devices" devices.txt
if "$BIN/driftwave" bench 2>bench.txt; then echo "check_install: bench ran outside a checkout" >&2; exit 1; fi
grep -q "source checkout" bench.txt
step "driftwave --help, render, devices and bench ran from $(pwd)"
cd /
rm -rf "$TMP"
step "done"
