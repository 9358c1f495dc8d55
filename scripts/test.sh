#!/usr/bin/env bash
# The test suite (what CI runs). Qt renders offscreen; JACK servers are started by fixtures.
set -euo pipefail
cd "$(dirname "$0")/.."
export QT_QPA_PLATFORM=offscreen
exec .venv/bin/python -m pytest -q "$@"
