"""The vocoder interface and the registry of vocoder kinds.

:class:`core.synth.Synth`, :func:`core.resynth.resynthesize` and bundles
(:mod:`core.bundle`) use a vocoder only through :class:`Vocoder`; a bundle header names its
vocoder's kind (``vocoder_kind``) and loading builds that kind from the registry. The
MelGAN vocoder (:mod:`core.vocoder`) is registered as ``"melgan"``. A new kind is one
class and one :func:`register_vocoder` call (``tests/test_vocoder_registry.py`` registers
one inside the test module and plays it through a bundle and ``core.render.render``).
"""
from __future__ import annotations

from dataclasses import is_dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch
from torch import nn


@runtime_checkable
class VocoderConfigLike(Protocol):
    """A vocoder's architecture arguments: a frozen dataclass that travels as JSON in bundle
    headers (:class:`core.config.DictConfig` gives ``to_dict``/``from_dict``). ``n_mels``: the
    mel bins it takes; a bundle checks it against the generator's and the mel's."""

    n_mels: int

    def to_dict(self) -> dict: ...

    @classmethod
    def from_dict(cls, d: dict) -> "VocoderConfigLike": ...


@runtime_checkable
class Vocoder(Protocol):
    """What :class:`core.synth.Synth` needs from a vocoder. Implementations are
    ``torch.nn.Module`` subclasses (``to(dtype)``, ``eval()``, ``state_dict()``,
    ``load_state_dict()`` come from there), built as ``cls(config)``.

    * ``forward(logmel, f0=None)``: the next chunk, log10 mel ``Tensor[B x n_mels x n]``
      (and, when :attr:`takes_f0`, f0 ``Tensor[B x n]`` in Hz, 0 = unvoiced; None = all
      unvoiced) -> audio ``Tensor[B x n * hop]``. State carries across calls: any chunking
      gives the samples of one whole call (the streaming contract of DESIGN.md).
    * ``reset()``: forget the stream state; the next call starts as the first one did.
    * ``delay``: samples by which the audio lags the frames that made it (look-ahead).
    * ``hop``: audio samples per mel frame.
    * ``takes_f0``: whether ``forward`` uses the f0 argument (Synth passes the requested
      pitch, copy synthesis a tracked one, only then).
    * ``config``: its :class:`VocoderConfigLike`; ``config_class``: that config's class, which
      a bundle header is parsed into.
    * Polyphony (:class:`core.streaming.BatchSubset`): every submodule holding stream
      state lists it in ``state_attrs`` as (attribute, batch dimension).

    Optional: a classmethod ``check_config(config, mel) -> None`` that raises ValueError
    when the config cannot play at the mel's parameters (:class:`core.mel.MelConfig`);
    a bundle calls it before building the vocoder, so a hostile header allocates nothing.
    """

    config_class: ClassVar[type]
    config: VocoderConfigLike
    hop: int
    delay: int
    takes_f0: bool

    def forward(self, logmel: torch.Tensor, f0: torch.Tensor | None = None) -> torch.Tensor: ...

    def reset(self) -> None: ...


class UnknownVocoderKind(ValueError):
    """A vocoder kind that no class is registered under."""


_KINDS: dict[str, type] = {}


def register_vocoder(kind: str, cls: type) -> type:
    """Registers ``cls`` (an ``nn.Module`` with the members of :class:`Vocoder`) under
    ``kind``; returns ``cls``. Registering the same class again is a no-op; a kind taken
    by another class, or one class under two kinds, is a ValueError."""
    if not isinstance(kind, str) or not kind:
        raise ValueError("a vocoder kind is a non-empty string")
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise TypeError(f"vocoder kind '{kind}': {cls!r} is not a torch.nn.Module class")
    config_class = getattr(cls, "config_class", None)
    if not (isinstance(config_class, type) and is_dataclass(config_class)
            and callable(getattr(config_class, "to_dict", None)) and callable(getattr(config_class, "from_dict", None))):
        raise TypeError(f"vocoder kind '{kind}': {cls.__name__}.config_class must be a dataclass "
                        "with to_dict and from_dict (core.config.DictConfig)")
    missing = [m for m in ("forward", "reset") if not callable(getattr(cls, m, None))]
    if missing:
        raise TypeError(f"vocoder kind '{kind}': {cls.__name__} lacks {', '.join(missing)}")
    if _KINDS.get(kind, cls) is not cls:
        raise ValueError(f"vocoder kind '{kind}' is already registered to {_KINDS[kind].__name__}")
    other = [k for k, c in _KINDS.items() if c is cls and k != kind]
    if other:
        raise ValueError(f"{cls.__name__} is already registered as vocoder kind '{other[0]}'")
    _KINDS[kind] = cls
    return cls


def vocoder_kinds() -> tuple[str, ...]:
    """The registered kinds, sorted."""
    return tuple(sorted(_KINDS))


def vocoder_class(kind: str) -> type:
    """The class registered under ``kind``; :class:`UnknownVocoderKind` names the known ones."""
    try:
        return _KINDS[kind]
    except (KeyError, TypeError):
        raise UnknownVocoderKind(f"unknown vocoder kind {kind!r} (known: {', '.join(vocoder_kinds())})") from None


def vocoder_kind(vocoder: nn.Module | type) -> str:
    """The kind a vocoder (or its class) is registered under, as a bundle header names it."""
    cls = vocoder if isinstance(vocoder, type) else type(vocoder)
    for kind, c in _KINDS.items():
        if c is cls:
            return kind
    raise UnknownVocoderKind(f"{cls.__name__} is not a registered vocoder kind "
                             f"(known: {', '.join(vocoder_kinds())}); register it with register_vocoder")


def build_vocoder(kind: str, config: Any = None) -> nn.Module:
    """A vocoder of ``kind`` from its config (an instance of its ``config_class``, a dict
    of its fields, or None for the defaults), in training mode as ``nn.Module`` starts.
    TypeError when the built module lacks a member of :class:`Vocoder`."""
    cls = vocoder_class(kind)
    if config is None:
        config = cls.config_class()
    elif isinstance(config, dict):
        config = cls.config_class.from_dict(config)
    voc = cls(config)
    if not isinstance(voc, Vocoder):
        missing = [m for m in ("config", "hop", "delay", "takes_f0") if not hasattr(voc, m)]
        raise TypeError(f"vocoder kind '{kind}': {cls.__name__} lacks {', '.join(missing) or 'a Vocoder member'}")
    return voc


def _register_builtin() -> None:
    from .vocoder import MelGANVocoder
    register_vocoder("melgan", MelGANVocoder)


_register_builtin()
