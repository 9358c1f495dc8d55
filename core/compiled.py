"""Compiled streaming calls: one call of a streaming model as one TorchInductor graph.

A real-time step of 1 frame and 4 voices is about 1800 aten ops of a few microseconds'
work each, and the interpreter's overhead per op is as large as the op
(``benchmarks/bench_voices.py``). :class:`CompiledCall` turns a call such as "the vocoder,
its offset and mel matching" or "one level of the generator" into one graph compiled by
TorchInductor (C++ kernels with the elementwise work fused; the matrix products stay
oneDNN/BLAS calls), so the same step pays for far fewer dispatches.

How a call becomes a graph:

* **States in, states out.** Every stream state below the call's modules (each module's
  ``state_attrs``, :func:`core.streaming.stream_states`) is an input of the graph and an
  output: before a replay the module attributes hold the current state, after it the
  advanced one, so the modules look exactly as after the eager call and the eager path
  can take over at any step.
* **Traced, not scripted.** :func:`torch.fx.experimental.proxy_tensor.make_fx` records the
  aten ops that one real eager call runs (Python control flow decided by shapes and ints,
  as the streaming layers have it). Tracing runs the call, so the states are put back after
  it. Weights enter the graph as constants.
* **On some rows.** With :attr:`CompiledCall.rows` set, the graph takes the whole states
  and the rows' indices, gathers those rows, advances them and writes them back into new
  whole states (``index_select`` / ``index_copy`` inside the graph): a step of one
  sounding voice costs one voice, without a Python loop over the states.
* **Prepared, never compiled on the real-time thread.** A call compiles a graph for an
  input signature (shapes, dtypes, which inputs are None, the states' shapes) only while
  :attr:`CompiledCall.preparing`; any other signature raises :class:`NotReady` and the
  caller runs the eager call. A call that cannot be traced or compiled records why in
  :attr:`CompiledCall.failed` and raises :class:`NotReady` from then on.

The compiled graph computes what the eager call does in another order of float32
operations: equal within 1e-5 (``tests/test_compiled.py``).
"""
from __future__ import annotations

import os
import shutil
import sysconfig
import warnings
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

from .streaming import set_state, stream_states


class NotReady(RuntimeError):
    """No compiled graph for this call as it stands: run it eagerly."""


def compiler_available() -> str | None:
    """None when TorchInductor can build CPU kernels here, else why not (one line)."""
    cxx = os.environ.get("CXX") or "g++"
    if shutil.which(cxx) is None:
        return f"no C++ compiler ('{cxx}' not found; Debian/Ubuntu: apt install g++)"
    include = sysconfig.get_paths().get("include") or ""
    if not os.path.exists(os.path.join(include, "Python.h")):   # the kernels' Python bindings need it
        return f"no Python headers ({include}/Python.h; Debian/Ubuntu: apt install python3-dev)"
    return None


def default_cache_dir() -> Path:
    """Where compiled kernels are kept between runs (a later start reuses them)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "driftwave" / "inductor"


def use_cache_dir() -> None:
    """Points TorchInductor's on-disk cache at :func:`default_cache_dir` unless the user
    chose one (``TORCHINDUCTOR_CACHE_DIR``)."""
    if "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(default_cache_dir())


def _signature(tensors: Sequence[torch.Tensor | None]) -> tuple:
    return tuple(None if t is None else (tuple(t.shape), t.dtype, t.device) for t in tensors)


# Compiled graphs of this process by (graph code, input layout): a graph holds no weights, so
# another player of the same architecture (a device switch, a hot swap) reuses it.
_COMPILED: dict[tuple, Callable] = {}


def _layout(args: Sequence[torch.Tensor]) -> tuple:
    return tuple((tuple(a.shape), a.stride(), a.dtype, a.device) for a in args)


def _lift_constants(gm: torch.fx.GraphModule) -> tuple[torch.fx.GraphModule, list[torch.Tensor]]:
    """The traced graph with its tensor constants (weights, windows) turned into trailing
    inputs, and those tensors: a graph that holds no weights is the same graph for every
    bundle of one architecture, so TorchInductor's on-disk cache finds it again."""
    graph = gm.graph
    last = [n for n in graph.nodes if n.op == "placeholder"][-1]
    constants = []
    for node in list(graph.nodes):
        if node.op != "get_attr":
            continue
        value = gm
        for part in node.target.split("."):
            value = getattr(value, part)
        if not isinstance(value, torch.Tensor):
            continue
        with graph.inserting_after(last):
            ph = graph.placeholder(f"const_{len(constants)}")
        ph.meta = dict(node.meta)
        node.replace_all_uses_with(ph)
        graph.erase_node(node)
        last = ph
        constants.append(value)
    gm.recompile()
    return gm, constants


def _fake_inputs(gm: torch.fx.GraphModule, args: list[torch.Tensor]) -> list[torch.Tensor]:
    """Fake (shape-only) copies of ``args`` under a fake mode with a shape environment, and
    ``gm``'s node metadata made from them: what TorchInductor's on-disk graph cache needs
    to look a graph up (with real tensors it bypasses the cache and compiles anew)."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.experimental.symbolic_shapes import ShapeEnv
    from torch.fx.passes.fake_tensor_prop import FakeTensorProp

    mode = FakeTensorMode(shape_env=ShapeEnv())
    fake = [mode.from_tensor(a, static_shapes=True) for a in args]
    for node in gm.graph.nodes:
        node.meta.pop("val", None)
        node.meta.pop("tensor_meta", None)
    with mode:
        FakeTensorProp(gm, mode).propagate_dont_convert_inputs(*fake)
    return fake


def _contiguous(t: torch.Tensor) -> torch.Tensor:
    return t if t.is_contiguous() else t.contiguous()


class CompiledCall:
    """``fn(*inputs) -> tuple of tensors`` over ``modules`` whose stream states it advances,
    replayed as compiled graphs (see the module docstring). ``name`` labels reports."""

    def __init__(self, fn: Callable[..., tuple[torch.Tensor, ...]], modules: Sequence[nn.Module], name: str):
        self.fn, self.name = fn, name
        self.states = [(m, attr, plain) for model in modules for m, attr, _, plain in stream_states(model)]
        self.dims = [dim for model in modules for _, _, dim, _ in stream_states(model)]
        self.graphs: dict[tuple, Callable] = {}
        # While set (``LongTensor[k]``, by core.compiled_step): the call runs on these batch
        # rows of every state; its inputs have k rows and the other rows' states stay as
        # they are. The rows are a graph input: one graph serves every choice of k rows.
        self.rows: torch.Tensor | None = None
        self.preparing = False
        self.failed: str | None = None
        self.replays_by_rows: dict[int, int] = {}   # graph replays by the first input's batch (tests)

    @property
    def replays(self) -> int:
        """How many times a compiled graph ran."""
        return sum(self.replays_by_rows.values())

    def _set(self, values: Sequence[torch.Tensor | None]) -> None:
        for (m, attr, plain), v in zip(self.states, values):
            set_state(m, attr, plain, v)

    def __call__(self, *inputs: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        if self.failed is not None:
            raise NotReady(self.failed)
        values = [getattr(m, attr) for m, attr, _ in self.states]
        rows = self.rows
        key = (_signature(inputs), _signature(values), None if rows is None else len(rows))
        graph = self.graphs.get(key)
        if graph is None:
            if not self.preparing:
                raise NotReady(f"{self.name}: no graph for this signature")
            graph = self.graphs[key] = self._compile(inputs, values, rows)
        given = [_contiguous(t) for t in inputs if t is not None]
        if rows is not None:
            given.append(rows)
        present = [i for i, v in enumerate(values) if v is not None]
        out = graph(*given, *(_contiguous(values[i]) for i in present))
        n_out = len(out) - len(present)
        for i, t in zip(present, out[n_out:]):
            m, attr, plain = self.states[i]
            set_state(m, attr, plain, t)
        k = given[0].shape[0] if given and given[0].dim() else 0
        self.replays_by_rows[k] = self.replays_by_rows.get(k, 0) + 1
        return tuple(out[:n_out])

    def _compile(self, inputs: Sequence[torch.Tensor | None], values: list[torch.Tensor | None],
                 rows: torch.Tensor | None = None) -> Callable:
        """Traces and compiles the graph for this signature (on ``rows`` of the states when
        given: gathered in the graph, advanced, scattered back into the whole state); the
        states are left as they were."""
        from torch._inductor.compile_fx import compile_fx
        from torch.fx.experimental.proxy_tensor import make_fx

        slots = [i for i, t in enumerate(inputs) if t is not None]
        present = [i for i, v in enumerate(values) if v is not None]
        n_in = len(slots) + (rows is not None)

        def pure(*args: torch.Tensor) -> tuple[torch.Tensor, ...]:
            call_inputs: list[torch.Tensor | None] = [None] * len(inputs)
            for i, a in zip(slots, args):
                call_inputs[i] = a
            idx = args[n_in - 1] if rows is not None else None
            whole = [None] * len(values)
            for i, a in zip(present, args[n_in:]):
                whole[i] = a
            state = whole if idx is None else [None if v is None else v.index_select(d, idx)
                                               for v, d in zip(whole, self.dims)]
            self._set(state)
            out = tuple(self.fn(*call_inputs))
            after = [getattr(m, attr) for m, attr, _ in self.states]
            for t, was in zip(after, state):
                if (t is None) != (was is None) or (t is not None and t.shape != was.shape):
                    raise NotReady(f"{self.name}: a state appears or changes shape")
            if idx is not None:
                after = [None if t is None else w.index_copy(d, idx, t) for t, w, d in zip(after, whole, self.dims)]
            # contiguous states: the graph's input layout is the layout it gives back
            return out + tuple(after[i].contiguous() for i in present)

        args = [_contiguous(inputs[i]) for i in slots] + ([rows] if rows is not None else []) \
            + [_contiguous(values[i]) for i in present]
        try:
            with torch.inference_mode(), warnings.catch_warnings():
                # mel matching's FFTs stay library calls: said once per graph, nothing to act on
                warnings.filterwarnings("ignore", message=".*complex operators.*")
                gm, constants = _lift_constants(make_fx(pure)(*args))
                key = (gm.code, _layout(args + constants))
                compiled = _COMPILED.get(key)
                if compiled is None:
                    # inductor itself, without dynamo: no guards, so nothing recompiles later;
                    # the kernels check their inputs' sizes and strides (a mismatch raises)
                    compiled = _COMPILED[key] = compile_fx(gm, _fake_inputs(gm, args + constants))
            graph = lambda *a: compiled(*a, *constants)          # noqa: E731
        except Exception as e:                        # this call runs eagerly from now on
            self.failed = f"{self.name}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            raise NotReady(self.failed) from e
        finally:
            self._set(values)
        return graph
