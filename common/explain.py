"""``python -m variants.<stage>``: the runnable form of a stage's story.

Prints what the stage does, checks it against the float64 reference on a problem that fits the
machine, times it beside its parent and PyTorch (eager math and SDPA), and states the takeaway.
"""

from __future__ import annotations

import torch

from common import registry
from common.reference import reference_attention
from common.testing import Problem, judge, make_inputs, torch_matmul_precision
from common.timing import attention_flops, bench_ms


def main(name: str) -> int:
    stage = registry.get(name)
    if not stage.available:
        print(f"{name} is unavailable: {stage.error}")
        return 1
    on_gpu = torch.cuda.is_available()
    device = "cuda" if on_gpu else "cpu"
    p = Problem(2, 8, 1024, 1024, 64) if on_gpu else Problem(1, 2, 32, 32, 64)
    where = (
        torch.cuda.get_device_name()
        if on_gpu
        else "CPU, Triton interpreter (times are not GPU times)"
    )
    print(f"{stage.name}: {stage.title}\n")
    print(f"  the idea:     {stage.idea}")
    print(f"  builds on:    {stage.parent or '(first stage)'}")
    print(f"  supports:     {stage.capabilities.describe()}")
    print(f"  problem:      (B, H, N, N, d) = {p} on {where}\n")

    q, k, v = make_inputs(p, device)
    out = stage.attention(q, k, v)
    ref = reference_attention(q, k, v)
    with torch_matmul_precision(stage.capabilities):
        verdict = judge(stage.name, out, ref, reference_attention(q, k, v, dtype=p.dtype))
    print(f"  correct:      {'yes' if verdict.ok else 'NO'} — {verdict}")

    flops = attention_flops(p.batch, p.heads, p.n_q, p.n_k, p.head_dim)
    rows = [(stage.name, bench_ms(lambda: stage.attention(q, k, v), device))]
    if stage.parent:
        parent = registry.get(stage.parent)
        if parent.available:
            rows.append((parent.name, bench_ms(lambda: parent.attention(q, k, v), device)))
    rows.append(
        (
            "eager softmax(QK^T)V",
            bench_ms(lambda: reference_attention(q, k, v, dtype=p.dtype), device),
        )
    )
    rows.append(
        (
            "torch SDPA",
            bench_ms(lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v), device),
        )
    )
    ours = rows[0][1]
    for label, ms in rows:
        rate = flops / ms / 1e9
        print(f"  {label:24} {ms:10.3f} ms  {rate:9.3g} TFLOP/s  ({ms / ours:6.2f}x the time)")
    print(f"\n  takeaway:     {stage.takeaway}")
    return 0 if verdict.ok else 1
