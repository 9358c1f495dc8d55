"""Each streaming layer, chunked, equals its whole-sequence output and its reference layer
(torch's own conv1d / conv_transpose1d on channel-major tensors)."""
import pytest
import torch
from torch.nn import functional as F

from core.streaming import CachedConv1d, CachedConvTranspose1d, DelayLine
from tests.conftest import chunkings

T = 64


def run_chunked(layer, x, sizes):
    """x: channel-major [B, C, T]; the layer sees time-major chunks; returns [B, C, T']."""
    layer.reset()
    xt = x.transpose(1, 2)
    outs, i = [], 0
    for n in sizes:
        outs.append(layer(xt[:, i:i + n]))
        i += n
    return torch.cat(outs, 1).transpose(1, 2)


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


@pytest.mark.parametrize("stride,blocks", [(2, 2), (4, 2), (8, 2), (3, 1), (2, 3)])
def test_cached_conv_transpose_chunked_equals_reference(stride, blocks):
    torch.manual_seed(1)
    p = stride // 2
    layer = CachedConvTranspose1d(6, 5, blocks * stride, stride, padding=p)
    x = torch.randn(2, 6, T)
    ref = F.conv_transpose1d(x, layer.weight, layer.bias, stride=stride, padding=p)
    for name, sizes in chunkings(T):
        out = run_chunked(layer, x, sizes)
        assert out.shape == (2, 5, T * stride), name
        n = min(T * stride - p, ref.shape[2])
        torch.testing.assert_close(out[:, :, p:p + n], ref[:, :, :n], atol=1e-5, rtol=0, msg=name)


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
    layer(torch.randn(1, 4, 2))          # leave some state behind
    torch.testing.assert_close(run_chunked(layer, x, [10]), first)
    out = layer(torch.randn(3, 10, 2))   # a new batch size starts from zeros, not a crash
    assert out.shape == (3, 10, 2)
