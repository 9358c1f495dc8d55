"""Model bundle: one safetensors file holding every weight, plus a JSON header.

Tensors: ``generator.*``, ``vocoder.*`` (weight norm folded), ``norm.mean`` and
``norm.std`` (``Tensor[80]``, per-bin standardization of the log-mel), optionally
``encoder.*`` (the VQCPC token encoder, :mod:`core.tokens`). The safetensors metadata
holds one key, ``driftwave``, a JSON object:

    format "driftwave-bundle", format_version 2, name, sample_rate,
    mel (MelConfig), generator (GeneratorConfig),
    vocoder_kind (a kind of the registry, :mod:`core.vocoders`; e.g. "melgan"),
    vocoder (that kind's config, e.g. :class:`core.vocoder.VocoderConfig`),
    encoder (TokenEncoderConfig, or absent/null), token_stats (or null),
    provenance (data, steps, metrics; free-form)

Version 1 is version 2 without ``vocoder_kind``: its vocoder is MelGAN (the shipped
``models/default.dwb`` is a version-1 file; ``tests/test_vocoder_registry.py`` loads it).

Loading parses JSON and raw tensors only: no pickle, no code from the file runs.
Every problem raises :class:`BundleError` naming the file and the problem.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch

from .generator import GeneratorConfig, StreamingUNAGAN
from .mel import MelConfig
from .notes import NOTE_DIM
from .tokens import TokenEncoder, TokenEncoderConfig
from .vocoders import UnknownVocoderKind, Vocoder, build_vocoder, vocoder_class, vocoder_kind, vocoder_kinds

FORMAT = "driftwave-bundle"
FORMAT_VERSION = 2                  # what save_bundle writes
READABLE_VERSIONS = (1, 2)
V1_VOCODER_KIND = "melgan"          # version-1 headers name no kind: they all held MelGAN
META_KEY = "driftwave"
BUNDLE_SUFFIX = ".dwb"

# Bounds on architecture arguments, so a hostile header cannot ask for absurd allocations.
_LIMITS = {
    "z_dim": (1, 1024), "n_mels": (1, 512), "hidden": (4, 4096), "n_levels": (0, 8),
    "groups": (1, 64), "n_tokens": (0, 4096), "pitch_min": (0, 127), "pitch_max": (0, 127),
    "ngf": (1, 256), "n_residual_layers": (0, 8), "bands": (1, 16),
    "harmonics": (0, 64), "note_dim": (0, 64), "sample_rate": (1000, 384000),
    "code_dim": (1, 1024), "n_codes": (1, 4096),
}


class BundleError(Exception):
    """A bundle file that cannot be used; the message names the file and the problem."""

    def __init__(self, path: os.PathLike | str, problem: str):
        self.path, self.problem = str(path), problem
        super().__init__(f"bundle '{path}': {problem}")


@dataclass
class Bundle:
    path: str
    name: str
    sample_rate: int
    mel: MelConfig
    generator: StreamingUNAGAN
    vocoder: Vocoder
    mean: torch.Tensor          # Tensor[n_mels], log10 units
    std: torch.Tensor           # Tensor[n_mels]
    token_stats: dict | None = None
    provenance: dict = field(default_factory=dict)
    encoder: TokenEncoder | None = None     # names audio frames with the generator's tokens

    @property
    def hop(self) -> int:
        return self.vocoder.hop

    @property
    def vocoder_kind(self) -> str:
        """The vocoder's kind in the registry (:mod:`core.vocoders`)."""
        return vocoder_kind(self.vocoder)

    @property
    def default_token(self) -> int:
        """The token to start on: ``token_stats["default"]`` when it names one of the
        model's tokens (some tokens stand for silence), else 0."""
        d = (self.token_stats or {}).get("default")
        n = self.generator.config.n_tokens
        return d if isinstance(d, int) and 0 <= d < n else 0


def save_bundle(path: os.PathLike | str, *, name: str, generator: StreamingUNAGAN,
                vocoder: Vocoder, mel: MelConfig, mean: torch.Tensor, std: torch.Tensor,
                token_stats: dict | None = None, provenance: dict | None = None,
                half: bool = False, encoder: TokenEncoder | None = None) -> None:
    """Writes a bundle; ``half`` stores the generator's and vocoder's weights as float16
    (loaded back as float32). ``vocoder``: of a registered kind (:mod:`core.vocoders`),
    which the header names; else :class:`core.vocoders.UnknownVocoderKind`, and nothing is written.
    ``encoder``: the token encoder of the VQCPC the generator's tokens came from."""
    from safetensors.torch import save_file

    kind = vocoder_kind(vocoder)

    tensors: dict[str, torch.Tensor] = {}
    modules = [("generator.", generator), ("vocoder.", vocoder)] + ([("encoder.", encoder)] if encoder else [])
    for prefix, module in modules:
        for k, v in module.state_dict().items():
            v = v.detach().cpu().contiguous()
            # the token encoder stays float32: its argmax is categorical, and float16 weights
            # rename some frames (docs/history.md)
            tensors[prefix + k] = v.half() if half and v.is_floating_point() and prefix != "encoder." else v.float()
    tensors["norm.mean"] = mean.detach().float().cpu().contiguous()
    tensors["norm.std"] = std.detach().float().cpu().contiguous()
    meta = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "name": name,
        "sample_rate": mel.sample_rate, "mel": mel.to_dict(),
        "generator": generator.config.to_dict(), "vocoder_kind": kind, "vocoder": vocoder.config.to_dict(),
        "encoder": encoder.config.to_dict() if encoder is not None else None, "token_stats": token_stats, "provenance": provenance or {},
    }
    tmp = Path(str(path) + ".tmp")
    save_file(tensors, str(tmp), metadata={META_KEY: json.dumps(meta)})
    os.replace(tmp, path)


def _config(path, section: str, cls, raw) -> object:
    if not isinstance(raw, dict):
        raise BundleError(path, f"metadata '{section}' must be an object")
    known = {f.name: f for f in fields(cls)}
    unknown = set(raw) - set(known)
    if unknown:
        raise BundleError(path, f"architecture mismatch: unknown {section} argument(s) {sorted(unknown)}")
    for k, v in raw.items():
        if k in _LIMITS:
            lo, hi = _LIMITS[k]
            if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
                raise BundleError(path, f"{section} argument {k}={v!r} is not an integer in [{lo}, {hi}]")
    if section == "vocoder" and "ratios" in raw:
        r = raw["ratios"]
        if not (isinstance(r, list) and 1 <= len(r) <= 6 and all(isinstance(x, int) and 1 <= x <= 16 for x in r)):
            raise BundleError(path, f"vocoder argument ratios={r!r} is not a list of 1..6 integers in [1, 16]")
    if section == "encoder" and "channels" in raw:
        c = raw["channels"]
        if not (isinstance(c, list) and 1 <= len(c) <= 6 and all(isinstance(x, int) and 1 <= x <= 4096 for x in c)):
            raise BundleError(path, f"encoder argument channels={c!r} is not a list of 1..6 integers in [1, 4096]")
    if "causal" in raw and not isinstance(raw["causal"], bool):
        raise BundleError(path, "vocoder argument causal must be true or false")
    try:
        return cls.from_dict(raw)
    except (TypeError, ValueError) as e:
        raise BundleError(path, f"bad {section} arguments: {e}") from None


def _load_into(path, module: torch.nn.Module, prefix: str, tensors: dict[str, torch.Tensor]) -> None:
    expected = module.state_dict()
    got = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    if missing or unexpected:
        raise BundleError(path, f"architecture mismatch in {prefix[:-1]}: "
                                f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
                                f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}")
    for k, v in got.items():
        if tuple(v.shape) != tuple(expected[k].shape):
            raise BundleError(path, f"architecture mismatch: {prefix}{k} has shape {tuple(v.shape)}, "
                                    f"the declared architecture needs {tuple(expected[k].shape)}")
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise BundleError(path, f"weights contain NaN or Inf ({prefix}{k})")
    module.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in got.items()})


def read_metadata(path: os.PathLike | str) -> dict:
    """The bundle's JSON header, validated for format and version (no weights read); a
    version-1 header comes back with ``vocoder_kind`` "melgan"."""
    from safetensors import safe_open

    p = Path(path)
    if not p.is_file():
        raise BundleError(path, "no such file")
    if p.stat().st_size < 16:
        raise BundleError(path, f"truncated or empty ({p.stat().st_size} bytes)")
    try:
        with safe_open(str(p), framework="pt") as f:
            raw = (f.metadata() or {}).get(META_KEY)
    except Exception as e:  # safetensors raises its own error types for bad headers
        raise BundleError(path, f"not a readable safetensors file (corrupt or truncated?): {e}") from None
    if raw is None:
        raise BundleError(path, "not a driftwave bundle (no 'driftwave' metadata)")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as e:
        raise BundleError(path, f"metadata is not valid JSON: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise BundleError(path, f"not a driftwave bundle (format {meta.get('format') if isinstance(meta, dict) else None!r})")
    v = meta.get("format_version")
    if not isinstance(v, int) or isinstance(v, bool) or v not in READABLE_VERSIONS:
        raise BundleError(path, f"format version {v!r} is not supported (this program reads versions "
                                f"{', '.join(map(str, READABLE_VERSIONS))})")
    if v == 1:
        meta = {**meta, "vocoder_kind": V1_VOCODER_KIND}
    kind = meta.get("vocoder_kind")
    if not isinstance(kind, str):
        raise BundleError(path, f"header names no vocoder kind (vocoder_kind {kind!r})")
    return meta


def _vocoder_class(path, kind: str) -> type:
    try:
        return vocoder_class(kind)
    except UnknownVocoderKind:
        raise BundleError(path, f"unknown vocoder kind {kind!r} (this program knows {', '.join(vocoder_kinds())})") from None


def _check_vocoder_config(path, cls: type, vcfg, mel: MelConfig) -> None:
    """The vocoder's config against the mel before anything is built, by its class's own
    ``check_config`` where it has one (:class:`core.vocoders.Vocoder`)."""
    check = getattr(cls, "check_config", None)
    if check is not None:
        try:
            check(vcfg, mel)
        except ValueError as e:
            raise BundleError(path, str(e)) from None


def _build_vocoder(path, kind: str, vcfg, mel: MelConfig) -> Vocoder:
    """The vocoder from its checked config (:func:`core.vocoders.build_vocoder`); its ``hop``
    must be the mel's."""
    try:
        vocoder = build_vocoder(kind, vcfg)
    except (TypeError, ValueError) as e:       # bad arguments, or no Vocoder interface
        raise BundleError(path, f"bad vocoder: {e}") from None
    if vocoder.hop != mel.hop:
        raise BundleError(path, f"vocoder upsamples x{vocoder.hop} but the mel hop is {mel.hop}")
    return vocoder


def load_bundle(path: os.PathLike | str, device: str | torch.device = "cpu") -> Bundle:
    """Loads and checks a bundle; models come back in eval mode on ``device``."""
    from safetensors import safe_open

    meta = read_metadata(path)
    mel = _config(path, "mel", MelConfig, meta.get("mel"))
    gcfg = _config(path, "generator", GeneratorConfig, meta.get("generator"))
    vocoder_cls = _vocoder_class(path, meta["vocoder_kind"])
    vcfg = _config(path, "vocoder", vocoder_cls.config_class, meta.get("vocoder"))
    if gcfg.hidden % gcfg.groups:
        raise BundleError(path, "generator hidden size must be a multiple of groups")
    vocoder_mels = getattr(vcfg, "n_mels", None)
    if gcfg.n_mels != mel.n_mels or vocoder_mels != mel.n_mels:
        raise BundleError(path, f"mel bins disagree: generator {gcfg.n_mels}, vocoder {vocoder_mels}, mel {mel.n_mels}")
    _check_vocoder_config(path, vocoder_cls, vcfg, mel)
    if gcfg.note_dim not in (0, NOTE_DIM):
        raise BundleError(path, f"the generator's note condition has {gcfg.note_dim} features; this program makes {NOTE_DIM}")
    if meta.get("sample_rate") != mel.sample_rate:
        raise BundleError(path, "sample_rate disagrees with the mel parameters")
    try:
        with safe_open(str(path), framework="pt") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:
        raise BundleError(path, f"cannot read the weights (corrupt or truncated?): {e}") from None
    generator = StreamingUNAGAN(gcfg)
    vocoder = _build_vocoder(path, meta["vocoder_kind"], vcfg, mel)
    _load_into(path, generator, "generator.", tensors)
    _load_into(path, vocoder, "vocoder.", tensors)
    encoder = None
    if meta.get("encoder") is not None:
        ecfg = _config(path, "encoder", TokenEncoderConfig, meta["encoder"])
        if ecfg.n_codes != gcfg.n_tokens or ecfg.n_mels != mel.n_mels:
            raise BundleError(path, f"the token encoder names {ecfg.n_codes} tokens from {ecfg.n_mels} mel bins; "
                                    f"the generator takes {gcfg.n_tokens} tokens, the mel has {mel.n_mels} bins")
        encoder = TokenEncoder(ecfg)
        _load_into(path, encoder, "encoder.", tensors)
        encoder = encoder.eval().to(device)
    elif any(k.startswith("encoder.") for k in tensors):
        raise BundleError(path, "token encoder weights without an 'encoder' header")
    mean, std = tensors.get("norm.mean"), tensors.get("norm.std")
    if mean is None or std is None or mean.shape != (mel.n_mels,) or std.shape != (mel.n_mels,):
        raise BundleError(path, f"normalization tensors norm.mean/norm.std missing or not of shape ({mel.n_mels},)")
    mean, std = mean.float(), std.float()
    if not (torch.isfinite(mean).all() and torch.isfinite(std).all() and (std > 0).all()):
        raise BundleError(path, "normalization std must be finite and positive, mean finite")
    return Bundle(path=str(path), name=str(meta.get("name", Path(path).stem)), sample_rate=mel.sample_rate,
                  mel=mel, generator=generator.eval().to(device), vocoder=vocoder.eval().to(device),
                  mean=mean.to(device), std=std.to(device), token_stats=meta.get("token_stats"),
                  provenance=meta.get("provenance") or {}, encoder=encoder)
