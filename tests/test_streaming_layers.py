"""Each streaming layer, chunked, equals its whole-sequence output and its reference layer."""
import pytest
import torch
from torch.nn import functional as F

from core.streaming import CachedConv1d, CachedConvTranspose1d, DelayLine
from tests.conftest import chunkings

T = 64


def run_chunked(layer, x, sizes):
    layer.reset()
    outs, i = [], 0
    for n in sizes:
        outs.append(layer(x[:, :, i:i + n]))
        i += n
    return torch.cat(outs, 2)


@pytest.mark.parametrize("kernel,dilation,groups", [(3, 1, 1), (7, 1, 1), (3, 9, 1), (3, 1, 4), (1, 1, 1)])
@pytest.mark.parametrize("causal", [False, True])
def test_cached_conv_chunked_equals_reference(kernel, dilation, groups, causal):
    torch.manual_seed(0)
    layer = CachedConv1d(8, 12, kernel, dilation=dilation, groups=groups, causal=causal)
    x = torch.randn(2, 8, T)
    pad = dilation * (kernel - 1)
    if causal:
        ref = F.conv1d(F.pad(x, (pad, 0)), layer.weight, layer.bias, dilation=dilation, groups=groups)
    else:  # centred conv with zero padding, delayed by pad/2
        ref = F.conv1d(F.pad(x, (pad // 2, pad // 2)), layer.weight, layer.bias, dilation=dilation, groups=groups)
    d = layer.delay
    assert d == (0 if causal else pad // 2)
    for name, sizes in chunkings(T):
        out = run_chunked(layer, x, sizes)
        assert out.shape == (2, 12, T), name
        torch.testing.assert_close(out[:, :, d:], ref[:, :, :T - d], atol=1e-5, rtol=0, msg=name)


@pytest.mark.parametrize("stride", [2, 4, 8])
def test_cached_conv_transpose_chunked_equals_reference(stride):
    torch.manual_seed(1)
    p = stride // 2
    layer = CachedConvTranspose1d(6, 5, 2 * stride, stride, padding=p)
    x = torch.randn(2, 6, T)
    ref = F.conv_transpose1d(x, layer.weight, layer.bias, stride=stride, padding=p)
    assert ref.shape[2] == T * stride
    for name, sizes in chunkings(T):
        out = run_chunked(layer, x, sizes)
        assert out.shape == (2, 5, T * stride), name
        torch.testing.assert_close(out[:, :, p:], ref[:, :, :T * stride - p], atol=1e-5, rtol=0, msg=name)


def test_delay_line():
    x = torch.randn(1, 3, T)
    for name, sizes in chunkings(T):
        out = run_chunked(DelayLine(5), x, sizes)
        assert torch.equal(out[:, :, :5], torch.zeros(1, 3, 5)), name
        assert torch.equal(out[:, :, 5:], x[:, :, :-5]), name


def test_reset_forgets_state_and_batch_change_restarts():
    layer = CachedConv1d(2, 2, 3)
    x = torch.randn(1, 2, 10)
    first = run_chunked(layer, x, [10])
    layer(torch.randn(1, 2, 4))          # leave some state behind
    torch.testing.assert_close(run_chunked(layer, x, [10]), first)
    out = layer(torch.randn(3, 2, 10))   # a new batch size starts from zeros, not a crash
    assert out.shape == (3, 2, 10)
