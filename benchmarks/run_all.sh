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
$PY -m benchmarks.bench_voices --voices 1 2 4 --frames 1 2 4 --mel-match zero-latency --seconds 3 --out benchmarks/results/voices.json > /dev/null 2>&1
$PY -m benchmarks.vocoder_ceiling > benchmarks/results/vocoder_ceiling.json 2>/dev/null
$PY -m benchmarks.noise_floor > benchmarks/results/noise_floor.json 2>/dev/null
$PY -m benchmarks.resampler > benchmarks/results/resampler.json 2>/dev/null
# held-out renders for the audible-defect measures (issue "sound"): 4 programs in the training set, 4 not
H19=${H19CORPUS:-/tmp/h19corpus}
[ -d "$H19" ] || $PY main.py corpus "$H19" --programs 40 0 73 89 11 24 56 68 --low 36 --high 96 --phrases 2 --seed 19 > /dev/null
$PY -m benchmarks.hnr_stages --data "$H19" --trained-programs 40 0 73 89 --json benchmarks/results/hnr_stages.json > /dev/null 2>&1
$PY main.py eval --sections audible --heldout "$H19" --trained-programs 40 0 73 89 --seeds 0 1 --json benchmarks/results/eval_quality.json > /dev/null 2>&1
# render --midi of held-out phrases against FluidSynth's: inside the default's pitch range (48-84), and over 36-96
H19IN=${H19INCORPUS:-/tmp/h19in}
[ -d "$H19IN" ] || $PY main.py corpus "$H19IN" --programs 40 0 73 89 --low 48 --high 84 --step 12 --phrases 2 --seed 23 > /dev/null
$PY -m benchmarks.midi_render_quality --data "$H19IN" --trained-programs 40 0 73 89 --json benchmarks/results/midi_render_quality.json > /dev/null 2>&1
$PY -m benchmarks.midi_render_quality --data "$H19" --trained-programs 40 0 73 89 --json benchmarks/results/midi_render_quality_36_96.json > /dev/null 2>&1
$PY -m benchmarks.bench_rack --out benchmarks/results/rack.json > /dev/null 2>&1
$PY -m benchmarks.midi_latency --period 512 --probes 20 --json benchmarks/results/midi_latency.json > /dev/null 2>&1
$PY -m benchmarks.midi_latency --period 1024 --probes 20 --json benchmarks/results/midi_latency_1024.json > /dev/null 2>&1
$PY -m benchmarks.input_latency --period 512 --probes 12 --json benchmarks/results/input_latency.json > /dev/null 2>&1
$PY -m benchmarks.soak --seconds "$S" --load > benchmarks/results/soak_load.json 2>/dev/null
$PY -m benchmarks.soak --seconds "$S" --load --gui > benchmarks/results/soak_gui_load.json 2>/dev/null
$PY -m benchmarks.startup_underruns --starts 10 --load > benchmarks/results/startup_underruns_load.json 2>/dev/null
$PY -m benchmarks.startup_underruns --starts 10 --load --gui > benchmarks/results/startup_underruns_gui_load.json 2>/dev/null
QT_QPA_PLATFORM=offscreen $PY -m benchmarks.window_gil --seconds 6 --rounds 4 --json benchmarks/results/window_gil.json > /dev/null 2>&1
echo done
