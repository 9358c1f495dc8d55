"""One way for the model configurations (frozen dataclasses) to travel as JSON: in bundle
headers and checkpoints. Tuple fields (channel lists, upsampling ratios) become lists and
come back as tuples of ints; an unknown key is a ``TypeError``, as for the constructor."""
from __future__ import annotations

from dataclasses import asdict


class DictConfig:
    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict):
        return cls(**{k: tuple(int(x) for x in v) if isinstance(v, list) else v for k, v in d.items()})
