"""``main.py eval``: measures of a bundle on held-out audio, as one JSON object.

* vocoder: log-mel L1 and multi-resolution STFT distance of copy synthesis on held-out
  clips, beside Griffin-Lim on the same clips;
* generator: NDB and JSD (k-means, 50 bins) of generated against held-out real frames,
  with the real-vs-real figure (training frames against held-out frames) beside them;
  voiced-frame ratio (YIN) of generated and real audio; for pitch models, the median
  pitch error of generated notes against the requested ones;
* long-stream stability: mel statistics of the first against the last stretch of a long
  stream (minute 1 against minute 10 by default);
* audible defects (:mod:`training.eval_audible`): CREPE pitch, voicing, harmonic-to-noise
  ratio, the level in the original's silences and log-mel L1 of copy synthesis beside
  Griffin-Lim's, for instruments in and out of the training set, and of generated notes
  against real ones.
"""
from __future__ import annotations


from pathlib import Path

import numpy as np
import torch

from core.autopilot import AutopilotChain
from core.bundle import Bundle
from core.inputs import frame_inputs
from core.latent import NoiseSource
from core.mel import LogMel
from core.pitch_filter import DEFAULT_STRENGTH
from core.resynth import resynthesize
from core.synth import Synth

from .data import AudioCorpus
from .metrics import (cents, griffin_lim, griffin_lim_from_magnitude, logmel_l1, loudness_spread, mel_change, mr_stft_distance, ndb_jsd,
                      stream_stability, voiced_ratio, yin_pitch)


def heldout_clips(corpus: AudioCorpus, seconds: float, max_clips: int) -> list[tuple[str, np.ndarray]]:
    """Up to ``max_clips`` (file name, 2-s clip) pairs, taking the held-out files in turn (clip 1
    of each file, then clip 2, ...) so that every held-out file is heard; clips quieter than
    1e-3 RMS are skipped."""
    n = int(seconds * corpus.sample_rate) // 256 * 256
    per_file = []
    for it in corpus.val or corpus.train:
        a = it.audio
        segs = [a[s:s + n] for s in range(0, len(a) - n + 1, n)]
        per_file.append([(Path(it.path).name, seg) for seg in segs if np.sqrt(np.mean(seg ** 2)) > 1e-3])
    out = []
    for round_ in range(max(map(len, per_file), default=0)):
        for segs in per_file:
            if round_ < len(segs) and len(out) < max_clips:
                out.append(segs[round_])
    return out


def small_change_distances(clips: list[np.ndarray]) -> dict:
    """The multi-resolution STFT distance that small changes to the real clips themselves
    cost (mean over ``clips``): how strict the measure is. -2 dB of gain; a 64-sample (2.9 ms)
    delay; white noise at -60 dBFS RMS added; Griffin-Lim (100 iterations) from the clip's
    exact STFT magnitude (n_fft 1024, hop 256) instead of from its mel."""
    rng = np.random.default_rng(0)
    changes = {
        "gain_-2dB": lambda x: x * np.float32(10 ** (-2 / 20)),
        "delay_64_samples": lambda x: np.concatenate([np.zeros(64, np.float32), x[:-64]]),
        "noise_-60dBFS": lambda x: x + rng.normal(0, 1e-3, len(x)).astype(np.float32),
        "griffin_lim_from_exact_magnitude": griffin_lim_from_magnitude,
    }
    return {name: float(np.mean([mr_stft_distance(c, f(c)) for c in clips])) for name, f in changes.items()}


def eval_vocoder(bundle: Bundle, corpus: AudioCorpus, clip_seconds: float = 2.0, max_clips: int = 32,
                 pitch_filter: float = DEFAULT_STRENGTH) -> dict:
    """Copy synthesis of held-out clips by the vocoder and by Griffin-Lim: log-mel L1 and
    multi-resolution STFT distance, over all clips and per held-out file. Up to 32 clips of
    2 s (fewer clips move the figure: docs/measurements.md).
    ``vocoder_*`` is the vocoder as the instrument plays it by default, mel-matched
    (:mod:`core.mel_match`, "full"); ``vocoder_low_latency_*`` with the low-latency mel
    matching; ``vocoder_zero_latency_*`` with the zero-latency one (live play's default);
    ``vocoder_alone_*`` without mel matching."""
    logmel = LogMel(bundle.mel)
    keys = ("vocoder_logmel_l1", "vocoder_mrstft", "vocoder_low_latency_logmel_l1", "vocoder_low_latency_mrstft",
            "vocoder_zero_latency_logmel_l1", "vocoder_zero_latency_mrstft",
            "vocoder_alone_logmel_l1", "vocoder_alone_mrstft",
            "griffin_lim_logmel_l1", "griffin_lim_mrstft")
    rows: list[tuple[str, dict]] = []
    clips = heldout_clips(corpus, clip_seconds, max_clips)
    for name, clip in clips:
        voc = resynthesize(bundle, clip, pitch_filter=pitch_filter)
        low = resynthesize(bundle, clip, mel_match="low-latency", pitch_filter=pitch_filter)
        zero = resynthesize(bundle, clip, mel_match="zero-latency", pitch_filter=pitch_filter)
        alone = resynthesize(bundle, clip, mel_match="off", pitch_filter=pitch_filter)
        with torch.no_grad():
            m = logmel(torch.from_numpy(clip)).numpy()
        gl = griffin_lim(m, bundle.mel)[:len(clip)]
        rows.append((name, {"vocoder_logmel_l1": logmel_l1(clip, voc, bundle.mel), "vocoder_mrstft": mr_stft_distance(clip, voc),
                            "vocoder_low_latency_logmel_l1": logmel_l1(clip, low, bundle.mel),
                            "vocoder_low_latency_mrstft": mr_stft_distance(clip, low),
                            "vocoder_zero_latency_logmel_l1": logmel_l1(clip, zero, bundle.mel),
                            "vocoder_zero_latency_mrstft": mr_stft_distance(clip, zero),
                            "vocoder_alone_logmel_l1": logmel_l1(clip, alone, bundle.mel),
                            "vocoder_alone_mrstft": mr_stft_distance(clip, alone),
                            "griffin_lim_logmel_l1": logmel_l1(clip, gl, bundle.mel),
                            "griffin_lim_mrstft": mr_stft_distance(clip, gl)}))

    def summary(rs: list[dict]) -> dict:
        out = {k: float(np.mean([r[k] for r in rs])) for k in keys}
        out["mrstft_ratio_vocoder_to_griffin_lim"] = out["vocoder_mrstft"] / out["griffin_lim_mrstft"]
        return out

    out: dict = {"clips": len(rows)}
    if rows:
        out.update(summary([r for _, r in rows]))
        names = sorted({n for n, _ in rows})
        out["per_file"] = {n: dict(summary([r for m, r in rows if m == n]), clips=sum(m == n for m, _ in rows))
                           for n in names}
        out["mrstft_of_small_changes_to_the_real_clips"] = small_change_distances([c for _, c in clips])
    return out


@torch.inference_mode()
def generate(bundle: Bundle, frames: int, seed: int = 0, drift: float = 0.05,
             pitch: float | np.ndarray | None = None, token_mode: str = "autopilot",
             chunk: int = 64, note: np.ndarray | None = None,
             tokens: np.ndarray | None = None, mel_match: str = "full",
             pitch_filter: float = DEFAULT_STRENGTH) -> tuple[np.ndarray, np.ndarray]:
    """Streams ``frames`` frames: (audio ``[frames*hop]``, log10 mel ``[frames x 80]``).
    ``pitch``: one MIDI note, one per frame (``ndarray[frames]``), or None (mid-range).
    ``note``: the note condition per frame (``ndarray[frames x NOTE_DIM]``, models with
    one), or None (a long-held note). ``tokens``: one per frame (``ndarray[frames]``), or
    None: the instrument's autopilot (from the default token, a new token drawn from
    :class:`core.autopilot.AutopilotChain` on 1 frame in 8, as at the default token
    rate). ``mel_match``: the synth's mel matching (:mod:`core.mel_match`); ``pitch_filter``:
    its pitch post-filter's strength (:mod:`core.pitch_filter`; 0: off)."""
    synth = Synth(bundle, mel_match=mel_match, pitch_filter=pitch_filter)
    synth.settle()                 # as the instrument starts
    cfg = bundle.generator.config
    noise = NoiseSource(cfg.z_dim, seed, seed + 1)
    rng = np.random.default_rng(seed)
    chain = AutopilotChain(cfg.n_tokens, bundle.token_stats, rng) if cfg.n_tokens else None
    tok = bundle.default_token     # as the player starts
    audio, mels = [], []
    if pitch is None:
        pitch = cfg.pitch_centre
    for start in range(0, frames, chunk):
        n = min(chunk, frames - start)
        z = noise.next(n, drift=drift)
        toks = None
        if cfg.n_tokens and tokens is not None:
            toks = tokens[start:start + n]
        elif cfg.n_tokens:
            seq = []
            for _ in range(n):
                if chain.transitions is not None and token_mode == "autopilot" and rng.random() < 1 / 8:
                    tok = chain.move(tok)
                seq.append(tok)
            toks = np.asarray(seq, np.int64)
        p = pitch[start:start + n] if np.ndim(pitch) else float(pitch)
        a, m = synth.step_inputs(frame_inputs(cfg, z, toks, p, None if note is None else note[start:start + n]))
        audio.append(a[0].cpu().numpy())
        mels.append((m[0] * bundle.std[:, None] + bundle.mean[:, None]).T.cpu().numpy())
    d = synth.delay
    a = np.concatenate(audio)
    return np.concatenate((a[d:], np.zeros(d, np.float32))), np.concatenate(mels)


SOUNDING = -4.5     # mean log10 mel of a frame above this: not the digital silence between notes


def held_out_score(bundle: Bundle, corpus: AudioCorpus, frames: int
                   ) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """The held-out files' score, repeated to ``frames``: (labelled pitch per frame
    ``ndarray[frames]``, note condition ``ndarray[frames x NOTE_DIM]``, tokens
    ``ndarray[frames]``), each None when the model lacks that condition, the files have no
    labels, or (tokens) the bundle carries no token encoder. A model is asked to play what
    the held-out files play: their notes, their onsets and releases, and the tokens its
    VQCPC names their frames with (as training named the training audio's)."""
    cfg = bundle.generator.config
    items = [it for it in (corpus.val or corpus.train) if it.notes]
    if not items:
        return None, None, None
    pitch = note = tokens = None
    if cfg.has_pitch:
        seq = np.concatenate([corpus.frame_pitch(it) for it in items])
        pitch = np.clip(np.resize(seq, frames), cfg.pitch_min, cfg.pitch_max)
    if cfg.note_dim:
        feats = np.concatenate([corpus.frame_notes(it) for it in items])
        note = feats[np.arange(frames) % len(feats)]
    if cfg.n_tokens and bundle.encoder is not None:
        mean, std = bundle.mean.cpu().numpy(), bundle.std.cpu().numpy()
        dev = bundle.mean.device
        seq = np.concatenate([bundle.encoder(torch.from_numpy(((corpus.mel_of(it) - mean) / std).T.copy())[None]
                                             .to(dev))[0].cpu().numpy() for it in items])
        tokens = np.resize(seq, frames)
    return pitch, note, tokens


def eval_generator(bundle: Bundle, corpus: AudioCorpus, seconds: float = 60.0, seed: int = 0,
                   pitch_filter: float = DEFAULT_STRENGTH) -> dict:
    """NDB/JSD over all frames, and over sounding frames only (a model without the note
    condition always sounds, its silence comes from the player's envelopes, while the
    held-out files have gaps of digital silence between notes). Pitch models play the
    held-out score (its labelled pitch per frame); note models also get its onsets and
    releases (:mod:`core.notes`), as the player gives them a performer's notes; token
    models get the held-out audio's tokens when the bundle carries its token encoder
    (``token_plan``), and the same score with the instrument's autopilot tokens is
    measured too (``*_autopilot``: a token sequence far steadier than real audio's)."""
    frame_rate = bundle.sample_rate / bundle.hop
    frames = int(seconds * frame_rate)
    score, note, tokens = held_out_score(bundle, corpus, frames)
    audio, mel = generate(bundle, frames, seed, pitch=score, note=note, tokens=tokens, pitch_filter=pitch_filter)
    real_val = np.concatenate([corpus.mel_of(it) for it in (corpus.val or corpus.train)])
    real_train = np.concatenate([corpus.mel_of(it) for it in corpus.train])
    def sub(x: np.ndarray, stream: int) -> np.ndarray:
        """At most 20000 frames, drawn by a generator of their own (so the real-vs-real
        figures do not depend on how many frames the model made)."""
        rng = np.random.default_rng([seed, stream])
        return x[rng.choice(len(x), min(20000, len(x)), replace=False)]
    snd = lambda x: x[x.mean(1) > SOUNDING]                                    # noqa: E731
    real_s, train_s, real_snd, train_snd = sub(real_val, 0), sub(real_train, 1), sub(snd(real_val), 2), sub(snd(real_train), 3)
    ndb, jsd = ndb_jsd(real_s, sub(mel, 4), k=50, seed=seed)
    ndb_rr, jsd_rr = ndb_jsd(real_s, train_s, k=50, seed=seed)
    ndb_s, jsd_s = ndb_jsd(real_snd, sub(snd(mel), 5), k=50, seed=seed)
    ndb_srr, jsd_srr = ndb_jsd(real_snd, train_snd, k=50, seed=seed)
    real_audio = np.concatenate([it.audio for it in (corpus.val or corpus.train)])
    plan = "held-out score" if score is not None else "mid-range"
    if note is not None:
        plan += " with its onsets and releases"
    cfg = bundle.generator.config
    token_plan = None if not cfg.n_tokens else ("held-out audio's tokens" if tokens is not None else "autopilot")
    out = {"generated_seconds": frames / frame_rate, "pitch_plan": plan, "token_plan": token_plan,
           "ndb": ndb, "jsd": jsd, "ndb_real_vs_real": ndb_rr, "jsd_real_vs_real": jsd_rr,
           "ndb_sounding": ndb_s, "jsd_sounding": jsd_s,
           "ndb_sounding_real_vs_real": ndb_srr, "jsd_sounding_real_vs_real": jsd_srr,
           "sounding_fraction_generated": float((mel.mean(1) > SOUNDING).mean()),
           "sounding_fraction_real": float((real_val.mean(1) > SOUNDING).mean()),
           "mel_change_generated": mel_change(mel), "mel_change_real": mel_change(real_val),
           "loudness_spread_generated": loudness_spread(mel), "loudness_spread_real": loudness_spread(real_val),
           "voiced_ratio_generated": voiced_ratio(audio, bundle.sample_rate),
           "voiced_ratio_real": voiced_ratio(real_audio[: int(600 * bundle.sample_rate)], bundle.sample_rate)}
    if tokens is not None:
        _, mel_ap = generate(bundle, frames, seed, pitch=score, note=note, pitch_filter=pitch_filter)
        out["ndb_autopilot"], out["jsd_autopilot"] = ndb_jsd(real_s, sub(mel_ap, 6), k=50, seed=seed)
        out["mel_change_autopilot"] = mel_change(mel_ap)
        out["token_change_rate_held_out"] = float((np.diff(tokens) != 0).mean())
    cfg = bundle.generator.config
    if cfg.has_pitch:
        errors = []
        lo, hi = max(cfg.pitch_min, 40), min(cfg.pitch_max, 84)
        for note in range(lo, hi + 1, max(1, (hi - lo) // 8)):
            a, _ = generate(bundle, int(2.0 * frame_rate), seed + note, pitch=float(note), pitch_filter=pitch_filter)
            f0, voiced = yin_pitch(a[len(a) // 4:], bundle.sample_rate)
            if voiced.sum() > 5:
                errors.append(float(np.median(np.abs(cents(f0[voiced], note)))))
        out["pitch_error_cents_median"] = float(np.median(errors)) if errors else None
        out["pitch_notes_voiced"] = len(errors)
    return out


def eval_stability(bundle: Bundle, minutes: float = 10.0, window_s: float = 60.0, seed: int = 0) -> dict:
    frame_rate = bundle.sample_rate / bundle.hop
    frames = int(minutes * 60 * frame_rate)
    _, mel = generate(bundle, frames, seed, chunk=256)
    w = int(window_s * frame_rate)
    out = stream_stability(mel[:w], mel[-w:])
    out.update({"minutes": minutes, "window_seconds": window_s,
                "nan_frames": int((~np.isfinite(mel)).any(1).sum())})
    return out


SECTIONS = ("vocoder", "generator", "stability", "audible")


def evaluate(bundle: Bundle, corpus: AudioCorpus | None, generated_seconds: float = 60.0,
             stability_minutes: float = 10.0, stability_window_s: float = 60.0,
             sections: tuple[str, ...] = SECTIONS, heldout: AudioCorpus | None = None,
             trained_programs: set[int] | None = None, note_step: int = 3, crepe: str = "full",
             seeds: tuple[int, ...] = (0,), midi_render=None, pitch_filter: float = DEFAULT_STRENGTH) -> dict:
    """The ``sections`` of :data:`SECTIONS` as one JSON object. ``audible``
    (:mod:`training.eval_audible`) reads ``heldout`` (every file held out), else
    ``corpus``'s validation split; ``trained_programs``: the GM programs of the bundle's
    training set (None: the programs of ``corpus``'s training split when it has labels);
    ``midi_render``: a MIDI file path -> audio function for the MIDI-render comparison
    (None: that part is skipped); ``pitch_filter``: the pitch post-filter's strength every
    section's audio plays with (:mod:`core.pitch_filter`; 0: off). The output names it and
    the frame-rate notch's rate (:data:`core.frame_notch.RATE`)."""
    from core import frame_notch
    out = {"bundle": bundle.path, "model": bundle.name, "pitch_filter": pitch_filter, "frame_notch": frame_notch.RATE}
    if "vocoder" in sections:
        out["vocoder"] = eval_vocoder(bundle, corpus, pitch_filter=pitch_filter)
    if "generator" in sections:
        out["generator"] = eval_generator(bundle, corpus, generated_seconds, pitch_filter=pitch_filter)
    if "stability" in sections:
        out["stability"] = eval_stability(bundle, stability_minutes, min(stability_window_s, stability_minutes * 30))
    if "audible" in sections:
        from .eval_audible import eval_audible
        if trained_programs is None and corpus is not None:
            progs = {n.get("program") for it in corpus.train for n in (it.notes or [])} - {None}
            trained_programs = progs or None
        out["audible"] = eval_audible(bundle, heldout if heldout is not None else corpus, trained_programs,
                                      note_step, seeds, crepe, midi_render, pitch_filter)
    return out
