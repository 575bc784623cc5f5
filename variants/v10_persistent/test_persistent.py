"""What only v10 has: the schedule (CPU) and the persistent kernel's direct launches (GPU)."""

import math

import pytest
import torch

from common.reference import reference_attention, reference_lse
from common.testing import (
    Problem,
    assert_broadcast_kv_is_correct,
    assert_forward_launch_writes_every_row,
    judge,
    make_inputs,
    record_kernel_or_fallback,
)
from variants.v10_persistent import kernel, redo, schedule

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
HOPPER = DEVICE == "cuda" and torch.cuda.get_device_capability()[0] == 9
needs_hopper = pytest.mark.skipif(not HOPPER, reason="Gluon wgmma kernel: Hopper GPU")


def _loads(batch, heads, n_q, n_kv, causal, rows, programs, group=1):
    """The schedule's blocks as (program, row block, batch, head) and each program's work."""
    blocks, starts = schedule.schedule(
        batch, heads, n_q, n_kv, causal, rows, 128, programs, torch.device("cpu"), group
    )
    n_blocks = -(-n_q // rows)
    costs = schedule.block_costs(n_blocks, rows, n_kv, causal, 128, n_q)
    owned, loads = [], []
    for p in range(programs):
        mine = blocks[starts[p] : starts[p + 1]].tolist()
        owned += [(p, *b) for b in mine]
        loads.append(sum(costs[m] + schedule.OVERHEAD for m, _, _ in mine))
    return owned, loads, max(costs) + schedule.OVERHEAD


@pytest.mark.parametrize("group", [1, 4])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize(
    "batch, heads, n_q, n_kv, rows, programs",
    [(2, 3, 1000, 1000, 192, 7), (1, 5, 4096, 300, 128, 132), (3, 1, 129, 5000, 128, 2),
     (1, 1, 64, 64, 128, 1)],
)  # fmt: skip
def test_schedule_deals_every_block_once_and_evenly(
    batch, heads, n_q, n_kv, causal, rows, programs, group
):
    owned, loads, longest = _loads(batch, heads, n_q, n_kv, causal, rows, programs, group)
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


def test_schedule_in_head_groups_deals_each_block_of_the_group_in_turn():
    # 2 x 3 heads in groups of 4 (heads 0-3, then 4-5), 8 row blocks each, 64 programs: the first
    # 32 blocks dealt (one per program) are the group's four longest, then its four next...
    owned, _, _ = _loads(2, 3, 1000, 1000, True, 128, 64, group=4)
    first = [b[1:] for b in owned if b[0] < 8]  # programs 0-7: the two longest of each head
    assert first[:4] == [(7, 0, 0), (7, 0, 1), (7, 0, 2), (7, 1, 0)]
    assert first[4:8] == [(6, 0, 0), (6, 0, 1), (6, 0, 2), (6, 1, 0)]
    assert kernel.head_group(4096, 128, True) == 4  # 4 heads' K and V: 8 MiB
    assert kernel.head_group(16384, 128, True) == 1  # 32 MiB: no group
    assert kernel.head_group(4096, 128, False) == 1  # without the mask every block is alike
    with pytest.raises(ValueError, match="group must be positive, got 0"):
        schedule.head_major(3, 2, 0)


def test_schedule_spreads_the_heads_short_last_blocks():
    # 4096 rows in 192-row blocks: 21 full blocks per head and one of 64 rows (one consumer of
    # three busy). 22 blocks per head divide 132 programs, so a round-robin deal gave all 128
    # short blocks to 6 programs and a 22nd full block to 40 others.
    owned, loads, _ = _loads(4, 32, 4096, 4096, False, 192, 132)
    short = [sum(1 for q, m, _, _ in owned if q == p and m == 21) for p in range(132)]
    full = [sum(1 for q, m, _, _ in owned if q == p and m < 21) for p in range(132)]
    assert max(short) <= 4 and max(full) <= 21
    # The longest program: 21 full blocks and one short (33 and 19.56 each, with the overhead),
    # where round-robin's ran 22 full ones (726).
    assert max(loads) == pytest.approx(21 * 33 + 32 * 0.58 + 1)
    assert schedule.block_costs(22, 192, 4096, False, 128, 4096)[21] == 32 * 0.58
    assert schedule.block_costs(22, 192, 4096, False, 128, 4160)[21] == 32 * 0.82  # 2 of 3 busy
    assert schedule.block_costs(2, 128, 4096, False, 128, 200) == [32, 32]  # 1 of 2: unmeasured


def test_schedule_without_a_mask_is_round_robin():
    owned, loads, _ = _loads(1, 4, 1000, 1000, False, 192, 5)
    # 6 row blocks per head, 24 in all: program 1 takes the 2nd, 7th, 12th, 17th and 22nd.
    assert [b[1] for b in owned if b[0] == 1] == [1, 0, 5, 4, 3]
    assert len(set(loads)) <= 2


def test_a_schedule_read_under_graph_capture_is_held_and_a_new_one_refused(monkeypatch):
    args = (1, 3, 777, 777, True, 192, 128, 5, torch.device("cpu"))
    first = schedule.schedule(*args)  # built before the capture, as after a warm-up call
    monkeypatch.setattr(schedule, "_capturing", lambda device: True)
    assert schedule.schedule(*args) is first  # cached: no upload inside the capture
    assert schedule.held(first) is first
    schedule.schedule.cache_clear()  # the cache drops it; the graph still reads it
    assert any(pair is first for pair in schedule._HELD.values())
    with pytest.raises(RuntimeError, match="run one call of this shape before capturing"):
        schedule.schedule(*args)
    monkeypatch.setattr(schedule, "_capturing", lambda device: False)
    other = schedule.schedule(*args)
    assert schedule.held(other) is other
    assert not any(pair is other for pair in schedule._HELD.values())


def test_three_stages_at_d128_do_not_fit():
    q, k, v = make_inputs(Problem(1, 1, 64, 64, 128, dtype=torch.bfloat16), "cpu")
    with pytest.raises(ValueError, match="config: 3 stages x 2 consumers at head dim 128"):
        kernel.launch_forward(q, k, v, q, None, False, 0.1, config={"STAGES": 3})


def test_named_ring_barriers_past_the_sixteen_ids_are_refused():
    q, k, v = make_inputs(Problem(1, 1, 64, 64, 64, dtype=torch.bfloat16), "cpu")
    with pytest.raises(ValueError, match="5 stages from named barrier 8 need ids up to 17"):
        kernel.launch_forward(q, k, v, q, None, False, 0.1, config={"STAGES": 5, "FREE_BAR": 8})


@pytest.mark.parametrize("switch", ["LAZY", "Q_REGS", "NO_MAX"])
def test_switch_other_than_0_or_1_is_refused(switch):
    q, k, v = make_inputs(Problem(1, 1, 64, 64, 128, dtype=torch.bfloat16), "cpu")
    with pytest.raises(ValueError, match=f"{switch} must be 0 .* or 1 .*, got 2"):
        kernel.launch_forward(q, k, v, q, None, False, 0.1, config={switch: 2})


def test_max_free_softmax_only_where_it_paid():
    assert kernel.no_max(4, 32, 4096, 4096, 64, True) == 1  # +10%
    assert kernel.no_max(2, 16, 16384, 16384, 128, False) == 1  # +8%
    assert kernel.no_max(4, 32, 4096, 4096, 16, False) == 0  # d=16: -8%
    assert kernel.no_max(8, 16, 1024, 1024, 64, False) == 0  # a 92 us call: -3%, the redo
    assert kernel.no_max(8, 16, 1024, 1024, 64, True) == 0


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
    "d, stages, consumers, programs, free_bar, lazy, q_regs, no_max",
    [(64, 2, 3, 1, 0, 1, 0, 0), (64, 2, 3, 5, 0, 0, 0, 0), (64, 4, 3, 3, 0, 1, 0, 0),
     (64, 2, 2, 4, 0, 1, 0, 0), (128, 2, 2, 1, 8, 1, 1, 0), (128, 2, 2, 7, 8, 1, 1, 0),
     (16, 4, 3, 2, 0, 1, 0, 0), (32, 2, 2, 132, 0, 0, 1, 0),
     # the other way of handing ring slots back (of rescaling, of reading Q) at each head dim,
     # and every named id (4 stages)
     (64, 2, 3, 5, 8, 0, 1, 0), (64, 4, 3, 3, 8, 1, 0, 0), (128, 2, 2, 7, 0, 0, 0, 0),
     (128, 2, 2, 3, 8, 0, 1, 0), (128, 2, 2, 5, 8, 1, 0, 0),
     # the max-free softmax at each head dim, lazy or eager under the mask
     (64, 2, 3, 1, 0, 1, 0, 1), (64, 2, 3, 5, 0, 0, 0, 1), (128, 2, 2, 7, 8, 1, 1, 1),
     (16, 4, 3, 2, 0, 1, 0, 1), (32, 2, 2, 132, 0, 0, 1, 1), (128, 2, 2, 3, 0, 0, 0, 1)],
)  # fmt: skip
def test_direct_launch_writes_every_row(causal, n_q, n_k, d, stages, consumers, programs,
                                        free_bar, lazy, q_regs, no_max):  # fmt: skip
    # Few programs: each walks many row blocks of several heads, so Q buffers, barrier parities
    # (or named barriers' rounds) and the K/V ring carry across blocks; 1000 and 200 rows leave
    # idle consumers (192-row blocks), and causal blocks trim a consumer's last key tile.
    problem = Problem(2, 3, n_q, n_k, d, causal, torch.bfloat16)
    config = {"STAGES": stages, "CONSUMERS": consumers, "PROGRAMS": programs,
              "FREE_BAR": free_bar, "LAZY": lazy, "Q_REGS": q_regs, "NO_MAX": no_max}  # fmt: skip
    assert_forward_launch_writes_every_row(kernel.launch_forward, problem, config, DEVICE)


def _assert_lse(lse, q, k, causal, atol, rows=...):
    """The base-2 LSE (of ``rows``) against float64's natural log-sum-exp of the scaled
    scores."""
    want = reference_lse(q, k, is_causal=causal)[rows]
    torch.testing.assert_close(lse[rows].double() * math.log(2.0), want, rtol=0, atol=atol)


def _spy_redo(monkeypatch):
    """Record, for each redo pass, which rows left the kernel with a NaN LSE."""
    seen = []

    def spy(q, k, v, o, lse, causal, qk_scale):
        seen.append(lse.isnan().clone())
        redo.redo_nan_rows(q, k, v, o, lse, causal, qk_scale)

    monkeypatch.setattr(kernel, "redo_nan_rows", spy)
    return seen


@needs_hopper
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize(
    "d, lazy, no_max", [(64, 1, 0), (128, 1, 0), (128, 0, 0), (64, 1, 1), (64, 0, 1), (128, 1, 1)]
)
def test_rescale_when_later_keys_dominate(monkeypatch, causal, d, lazy, no_max):
    # Keys grow along the sequence, so each row's max rises by far more than the lazy threshold
    # (2^8) tile after tile: every warp must take the rescale (with NO_MAX, the row sums' guard
    # must fire and move the reference), or exp2(s - m) overflows.
    q, k, v = make_inputs(Problem(1, 2, 700, 900, d, causal, torch.bfloat16), DEVICE)
    k = (k.float() * torch.linspace(1, 60, 900, device=DEVICE)[:, None]).bfloat16()
    o = torch.full_like(q, float("nan"))
    lse = torch.full(q.shape[:3], float("nan"), device=DEVICE)
    seen = _spy_redo(monkeypatch)
    config = {"LAZY": lazy, "PROGRAMS": 3, "NO_MAX": no_max}
    kernel.launch_forward(q, k, v, o, lse, causal, d**-0.5, config=config)
    ref = reference_attention(q.double(), k.double(), v.double(), is_causal=causal)
    eager = reference_attention(q, k, v, is_causal=causal, dtype=torch.bfloat16)
    verdict = judge("growing keys", o, ref, eager)
    assert verdict.ok, str(verdict)
    _assert_lse(lse, q, k, causal, 1e-2)
    # Scores reach ~86 (base 2) in the last tiles, so a few rows' maxima jump past what a
    # rescale repairs (118) from one tile to the next: with NO_MAX the redo recomputes those.
    assert len(seen) == no_max


@needs_hopper
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("d, lazy", [(64, 1), (64, 0), (128, 1)])
def test_max_free_guard_rescales_within_the_kernel(monkeypatch, causal, d, lazy):
    # fp16 P overflows at 2^16. Keys growing 12-fold along the sequence raise each row's max by
    # ~40 (base 2) over its first tile's, a few units a tile: unless the row sums' guard fires
    # and rescales exactly, P passes 2^16 and the output is inf or NaN. No jump comes near what
    # needs the redo (118), so every row must leave the kernel right.
    q, k, v = make_inputs(Problem(2, 2, 700, 1000, d, causal, torch.float16), DEVICE)
    k = (k.float() * torch.linspace(1, 12, 1000, device=DEVICE)[:, None]).half()
    o = torch.full_like(q, float("nan"))
    lse = torch.full(q.shape[:3], float("nan"), device=DEVICE)
    seen = _spy_redo(monkeypatch)
    config = {"LAZY": lazy, "PROGRAMS": 3, "NO_MAX": 1}
    kernel.launch_forward(q, k, v, o, lse, causal, d**-0.5, config=config)
    assert len(seen) == 1 and not seen[0].any()
    ref = reference_attention(q.double(), k.double(), v.double(), is_causal=causal)
    eager = reference_attention(q, k, v, is_causal=causal, dtype=torch.float16)
    verdict = judge("growing keys, fp16", o, ref, eager)
    assert verdict.ok, str(verdict)
    _assert_lse(lse, q, k, causal, 1e-2)


@needs_hopper
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("d, lazy", [(64, 1), (64, 0), (128, 1)])
def test_max_free_rows_past_repair_are_redone(monkeypatch, causal, d, lazy):
    # One key (700, in key tile 5: no mask for rows past 767) scores ~430 (base 2) above
    # everything else for a few rows: their P overflows to inf, which no rescale repairs, so the
    # kernel must hand them to the redo. Along the same direction every other row sees it at
    # +-50, which the guard's exact rescale handles in the kernel.
    n = 900
    q, k, v = make_inputs(Problem(2, 2, n, n, d, causal, torch.bfloat16), DEVICE)
    rows = [800, 899] if causal else [5, 150, 800, 899]
    q[:, :, rows, 0] = 8.0
    k[:, :, 700, 0] = 300.0
    o = torch.full_like(q, float("nan"))
    lse = torch.full(q.shape[:3], float("nan"), device=DEVICE)
    seen = _spy_redo(monkeypatch)
    config = {"LAZY": lazy, "PROGRAMS": 5, "NO_MAX": 1}
    kernel.launch_forward(q, k, v, o, lse, causal, d**-0.5, config=config)
    assert len(seen) == 1 and seen[0][:, :, rows].all()
    ref = reference_attention(q.double(), k.double(), v.double(), is_causal=causal)
    eager = reference_attention(q, k, v, is_causal=causal, dtype=torch.bfloat16)
    verdict = judge("a score past repair", o, ref, eager)
    assert verdict.ok, str(verdict)
    _assert_lse(lse, q, k, causal, 1e-2)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_redo_recomputes_the_blocks_of_nan_rows_and_no_others(causal, dtype):
    # The redo pass alone (under the interpreter on CPU): rows whose LSE is NaN, and the rest of
    # their block of rows, get O and LSE recomputed; every other block keeps what it held
    # (fresh random values here, which no recomputation would reproduce).
    q, k, v = make_inputs(Problem(2, 2, 150, 130, 64, causal, dtype), DEVICE)
    o = torch.randn_like(q)
    lse = torch.randn(q.shape[:3], device=DEVICE)
    bad = torch.zeros(q.shape[:3], dtype=torch.bool, device=DEVICE)
    bad[0, 1, [0, 37, 149]] = True
    bad[1, 0, 64:90] = True
    lse[bad] = float("nan")
    o_before, lse_before = o.clone(), lse.clone()
    redo.redo_nan_rows(q, k, v, o, lse, causal, 64**-0.5 / math.log(2.0))
    block = redo.tiles()["BLOCK_M"]
    redone = bad.reshape(2, 2, -1).clone()
    for start in range(0, 150, block):
        redone[:, :, start : start + block] = bad[:, :, start : start + block].any(-1, keepdim=True)
    assert torch.equal(o[~redone], o_before[~redone])
    assert torch.equal(lse[~redone], lse_before[~redone])
    ref = reference_attention(q.double(), k.double(), v.double(), is_causal=causal)
    eager = reference_attention(q, k, v, is_causal=causal, dtype=dtype)
    verdict = judge("redone rows", o[redone], ref[redone], eager[redone])
    assert verdict.ok, str(verdict)
    _assert_lse(lse, q, k, causal, 1e-4, redone)


@needs_hopper
@pytest.mark.parametrize("causal", [False, True])
def test_broadcast_batch_and_heads_are_read_through_the_kernel(monkeypatch, causal):
    calls = _spy(monkeypatch)
    assert_broadcast_kv_is_correct(kernel.attention, causal, DEVICE)
    assert calls == [True]
