"""What every trainer shares: the run folder, checkpoints with exact resume, CSV logs, the
progress bar, and distributed setup (torchrun: gloo on CPU, NCCL on GPUs).

A run folder ``runs/<stage>-<hash>/`` holds ``config.json``, ``checkpoint.pt`` (latest),
``best.pt`` (where the stage defines "best"), ``log.csv`` and ``samples/``.
Checkpoints hold only tensors, numbers and strings and load with ``weights_only=True``.
"""
from __future__ import annotations

import csv
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist

from .config import TrainConfig


def pick_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def step_seed(seed: int, step: int, rank: int = 0) -> int:
    """The torch seed of one training step: a pure function of (seed, step, rank)."""
    return (seed * 1_000_003 + step * 7_919 + rank * 104_729) % (2 ** 63)


@dataclass
class Dist:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: torch.device) -> Dist:
    """Joins the torchrun group when WORLD_SIZE > 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size())


def wrap_ddp(module: torch.nn.Module, d: Dist, device: torch.device) -> torch.nn.Module:
    if d.world <= 1:
        return module
    from torch.nn.parallel import DistributedDataParallel as DDP
    ids = [device.index] if device.type == "cuda" else None
    return DDP(module, device_ids=ids, broadcast_buffers=False)


def unwrap(module: torch.nn.Module) -> torch.nn.Module:
    return getattr(module, "module", module)


class Run:
    def __init__(self, cfg: TrainConfig, runs_dir: str | Path = "runs", d: Dist = Dist(),
                 resume: bool = True, progress: bool | None = None):
        self.cfg, self.d = cfg, d
        self.dir = Path(runs_dir) / cfg.run_name
        self.resume = resume
        if d.main:
            (self.dir / "samples").mkdir(parents=True, exist_ok=True)
            (self.dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=1))
        self._csv = None
        self._bar = None
        self.progress = sys.stderr.isatty() if progress is None else progress
        self.t0 = time.monotonic()

    @property
    def checkpoint_path(self) -> Path:
        return self.dir / "checkpoint.pt"

    def load(self) -> dict | None:
        """The latest checkpoint when resuming (the log is cut back to its step), else None
        (and an old log of the same run is cleared)."""
        log = self.dir / "log.csv"
        if not self.resume or not self.checkpoint_path.exists():
            if self.d.main and log.exists():
                log.unlink()
            return None
        state = torch.load(self.checkpoint_path, map_location="cpu", weights_only=True)
        if self.d.main and log.exists():
            with open(log, newline="") as f:
                reader = csv.DictReader(f)
                fields, rows = reader.fieldnames, [r for r in reader if float(r["step"]) <= state["step"]]
            with open(log, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=fields, restval="")
                w.writeheader()
                w.writerows(rows)
        return state

    def save(self, state: dict, name: str = "checkpoint.pt") -> None:
        if not self.d.main:
            return
        tmp = self.dir / (name + ".tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.dir / name)

    def log(self, step: int, values: dict[str, float]) -> None:
        if not self.d.main:
            return
        row = {"step": step, "seconds": round(time.monotonic() - self.t0, 3), **{k: float(v) for k, v in values.items()}}
        path = self.dir / "log.csv"
        rows = []
        if path.exists() and path.stat().st_size:
            with open(path, newline="") as f:
                reader = csv.DictReader(f)
                fields = list(reader.fieldnames or [])
                if set(row) <= set(fields):          # the usual case: append one row
                    with open(path, "a", newline="") as fa:
                        csv.DictWriter(fa, fieldnames=fields, restval="").writerow(row)
                    return
                rows = list(reader)
        fields = list(dict.fromkeys([*(rows[0].keys() if rows else []), *row]))
        with open(path, "w", newline="") as f:       # a new column: rewrite with the wider header
            w = csv.DictWriter(f, fieldnames=fields, restval="")
            w.writeheader()
            w.writerows(rows + [row])

    def bar(self, start: int, total: int):
        from tqdm import tqdm
        self._bar = tqdm(total=total, initial=start, disable=not (self.progress and self.d.main),
                         desc=self.cfg.run_name, dynamic_ncols=True)
        return self._bar

    def step_done(self, n: int, losses: dict[str, float], state: Callable[[], dict]) -> bool:
        """After step ``n`` (1-based): moves the progress bar, logs ``losses`` every
        ``log.every`` steps and at the last step, and saves ``state()`` (built only then) every
        ``log.checkpoint_every`` steps and at the last. Returns whether it saved."""
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix({k: f"{v:.3f}" for k, v in losses.items()})
        last = n == int(self.cfg.optim["steps"])
        if n % int(self.cfg.log["every"]) == 0 or last:
            self.log(n, losses)
        if n % int(self.cfg.log["checkpoint_every"]) == 0 or last:
            self.save(state())
            return True
        return False

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def lr_at(optim: dict, step: int) -> float:
    """The learning rate of ``step``: ``optim.lr``, or with ``optim.lr_end`` a cosine decay
    from ``lr`` to ``lr_end`` over ``optim.lr_decay_steps`` (default ``optim.steps``), then
    ``lr_end``. A pure function of the step, so resuming is exact; give ``lr_decay_steps``
    to train longer later without changing the schedule already followed."""
    import math
    lr, end = float(optim["lr"]), optim.get("lr_end")
    if end is None:
        return lr
    frac = min(max(step / max(int(optim.get("lr_decay_steps", optim["steps"])), 1), 0.0), 1.0)
    return float(end) + 0.5 * (lr - float(end)) * (1 + math.cos(math.pi * frac))


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for group in opt.param_groups:
        group["lr"] = lr


def init_from(optim: dict, modules: dict[str, torch.nn.Module],
              from_bundle: Callable[[Path], dict] | None = None) -> str | None:
    """Warm start: with ``optim.init_from`` (a run folder, a checkpoint file, or a ``.dwb``
    bundle where the stage gives ``from_bundle``, which turns a bundle into checkpoint keys),
    loads the weights of ``modules`` (by checkpoint key: "G", "D", ...) that the checkpoint
    holds; the optimisers start fresh. Parameters the checkpoint lacks (modules added since, e.g. a
    vocoder's harmonic excitation) keep their initialisation; a weight whose last dimension
    grew (a vocoder given more harmonics: ``source_proj`` takes more inputs) takes the
    checkpoint's columns, the new columns start at zero, so the model starts as the
    checkpoint's; any other difference is an error. Returns the file read, or None."""
    src = optim.get("init_from")
    if not src:
        return None
    p = Path(src)
    if p.is_dir():
        p = p / "checkpoint.pt"
    if not p.is_file():
        raise ValueError(f"optim.init_from: no checkpoint at '{p}'")
    if p.suffix == ".dwb":
        if from_bundle is None:
            raise ValueError(f"optim.init_from: '{p}' is a bundle; this stage warm-starts only from a run folder "
                             "(a bundle holds no critic)")
        state = from_bundle(p)
    else:
        state = torch.load(p, map_location="cpu", weights_only=True)
    for key, module in modules.items():
        if key in state:
            own = module.state_dict()
            saved = dict(state[key])
            for name, w in saved.items():
                mine = own.get(name)
                if (mine is not None and w.dim() == mine.dim() >= 2 and w.shape[:-1] == mine.shape[:-1]
                        and w.shape[-1] < mine.shape[-1]):
                    grown = torch.zeros_like(mine)
                    grown[..., :w.shape[-1]] = w
                    saved[name] = grown
            result = module.load_state_dict(saved, strict=False)
            if result.unexpected_keys:
                raise ValueError(f"optim.init_from: '{p}' {key} has weights this model lacks: "
                                 f"{result.unexpected_keys[:4]}")
    return str(p)


def read_log(path: str | Path) -> list[dict]:
    with open(path) as f:
        return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]
