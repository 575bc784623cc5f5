"""Bad input gets a clear TypeError/ValueError naming the argument and the limit, for every stage,
before anything is launched. Empty outputs are answered with an empty tensor, like SDPA."""

import pytest
import torch

from tests.stages import STAGES, stage_or_fail

NAMES = list(STAGES)


DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def qkv(b=1, h=2, n=8, d=16, dtype=torch.float32, n_k=None):
    n_k = n if n_k is None else n_k
    return tuple(torch.randn(b, h, m, d, dtype=dtype, device=DEVICE) for m in (n, n_k, n_k))


def d_ok(caps):
    return max(caps.min_head_dim, min(16, caps.max_head_dim))


@pytest.fixture(params=NAMES)
def stage(request):
    return stage_or_fail(request.param)


def expect(exc, match, fn, *args, **kwargs):
    with pytest.raises(exc, match=match):
        fn(*args, **kwargs)


def test_not_a_tensor(stage):
    q, k, v = qkv(d=d_ok(stage.capabilities))
    expect(TypeError, "key must be a torch.Tensor", stage.attention, q, k.tolist(), v)


def test_integer_tensors(stage):
    q, k, v = qkv(d=d_ok(stage.capabilities))
    expect(TypeError, "query must be a floating tensor", stage.attention, q.long(), k, v)


def test_mixed_dtypes(stage):
    q, k, v = qkv(d=d_ok(stage.capabilities))
    expect(TypeError, "value.dtype", stage.attention, q, k, v.double())


def test_unsupported_dtype(stage):
    q, k, v = (t.double() for t in qkv(d=d_ok(stage.capabilities)))
    expect(TypeError, "float64 is not supported", stage.attention, q, k, v)


@pytest.mark.parametrize("shape", [(2, 8, 16), (1, 1, 2, 8, 16)])
def test_wrong_rank(stage, shape):
    t = torch.randn(*shape, device=DEVICE)
    expect(ValueError, "query must have 4 dims", stage.attention, t, t, t)


def test_mismatched_batch_heads(stage):
    d = d_ok(stage.capabilities)
    q, _, _ = qkv(h=2, d=d)
    _, k, v = qkv(h=3, d=d)
    expect(ValueError, "batch and heads must match", stage.attention, q, k, v)


def test_mismatched_key_value(stage):
    d = d_ok(stage.capabilities)
    q, k, _ = qkv(d=d)
    _, _, v = qkv(d=d, n=9)
    expect(ValueError, "must have the same shape", stage.attention, q, k, v)


def test_mismatched_head_dim(stage):
    d = d_ok(stage.capabilities)
    q, _, _ = qkv(d=d)
    _, k, v = qkv(d=d + 1)
    expect(ValueError, "head_dim", stage.attention, q, k, v)


def test_mixed_devices(stage):
    q, k, v = qkv(d=d_ok(stage.capabilities))
    expect(ValueError, "is on meta", stage.attention, q, k.to("meta"), v)


def test_head_dim_too_large(stage):
    caps = stage.capabilities
    q, k, v = qkv(d=caps.max_head_dim + 1, n=2)
    expect(ValueError, f"head_dim {caps.max_head_dim + 1} is outside", stage.attention, q, k, v)


def test_head_dim_too_small(stage):
    caps = stage.capabilities
    if caps.min_head_dim <= 1:
        pytest.skip("every head_dim >= 1 is supported")
    q, k, v = qkv(d=caps.min_head_dim - 1, n=2)
    expect(ValueError, "is outside the supported range", stage.attention, q, k, v)


def test_sequence_too_long(stage):
    caps = stage.capabilities
    if caps.max_seq_len is None:
        pytest.skip("no declared sequence limit")
    q, k, v = qkv(n=2, n_k=caps.max_seq_len + 1, d=d_ok(caps))
    expect(
        ValueError, f"exceeds this stage's limit of {caps.max_seq_len}", stage.attention, q, k, v
    )


@pytest.mark.parametrize("scale", [float("inf"), float("nan")])
def test_scale_not_finite(stage, scale):
    q, k, v = qkv(d=d_ok(stage.capabilities))
    expect(ValueError, "scale must be finite", stage.attention, q, k, v, scale=scale)


def test_scale_wrong_type(stage):
    q, k, v = qkv(d=d_ok(stage.capabilities))
    expect(TypeError, "scale must be a float", stage.attention, q, k, v, scale="0.1")


def test_is_causal_wrong_type(stage):
    q, k, v = qkv(d=d_ok(stage.capabilities))
    expect(TypeError, "is_causal must be a bool", stage.attention, q, k, v, is_causal=1)


def test_cpu_without_interpreter(stage, monkeypatch):
    if torch.cuda.is_available():
        pytest.skip("only meaningful on a CPU-only machine")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    q, k, v = qkv(d=d_ok(stage.capabilities))
    expect(ValueError, "TRITON_INTERPRET=1", stage.attention, q, k, v)


@pytest.mark.parametrize("b, h, n", [(0, 2, 8), (1, 0, 8), (1, 2, 0)])
def test_empty_output_is_empty(stage, b, h, n, device):
    d = d_ok(stage.capabilities)
    q = torch.randn(b, h, n, d, device=device)
    k = torch.randn(b, h, 5, d, device=device)
    out = stage.attention(q, k, k.clone())
    assert out.shape == (b, h, n, d) and out.dtype == q.dtype


def test_no_keys(stage):
    q, k, v = qkv(n=4, n_k=0, d=d_ok(stage.capabilities))
    expect(ValueError, "sequence length 0", stage.attention, q, k, v)


def test_zero_head_dim(stage):
    q, k, v = qkv(d=0)
    expect(ValueError, "head_dim", stage.attention, q, k, v)


def test_backward_refused_when_not_declared(stage, device):
    if stage.capabilities.backward:
        pytest.skip("stage declares a backward")
    d = d_ok(stage.capabilities)
    q, k, v = (t.requires_grad_() for t in qkv(d=d))
    out = stage.attention(q, k, v)
    # A forward-only stage returns a tensor with no autograd history: backward cannot silently
    # produce zeros or wrong gradients.
    assert out.grad_fn is None
