"""Where the models run: ``--compute auto|cpu|cuda|cuda:N|mps``.

``auto`` takes a CUDA GPU when torch sees one, else Apple's MPS, else the CPU. A device
that was asked for by name but is not there is an error with a message that says what
torch does see, never a silent fallback (a performer who asked for the GPU must know
when the laptop's CPU is doing the work).
"""
from __future__ import annotations

import torch

CHOICES = ("auto", "cpu", "cuda", "mps")


class ComputeUnavailable(ValueError):
    """A compute device was named that this machine (or this torch build) lacks."""


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def describe() -> str:
    """What torch sees, one line: e.g. ``cuda: 1 GPU (NVIDIA H100 80GB HBM3); mps: no``."""
    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        cuda = f"{torch.cuda.device_count()} GPU ({names})"
    else:
        cuda = "no" if torch.version.cuda else "no (this torch is a CPU build)"
    return f"torch {torch.__version__}; cuda: {cuda}; mps: {'yes' if _mps_available() else 'no'}"


def compute_device(name: str | None = "auto") -> torch.device:
    """``name`` -> a usable ``torch.device``; raises :class:`ComputeUnavailable`."""
    name = (name or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", 0)
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ComputeUnavailable(f"unknown compute device '{name}' (use one of {', '.join(CHOICES)} "
                                 f"or cuda:N)") from None
    if dev.type == "cpu":
        return torch.device("cpu")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ComputeUnavailable(f"compute device '{name}' asked for, but {describe()}")
        index = 0 if dev.index is None else dev.index
        if index >= torch.cuda.device_count():
            raise ComputeUnavailable(f"compute device '{name}' asked for, but {describe()}")
        return torch.device("cuda", index)
    if dev.type == "mps":
        if not _mps_available():
            raise ComputeUnavailable(f"compute device '{name}' asked for, but {describe()}")
        return dev
    raise ComputeUnavailable(f"compute device '{name}' is not supported (use one of {', '.join(CHOICES)} or cuda:N)")
