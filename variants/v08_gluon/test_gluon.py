"""What only v08 has: the Gluon kernel's direct launches (GPU) and the hand-over to v06."""

import itertools

import pytest
import torch

from common.reference import reference_attention
from common.testing import (
    Problem,
    assert_broadcast_kv_is_correct,
    assert_forward_launch_writes_every_row,
    make_inputs,
    record_kernel_or_fallback,
)
from variants.v08_gluon import configs, kernel

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
HOPPER = DEVICE == "cuda" and torch.cuda.get_device_capability()[0] == 9
needs_hopper = pytest.mark.skipif(not HOPPER, reason="Gluon wgmma kernel: Hopper GPU")


def _spy(monkeypatch):
    """Record whether each forward call ran the Gluon kernel (True) or v06's forward (False)."""
    return record_kernel_or_fallback(monkeypatch, kernel, kernel.v06)


@pytest.mark.parametrize(
    "n_q, n_k, d, causal, layout, dtype, gluon",
    [
        (256, 256, 128, False, "contiguous", torch.bfloat16, True),  # whole tiles
        (37, 300, 64, False, "contiguous", torch.float16, True),  # ragged keys, 3 tiles
        (200, 50, 96, True, "bnhd", torch.bfloat16, True),  # padded d, strided views, causal
        (33, 33, 32, True, "contiguous", torch.bfloat16, True),
        (33, 33, 96, True, "contiguous", torch.float32, False),  # fp32: no MMA
        (33, 33, 256, False, "contiguous", torch.bfloat16, False),  # d=256 spills
        (33, 33, 100, False, "contiguous", torch.bfloat16, False),  # 200-byte rows: not for TMA
    ],
)
def test_kernel_or_v06_handover_is_correct(monkeypatch, n_q, n_k, d, causal, layout, dtype, gluon):
    problem = Problem(2, 2, n_q, n_k, d, causal=causal, dtype=dtype, layout=layout)
    q, k, v = make_inputs(problem, DEVICE)
    calls = _spy(monkeypatch)
    out = kernel.attention(q, k, v, is_causal=causal)
    assert calls == [gluon and HOPPER]  # on CPU (interpreter) every call goes to v06
    ref = reference_attention(q.double(), k.double(), v.double(), is_causal=causal)
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(out.double(), ref, rtol=0, atol=tol)


def test_negative_scale_goes_to_v06(monkeypatch):
    q, k, v = make_inputs(Problem(1, 2, 40, 40, 64, dtype=torch.bfloat16), DEVICE)
    calls = _spy(monkeypatch)
    out = kernel.attention(q, k, v, scale=-0.1)
    assert calls == [False]
    ref = reference_attention(q.double(), k.double(), v.double(), scale=-0.1)
    torch.testing.assert_close(out.double(), ref, rtol=0, atol=2e-2)


@needs_hopper
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("n_q, n_k", [(1, 1), (129, 1000), (1000, 129), (384, 384), (200, 333)])
@pytest.mark.parametrize(
    "d, stages, consumers",
    [(64, 2, 2), (64, 2, 3), (64, 4, 3), (128, 2, 2), (128, 3, 2), (16, 4, 3), (32, 2, 2)],
)
def test_direct_launch_writes_every_row(causal, n_q, n_k, d, stages, consumers):
    # With three consumers (192-row programs), 1000 and 200 query rows leave whole consumers
    # past the end, and a causal program's first 64 rows need one key tile fewer than its last.
    problem = Problem(2, 3, n_q, n_k, d, causal, torch.bfloat16)
    config = {"STAGES": stages, "CONSUMERS": consumers}
    assert_forward_launch_writes_every_row(kernel.launch_forward, problem, config, DEVICE)


@needs_hopper
@pytest.mark.parametrize("causal", [False, True])
def test_broadcast_batch_and_heads_are_read_through_the_kernel(monkeypatch, causal):
    # K and V shared by every batch entry and head: the descriptors describe those dims with
    # size 1 instead of asking TMA for a zero stride.
    calls = _spy(monkeypatch)
    assert_broadcast_kv_is_correct(kernel.attention, causal, DEVICE)
    assert calls == [True]


def test_stage_table_covers_the_padded_head_dims():
    assert all(kernel._block_d(d) in configs.HEAD_DIMS for d in (16, 17, 32, 64, 96, 128))
    assert kernel._block_d(129) not in configs.HEAD_DIMS
    assert set(configs.CONSUMERS) == set(configs.HEAD_DIMS)
    for d, n_q, causal in itertools.product(configs.HEAD_DIMS, (1, 4096), (False, True)):
        assert configs.tiles(d, n_q, causal)["CONSUMERS"] in configs.CONSUMER_REGS
