#!/usr/bin/env bash
# The shipped default bundle, reproducibly, on a CPU: render the SoundFont corpus, then train
# VQCPC tokens, the vocoder and the pitch- and token-conditioned generator, and export.
#   phase 1: VQCPC 1500 steps; causal ngf-16 vocoder, 6000 STFT-loss steps at lr 1e-3 (in a
#            second process); hidden-256 generator, 3000 BEGAN steps without the pitch classifier
#   phase 2: both warm-started from phase 1: the vocoder gains harmonic excitation (8 sines at
#            the f0; phase 1 played every note on the 86 Hz frame-rate comb) and trains 12000 more
#            STFT steps with the learning rate decaying 5e-4 -> 1e-5 (cosine); the generator 5000
#            more steps with the auxiliary pitch classifier (loss.pitch 0.5)
#   phase 3: warm-started from phase 2: the vocoder 14000 more STFT steps (lr 3e-4 -> 5e-6);
#            the generator gains the note condition (core/notes.py: held, onset and release
#            ages from the labels; phase 2 made a steady drone without note dynamics) and
#            trains 9000 more steps (lr 1e-4 -> 2e-5) with the envelope loss (loss.envelope 1:
#            BEGAN alone left the note condition unused)
#   phase 4 (the generator, texture loss) and phase 5 (the vocoder, mel loss): below
# Resumable: run it again to continue. Every run folder is named by a hash of its configuration.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
DATA=${DATA:-data/fluidr3-corpus}
OUT=${OUT:-models/default.dwb}
RUNS=${RUNS:-runs}
NAME="driftwave default: FluidR3 strings, piano, flute, pad"
[ -d "$DATA" ] || $PY main.py corpus "$DATA" --programs 40 0 73 89 --low 48 --high 84 --phrases 4

Q=(optim.steps=1500)
V1=(model.ngf=16 optim.steps=6000 loss.gan_start=1000000)
G1=(model.hidden=256 model.critic_channels=256 data.segment_frames=128 optim.steps=3000 loss.pitch=0)

train_all() {   # train_all VQCPC_OVERRIDES... -- VOCODER... -- GENERATOR...
  local args=() stage=vqcpc
  for o in "$@"; do
    if [ "$o" = "--" ]; then [ $stage = vqcpc ] && stage=vocoder || stage=generator; continue; fi
    args+=("--set-$stage" "$o")
  done
  $PY main.py train all --parallel --data "$DATA" --out "$OUT" --runs "$RUNS" --name "$NAME" "${args[@]}"
}
run_dir() { local preset=$1; shift; local a=(); for o in "$@"; do a+=(--set "$o"); done
            $PY main.py train "$preset" --data "$DATA" --runs "$RUNS" --run-dir "${a[@]}"; }

train_all "${Q[@]}" -- "${V1[@]}" -- "${G1[@]}"

# the folders phase 1 trained in (what 'train all' adds for the generator: the token count of
# the VQCPC, its run, and the corpus's pitch range C3-C6)
VQ=$(run_dir vqcpc "${Q[@]}")
VOC1=$(run_dir vocoder-stft "${V1[@]}")
GCOND=(model.n_tokens=16 "data.vqcpc_run=$VQ" model.pitch_min=48 model.pitch_max=84)
GEN1=$(run_dir generator-began "${GCOND[@]}" "${G1[@]}")

V2=("${V1[@]}" optim.steps=12000 model.harmonics=8 optim.lr=0.0005 optim.lr_end=0.00001 "optim.init_from=$VOC1")
G2=("${G1[@]}" optim.steps=5000 loss.pitch=0.5 "optim.init_from=$GEN1")
train_all "${Q[@]}" -- "${V2[@]}" -- "${G2[@]}"

VOC2=$(run_dir vocoder-stft "${V2[@]}")
GEN2=$(run_dir generator-began "${GCOND[@]}" "${G2[@]}")
V3=("${V1[@]}" optim.steps=14000 model.harmonics=8 optim.lr=0.0003 optim.lr_end=0.000005 "optim.init_from=$VOC2")
G3=("${G1[@]}" optim.steps=9000 loss.pitch=0.5 model.note_dim=5 loss.envelope=1.0 optim.lr=0.0001 optim.lr_end=0.00002
    "optim.init_from=$GEN2")
train_all "${Q[@]}" -- "${V3[@]}" -- "${G3[@]}"

# phase 4: the generator 4000 more steps (lr 5e-5 -> 1e-5) warm-started from phase 3, with the
# texture loss (loss.texture 1: each bin's frame-to-frame change matched to the real segment's);
# the vocoder stays phase 3's
GEN3=$(run_dir generator-began "${GCOND[@]}" "${G3[@]}")
G4=("${G1[@]}" optim.steps=4000 loss.pitch=0.5 model.note_dim=5 loss.envelope=1.0 loss.texture=1.0 optim.lr=0.00005
    optim.lr_end=0.00001 "optim.init_from=$GEN3")
train_all "${Q[@]}" -- "${V3[@]}" -- "${G4[@]}"

# phase 5: the vocoder 2000 more steps (lr 1e-4 -> 5e-6) warm-started from phase 3's, with the
# log10-mel L1 added to its loss (loss.mel 1, HiFi-GAN's mel loss): held-out MR-STFT 1.460 ->
# 1.421; the same steps without it 1.459, with loss.mel 5 1.430, 6000 steps 1.419. The
# generator stays phase 4's
VOC3=$(run_dir vocoder-stft "${V3[@]}")
V5=("${V1[@]}" optim.steps=2000 model.harmonics=8 optim.lr=0.0001 optim.lr_end=0.000005 loss.mel=1.0
    "optim.init_from=$VOC3")
train_all "${Q[@]}" -- "${V5[@]}" -- "${G4[@]}"
