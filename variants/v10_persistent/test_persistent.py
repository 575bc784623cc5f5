"""What only v10 has: the schedules (CPU) and the persistent kernels' direct launches (GPU)."""

import pytest
import torch

from common.reference import reference_attention
from common.testing import (
    Problem,
    assert_broadcast_kv_is_correct,
    assert_forward_launch_writes_every_row,
    assert_grads_close,
    grads,
    make_inputs,
    record_kernel_or_fallback,
    reference_grads,
)
from common.validation import poisoned_outputs
from variants.v10_persistent import kernel, schedule

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
HOPPER = DEVICE == "cuda" and torch.cuda.get_device_capability()[0] == 9
needs_hopper = pytest.mark.skipif(not HOPPER, reason="Gluon wgmma kernel: Hopper GPU")


def _loads(batch, heads, n_q, n_kv, causal, rows, programs):
    """The schedule's blocks as (program, row block, batch, head) and each program's work."""
    blocks, starts = schedule.schedule(
        batch, heads, n_q, n_kv, causal, rows, 128, programs, torch.device("cpu")
    )
    n_blocks = -(-n_q // rows)
    costs = schedule.block_costs(n_blocks, rows, n_kv, causal, 128)
    owned, loads = [], []
    for p in range(programs):
        mine = blocks[starts[p] : starts[p + 1]].tolist()
        owned += [(p, *b) for b in mine]
        loads.append(sum(costs[m] + schedule.OVERHEAD for m, _, _ in mine))
    return owned, loads, max(costs) + schedule.OVERHEAD


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize(
    "batch, heads, n_q, n_kv, rows, programs",
    [(2, 3, 1000, 1000, 192, 7), (1, 5, 4096, 300, 128, 132), (3, 1, 129, 5000, 128, 2),
     (1, 1, 64, 64, 128, 1)],
)  # fmt: skip
def test_schedule_deals_every_block_once_and_evenly(
    batch, heads, n_q, n_kv, causal, rows, programs
):
    owned, loads, longest = _loads(batch, heads, n_q, n_kv, causal, rows, programs)
    n_blocks = -(-n_q // rows)
    want = {(m, z, h) for m in range(n_blocks) for z in range(batch) for h in range(heads)}
    got = [b[1:] for b in owned]
    assert len(got) == len(want) and set(got) == want
    # LPT's bound: no program ends more than one block's work after the least-loaded one.
    assert max(loads) - min(loads) <= longest


def test_schedule_walks_heads_in_order_longest_block_first():
    owned, _, _ = _loads(2, 2, 1000, 1000, True, 128, 3)
    # Program 0 takes the first block dealt: head (0, 0)'s last row block, the longest.
    assert owned[0][1:] == (7, 0, 0)
    # Within a program, heads come in order and each head's blocks get shorter.
    for p in range(3):
        mine = [(z * 2 + h, -m) for q, m, z, h in owned if q == p]
        assert mine == sorted(mine)


def test_schedule_without_a_mask_is_round_robin():
    owned, loads, _ = _loads(1, 4, 1000, 1000, False, 192, 5)
    # 6 row blocks per head, 24 in all: program 1 takes the 2nd, 7th, 12th, 17th and 22nd.
    assert [b[1] for b in owned if b[0] == 1] == [1, 0, 5, 4, 3]
    assert len(set(loads)) <= 2


@pytest.mark.parametrize(
    "batch, heads, n_q, n_kv, causal, block_m, programs",
    [(2, 3, 1000, 1000, True, 128, 7), (1, 5, 4096, 4096, True, 64, 132),
     (3, 1, 129, 5000, True, 64, 2), (1, 2, 5000, 129, False, 128, 3),
     (1, 1, 64, 64, True, 128, 1)],
)  # fmt: skip
def test_key_schedule_deals_every_key_block_once_and_evenly(
    batch, heads, n_q, n_kv, causal, block_m, programs
):
    blocks, starts = schedule.key_schedule(
        batch, heads, n_q, n_kv, causal, 128, block_m, programs, torch.device("cpu")
    )
    n_blocks = -(-n_kv // 128)
    costs = schedule.key_block_costs(n_blocks, 128, n_q, causal, block_m)
    want = {(m, z, h) for m in range(n_blocks) for z in range(batch) for h in range(heads)}
    got = [tuple(b) for b in blocks.tolist()]
    assert len(got) == len(want) and set(got) == want
    loads = [
        sum(costs[m] + schedule.OVERHEAD for m, _, _ in got[starts[p] : starts[p + 1]])
        for p in range(programs)
    ]
    assert max(loads) - min(loads) <= max(costs) + schedule.OVERHEAD


def test_key_block_costs_count_the_query_steps_that_see_each_block():
    # 1000 queries in 64-row steps: 16 steps; under the mask key block b (keys 128b on) starts
    # at query step 2b, and blocks past every query walk none.
    assert schedule.key_block_costs(9, 128, 1000, True, 64) == [16, 14, 12, 10, 8, 6, 4, 2, 0]
    assert schedule.key_block_costs(3, 128, 1000, False, 128) == [8, 8, 8]


def test_backward_config_keys_are_checked():
    q, k, v = make_inputs(Problem(1, 1, 64, 64, 64, dtype=torch.bfloat16), "cpu")
    # Every operand is a [B, H, N, d] descriptor here: v09's HOST_DESC switch has no meaning.
    with pytest.raises(ValueError, match="HOST_DESC"):
        kernel.launch_backward(q, q, k, v, None, None, None, None, None, False, 0.125,
                               config={"HOST_DESC": True})  # fmt: skip
    with pytest.raises(ValueError, match="DQ_ROWS"):
        kernel.launch_backward(q, q, k, v, None, None, None, None, None, False, 0.125,
                               config={"BLOCK_M": 64, "DQ_ROWS": True})  # fmt: skip


def test_three_stages_at_d128_do_not_fit():
    q, k, v = make_inputs(Problem(1, 1, 64, 64, 128, dtype=torch.bfloat16), "cpu")
    with pytest.raises(ValueError, match="config: 3 stages x 2 consumers at head dim 128"):
        kernel.launch_forward(q, k, v, q, None, False, 0.1, config={"STAGES": 3})


def _spy(monkeypatch):
    """Record whether each forward call ran the persistent kernel (True) or v08's forward."""
    return record_kernel_or_fallback(monkeypatch, kernel, kernel.v08)


@pytest.mark.parametrize(
    "n_q, n_k, d, causal, dtype, persistent",
    [
        (300, 257, 64, True, torch.bfloat16, True),
        (130, 130, 128, False, torch.float16, True),
        (33, 33, 96, True, torch.float32, False),  # fp32: no wgmma, v08 hands on to v06/v05
        (33, 33, 256, False, torch.bfloat16, False),  # d=256 spills
    ],
)
def test_kernel_or_v08_handover_is_correct(monkeypatch, n_q, n_k, d, causal, dtype, persistent):
    q, k, v = make_inputs(Problem(2, 2, n_q, n_k, d, causal=causal, dtype=dtype), DEVICE)
    calls = _spy(monkeypatch)
    out = kernel.attention(q, k, v, is_causal=causal)
    assert calls == [persistent and HOPPER]  # on CPU (interpreter) every call goes to v08
    ref = reference_attention(q.double(), k.double(), v.double(), is_causal=causal)
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(out.double(), ref, rtol=0, atol=tol)


@needs_hopper
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("n_q, n_k", [(1, 1), (129, 1000), (1000, 129), (200, 333), (1000, 1000)])
@pytest.mark.parametrize(
    "d, stages, consumers, programs",
    [(64, 2, 3, 1), (64, 2, 3, 5), (64, 4, 3, 3), (64, 2, 2, 4), (128, 2, 2, 1), (128, 2, 2, 7),
     (16, 4, 3, 2), (32, 2, 2, 132)],
)  # fmt: skip
def test_direct_launch_writes_every_row(causal, n_q, n_k, d, stages, consumers, programs):
    # Few programs: each walks many row blocks of several heads, so Q buffers, barrier parities
    # and the K/V ring carry across blocks; 1000 and 200 rows leave idle consumers (192-row
    # blocks), and causal blocks trim a consumer's last key tile.
    problem = Problem(2, 3, n_q, n_k, d, causal, torch.bfloat16)
    config = {"STAGES": stages, "CONSUMERS": consumers, "PROGRAMS": programs}
    assert_forward_launch_writes_every_row(kernel.launch_forward, problem, config, DEVICE)


@needs_hopper
@pytest.mark.parametrize("causal", [False, True])
def test_broadcast_batch_and_heads_are_read_through_the_kernel(monkeypatch, causal):
    calls = _spy(monkeypatch)
    assert_broadcast_kv_is_correct(kernel.attention, causal, DEVICE)
    assert calls == [True]


@needs_hopper
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("n_q, n_k", [(1, 1), (129, 1000), (1000, 129), (384, 384)])
@pytest.mark.parametrize(
    "d, config",
    [
        (64, {"PROGRAMS": 1}),  # one program walks all 2 x 3 heads' key blocks
        (64, {"PROGRAMS": 5}),
        (64, {"PROGRAMS": 5, "DIAG_LAST": False}),  # causal: one loop, the mask checked per step
        (128, {"PROGRAMS": 1}),
        (128, {"PROGRAMS": 7, "STAGES": 3}),  # a ring of three across blocks
        (128, {"PROGRAMS": 4, "DIAG_LAST": True, "DQ_PERM": True}),
        (128, {"DQ_UNDER_DK": False}),  # one program per SM (at most one block each here)
        (64, {"PROGRAMS": 3, "DQ_ROWS": False, "DQ_UNDER_DK": True}),
        (16, {"PROGRAMS": 2, "BLOCK_M": 64}),
        (32, {"PROGRAMS": 3, "BLOCK_M": 128, "STAGES": 3, "DQ_PERM": False}),
    ],
)
def test_persistent_backward_writes_every_gradient(causal, n_q, n_k, d, config):
    # Few programs: each walks several heads' key blocks, so the Q/dO ring, the dS buffers'
    # and K/V's barrier parities and the dQ staging carry across blocks; dK/dV start as NaN and
    # every key block adds into dQ, so a lost, doubled or misplaced block fails.
    q, k, v = make_inputs(Problem(2, 3, n_q, n_k, d, dtype=torch.bfloat16), DEVICE)
    do = torch.randn(q.shape, device=DEVICE).to(q.dtype)
    o, lse = kernel.v08._forward(q, k, v, causal, d**-0.5)
    with poisoned_outputs():
        got = kernel._backward(do, q, k, v, o, lse, causal, d**-0.5, config=config)
    assert_grads_close(got, reference_grads(q, k, v, do, causal), 2e-2)


@needs_hopper
@pytest.mark.parametrize(
    "n_q, n_k, d, causal, layout",
    [(300, 257, 64, True, "bnhd"), (130, 130, 96, False, "contiguous"),
     (50, 300, 128, True, "bnhd")],
)  # fmt: skip
def test_backward_runs_the_persistent_kernel(monkeypatch, n_q, n_k, d, causal, layout):
    # Strided per-head views, ragged lengths and a padded head dim go through the [B, H, N, d]
    # descriptors (v09 built descriptors in the kernel for them).
    calls = []
    real = kernel.launch_backward
    monkeypatch.setattr(
        kernel, "launch_backward", lambda *a, **kw: calls.append(True) or real(*a, **kw)
    )
    q, k, v = make_inputs(Problem(2, 2, n_q, n_k, d, causal, torch.bfloat16, layout), DEVICE)
    do = torch.randn(q.shape, device=DEVICE).to(q.dtype)
    with poisoned_outputs():
        got = grads(q, k, v, do, causal, lambda q, k, v, c: kernel.attention(q, k, v, is_causal=c))
    assert calls == [True]
    assert_grads_close(got, reference_grads(q, k, v, do, causal), 2e-2)


@needs_hopper
@pytest.mark.parametrize("causal", [False, True])
def test_broadcast_kv_gradients_through_the_persistent_kernel(causal):
    # K and V shared by every batch entry and head (stride 0): read as one copy, while dK and
    # dV come out per head and autograd sums them.
    q = torch.randn(2, 3, 300, 64, device=DEVICE, dtype=torch.bfloat16)
    k, v = (torch.randn(1, 1, 300, 64, device=DEVICE, dtype=torch.bfloat16) for _ in "kv")
    do = torch.randn_like(q)

    def expanded(attention):
        return lambda q, k, v, c: attention(q, k.expand(2, 3, -1, -1), v.expand(2, 3, -1, -1),
                                            is_causal=c)  # fmt: skip

    got = grads(q, k, v, do, causal, expanded(kernel.attention))
    want = grads(q.double(), k.double(), v.double(), do.double(), causal,
                 expanded(reference_attention))  # fmt: skip
    assert_grads_close(got, want, 2e-2)
