#!/usr/bin/env bash
# Every benchmark, one after another, on a quiet machine; JSON lands in benchmarks/results/.
# SOAK_SECONDS=600 by default (the issues' 10 minutes).
set -uo pipefail
cd "$(dirname "$0")/.."
mkdir -p benchmarks/results
PY=.venv/bin/python
export QT_QPA_PLATFORM=offscreen
S=${SOAK_SECONDS:-600}
$PY -m benchmarks.bench_streaming --seconds 6 > benchmarks/results/streaming.json 2>/dev/null
$PY -m benchmarks.bench_vocoders --seconds 6 > benchmarks/results/vocoders.json 2>/dev/null
$PY -m benchmarks.bench_voices --seconds 4 --precision float32 bfloat16 --mel-match full low-latency off > benchmarks/results/voices.json 2>/dev/null
$PY -m benchmarks.vocoder_ceiling > benchmarks/results/vocoder_ceiling.json 2>/dev/null
$PY -m benchmarks.noise_floor > benchmarks/results/noise_floor.json 2>/dev/null
$PY -m benchmarks.midi_latency --probes 20 > benchmarks/results/midi_latency.json 2>/dev/null
$PY -m benchmarks.soak --seconds "$S" > benchmarks/results/soak.json 2>/dev/null
$PY -m benchmarks.soak --seconds "$S" --gui > benchmarks/results/soak_gui.json 2>/dev/null
echo done
