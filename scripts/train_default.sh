#!/usr/bin/env bash
# The shipped default bundle, reproducibly, on a CPU: render the SoundFont corpus, then train
# VQCPC tokens, the vocoder and the pitch- and token-conditioned generator, and export.
# Resumable: run it again to continue (raise the step counts to train longer).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-data/fluidr3-corpus}
OUT=${OUT:-models/default.dwb}
[ -d "$DATA" ] || .venv/bin/python main.py corpus "$DATA" --programs 40 0 73 89 --low 48 --high 84 --phrases 4
exec .venv/bin/python main.py train all --parallel --data "$DATA" --out "$OUT" --runs runs \
  --name "driftwave default: FluidR3 strings, piano, flute, pad" \
  --set-vqcpc optim.steps=${VQCPC_STEPS:-1500} \
  --set-vocoder model.ngf=16 --set-vocoder optim.steps=${VOCODER_STEPS:-6000} --set-vocoder loss.gan_start=1000000 \
  --set-generator model.hidden=256 --set-generator model.critic_channels=256 \
  --set-generator data.segment_frames=128 --set-generator optim.steps=${GENERATOR_STEPS:-3000}
