"""What only v09 has: which calls take the Gluon backward, and its direct launches (GPU)."""

import pytest
import torch

from common.testing import (
    Problem,
    assert_grads_close,
    grads,
    make_inputs,
    reference_grads,
)
from common.validation import poisoned_outputs
from variants.v09_gluon_bwd import configs, kernel
from variants.v09_gluon_bwd.dq_cast import dq_from_buffer
from variants.v09_gluon_bwd.prepare import prepare

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
HOPPER = DEVICE == "cuda" and torch.cuda.get_device_capability()[0] == 9
needs_hopper = pytest.mark.skipif(not HOPPER, reason="Gluon wgmma kernel: Hopper GPU")


@pytest.mark.parametrize(
    "n_q, n_k, d, causal, dtype, layout, gluon",
    [
        (256, 256, 128, False, torch.bfloat16, "contiguous", True),  # whole tiles: host descriptors
        (70, 50, 64, False, torch.bfloat16, "contiguous", True),  # ragged query and key tiles
        (50, 300, 128, True, torch.float16, "contiguous", True),  # causal keys past every query
        (33, 33, 96, True, torch.bfloat16, "bnhd", True),  # per-head strided views, padded d
        (33, 33, 16, False, torch.float16, "contiguous", True),  # dQ halves of 8 columns
        (33, 33, 64, False, torch.float32, "contiguous", False),  # fp32: no MMA, v04
        (33, 33, 256, False, torch.bfloat16, "contiguous", False),  # d > 128: v04
        (33, 33, 100, False, torch.bfloat16, "contiguous", False),  # 200-byte rows: v04
    ],
)
def test_gluon_or_v04_backward_is_correct(monkeypatch, n_q, n_k, d, causal, dtype, layout, gluon):
    calls = []
    real = kernel.launch_backward
    monkeypatch.setattr(
        kernel, "launch_backward", lambda *a, **kw: calls.append(True) or real(*a, **kw)
    )
    q, k, v = make_inputs(Problem(2, 2, n_q, n_k, d, causal, dtype, layout), DEVICE)
    do = torch.randn(q.shape, device=DEVICE).to(dtype)
    with poisoned_outputs():  # an unwritten dK/dV row (e.g. keys no query sees) stays NaN
        got = grads(q, k, v, do, causal, lambda q, k, v, c: kernel.attention(q, k, v, is_causal=c))
    assert calls == ([True] if gluon and HOPPER else [])  # CPU: v04's backward
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    assert_grads_close(got, reference_grads(q, k, v, do, causal), tol)


@needs_hopper
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("n_q, n_k", [(1, 1), (129, 1000), (1000, 129), (384, 384)])
@pytest.mark.parametrize(
    "d, config",
    [
        (64, {}),
        (64, {"BLOCK_M": 128, "STAGES": 2}),  # three stages of 128-query steps: no room
        (128, {}),
        (128, {"STAGES": 3}),
        (128, {"HOST_DESC": False}),
        (32, {"BLOCK_M": 128, "STAGES": 3}),
        (64, {"BLOCK_M": 64, "STAGES": 3}),  # causal: two diagonal steps peeled per program
        (16, {"BLOCK_M": 64}),
        (64, {"DQ_ROWS": False}),  # 128-query steps, dQ split by columns
        (16, {"BLOCK_M": 128}),  # dQ by rows, 16 columns
        (64, {"DQ_UNDER_DK": True}),  # dK issued after dQ, still running while dQ is sent
        (128, {"DQ_UNDER_DK": True}),  # (d=128: the default without the causal mask)
        (64, {"DQ_PERM": False}),  # dQ rows staged in order (default: permuted)
        (128, {"DQ_PERM": True}),  # (causal: the default keeps them in order)
        (128, {"DQ_PERM": True, "DQ_UNDER_DK": False}),
        (64, {"DQ_PERM": True, "DQ_ROWS": False}),  # 128 permuted rows, half the columns
        (16, {"BLOCK_M": 64, "DQ_PERM": True}),  # 8-column halves
        (64, {"HEAD_GROUP": 4}),  # causal: 6 heads in groups of 4 and 2, key blocks interleaved
        (128, {"HEAD_GROUP": 4}),
        (128, {"HEAD_GROUP": 8}),  # one group, smaller than the group size
        (64, {"DELTA_SCALED": False}),
        (128, {"DELTA_SCALED": True}),  # (d=128: the default without the causal mask)
        (128, {"TMA_DKV": True}),  # dK and dV out by the copy engine
        (64, {"TMA_DKV": True}),
        (16, {"BLOCK_M": 64, "TMA_DKV": True}),  # the smallest staging buffer: [64, 8] fp32
        (64, {"BLOCK_M": 128, "DQ_ROWS": False, "TMA_DKV": True}),
    ],
)
def test_direct_launch_writes_every_gradient(causal, n_q, n_k, d, config):
    # Many key blocks add into every dQ row, and dK/dV start as NaN: a lost, doubled or
    # misplaced add, or a key row left unwritten, fails.
    q, k, v = make_inputs(Problem(2, 3, n_q, n_k, d, dtype=torch.bfloat16), DEVICE)
    do = torch.randn(q.shape, device=DEVICE).to(q.dtype)
    o, lse = kernel.v08._forward(q, k, v, causal, d**-0.5)
    with poisoned_outputs():
        dq, dk, dv = kernel._backward(do, q, k, v, o, lse, causal, d**-0.5, config=config)
    assert_grads_close((dq, dk, dv), reference_grads(q, k, v, do, causal), 2e-2)


@pytest.mark.parametrize("perm", [False, True])
@pytest.mark.parametrize(
    "n_q, d, n_pad, block_d, dtype",
    [(64, 64, 64, 64, torch.bfloat16), (70, 50, 128, 64, torch.float16),
     (33, 16, 64, 16, torch.bfloat16), (8, 96, 8, 128, torch.float16),
     (1, 32, 64, 32, torch.float16)],
)  # fmt: skip
def test_dq_cast_puts_rows_back_cuts_and_casts(perm, n_q, d, n_pad, block_d, dtype):
    # The buffer's padding (rows past N_Q, columns past d) holds values that must not leak, and
    # dQ starts as NaN: a row read from the wrong place or left unwritten fails.
    B, H = 2, 3
    want = torch.randn(B, H, n_q, d, device=DEVICE)
    acc = torch.randn(B * H, n_pad, block_d, device=DEVICE) * 100
    acc[:, :n_q, :d] = want.reshape(B * H, n_q, d)
    if perm:  # the kernel's staging order: query 4a + b of each group of 8 at row 2b + a
        acc = acc.view(B * H, n_pad // 8, 2, 4, block_d).transpose(2, 3).reshape(acc.shape)
    like = torch.empty(B, H, n_q, d, device=DEVICE, dtype=dtype)
    with poisoned_outputs():
        got = dq_from_buffer(acc, like, perm)
    assert got.dtype == dtype and got.is_contiguous()
    # Exact, but for the interpreter's bf16 conversion, which truncates (within one bf16 step).
    rtol = 2**-7 if dtype == torch.bfloat16 and not HOPPER else 0
    torch.testing.assert_close(got.float(), want.to(dtype).float(), rtol=rtol, atol=0)


@pytest.mark.parametrize(
    "n_q, d, n_pad, block_d, dtype, layout",
    [(64, 64, 64, 64, torch.bfloat16, "contiguous"), (70, 50, 128, 64, torch.float16, "bnhd"),
     (1, 96, 64, 128, torch.bfloat16, "contiguous"), (130, 16, 192, 16, torch.float16, "bnhd")],
)  # fmt: skip
def test_prepare_pads_lse_and_delta_and_zeroes_the_dq_buffer(n_q, d, n_pad, block_d, dtype, layout):
    # Every output starts as NaN, so each padded row and column must be written.
    B, H = 2, 3
    o, do = make_inputs(Problem(B, H, n_q, n_q, d, dtype=dtype, layout=layout), DEVICE)[:2]
    lse = torch.randn(B, H, n_q, device=DEVICE) * 10
    scale = -0.3 if layout == "bnhd" else 1.0  # DELTA_SCALED's Delta, negative scales included
    with poisoned_outputs():
        lse_pad, delta_pad, dq_acc = prepare(o, do, lse, n_pad, block_d, scale)
    lse_pad, delta_pad = lse_pad.view(B, H, n_pad), delta_pad.view(B, H, n_pad)
    want = (o.double() * do.double()).sum(-1) * scale
    torch.testing.assert_close(delta_pad[..., :n_q].double(), want, rtol=1e-5, atol=1e-5)
    assert (delta_pad[..., n_q:] == 0).all()
    assert torch.equal(lse_pad[..., :n_q], lse)
    assert (lse_pad[..., n_q:] == float("inf")).all()
    assert dq_acc.shape == (B * H, n_pad, block_d) and (dq_acc == 0).all()


def test_prepare_refuses_shapes_it_cannot_pad():
    o = torch.randn(1, 2, 70, 64, dtype=torch.bfloat16)
    lse = torch.zeros(1, 2, 70)
    with pytest.raises(ValueError, match="n_pad"):
        prepare(o, o, lse, 100, 64)  # not a multiple of 64
    with pytest.raises(ValueError, match="block_d"):
        prepare(o, o, lse, 128, 32)
    with pytest.raises(ValueError, match="lse"):
        prepare(o, o, lse[..., :60], 128, 64)


def test_dq_cast_refuses_a_buffer_too_small():
    like = torch.empty(1, 2, 70, 64, dtype=torch.bfloat16)
    with pytest.raises(ValueError, match="dq_acc"):
        dq_from_buffer(torch.zeros(2, 64, 64), like, False)


def test_expanded_grad_output_is_copied_for_tma():
    # loss = out.sum() hands autograd a stride-0 dO, which TMA cannot address.
    q, k, v = make_inputs(Problem(1, 2, 40, 40, 64, dtype=torch.bfloat16), DEVICE)
    do = torch.ones(1, 1, 1, 1, device=DEVICE, dtype=torch.bfloat16).expand(q.shape)
    got = grads(q, k, v, do, False, lambda q, k, v, c: kernel.attention(q, k, v, is_causal=c))
    assert_grads_close(got, reference_grads(q, k, v, do, False), 2e-2)


def test_dq_split_by_rows_needs_one_block_of_rows_per_consumer():
    q, k, v = make_inputs(Problem(1, 1, 64, 64, 64, dtype=torch.bfloat16), DEVICE)
    with pytest.raises(ValueError, match="DQ_ROWS"):
        kernel.launch_backward(q, q, k, v, None, None, None, None, None, False, 0.125,
                               config={"BLOCK_M": 64, "DQ_ROWS": True})  # fmt: skip


def test_unknown_config_keys_are_refused():
    q, k, v = make_inputs(Problem(1, 1, 64, 64, 64, dtype=torch.bfloat16), DEVICE)
    with pytest.raises(ValueError, match="DQ_UNDERDK"):
        kernel.launch_backward(q, q, k, v, None, None, None, None, None, False, 0.125,
                               config={"DQ_UNDERDK": True})  # fmt: skip


def test_stage_table_covers_the_padded_head_dims():
    assert all(kernel.v08._block_d(d) in configs.HEAD_DIMS for d in (16, 17, 32, 64, 96, 128))
    assert kernel.v08._block_d(129) not in configs.HEAD_DIMS


def test_causal_launch_groups_heads_while_their_q_do_and_dq_fit():
    assert configs.head_group(4096, 64, True) == 4  # four heads' Q, dO and dQ: 8 MiB
    assert configs.head_group(16384, 128, True) == 4  # d=128: at every length (run 21)
    assert configs.head_group(16384, 64, True) == 1  # 32 MiB
    assert configs.head_group(4096, 64, False) == 1  # without the mask programs are alike
