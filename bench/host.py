"""Host time at small shapes: eager calls against the same calls replayed from a CUDA graph.

``python -m bench.host [--out DIR] [--stages NAME ...] [--workload B,H,N,D ...]`` times, for
SDPA's cuDNN backend and each stage (default: v10_persistent), the forward and the forward +
backward (bf16, causal and not) three ways: the host's time to issue one call (wall time of
many calls with no sync between them), the call end to end (``do_bench``: the host's time where
it outlasts the GPU's), and a replay of the call captured in a CUDA graph (the GPU's time
alone). Where the first is above the last the call is host-bound, and a graph (or a larger
batch) is what makes it fast. Prints a table; writes ``host.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import triton

from common import registry

WORKLOADS = [(1, 1, 256, 64), (4, 32, 1024, 64), (2, 16, 1024, 128), (8, 16, 2048, 128)]


def issue_us(fn, calls: int = 200) -> float:
    """Microseconds the host takes to issue one call, with the GPU's queue not yet full."""
    fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    elapsed = time.perf_counter() - start
    torch.cuda.synchronize()
    return elapsed / calls * 1e6


def graphed(fn):
    """``fn`` captured in a CUDA graph after a warm-up on a side stream (compiles, autotunes,
    fills caches, as ``torch.cuda.graph`` asks); returns the replay and what the captured call
    returned (tensors each replay rewrites)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = fn()
    return graph.replay, out


def measure(attention, shape, causal: bool, backward: bool) -> dict:
    B, H, N, D = shape
    q, k, v = (
        torch.randn(B, H, N, D, device="cuda", dtype=torch.bfloat16, requires_grad=backward)
        for _ in range(3)
    )
    do = torch.randn_like(q)

    def call():
        if not backward:
            with torch.no_grad():
                return attention(q, k, v, is_causal=causal)
        out = attention(q, k, v, is_causal=causal)
        return torch.autograd.grad(out, (q, k, v), do)  # no .grad to accumulate into

    row = {"issue_us": issue_us(call)}
    row["eager_us"] = triton.testing.do_bench(call, warmup=10, rep=100) * 1e3
    row["graph_us"] = triton.testing.do_bench(graphed(call)[0], warmup=10, rep=100) * 1e3
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.host", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("results/bench"))
    parser.add_argument("--stages", nargs="*", default=["v10_persistent"])
    parser.add_argument("--workload", nargs="*", default=None, help="B,H,N,D (bf16)")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        parser.error("needs a CUDA GPU: host time against GPU time means nothing elsewhere")
    from torch.nn.attention import SDPBackend, sdpa_kernel

    def cudnn(q, k, v, is_causal):
        with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
            return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=is_causal)

    provs = {"cudnn": cudnn, **{s: registry.get(s).attention for s in args.stages}}
    shapes = (
        [tuple(int(x) for x in w.split(",")) for w in args.workload] if args.workload else WORKLOADS
    )
    rows = []
    for shape in shapes:
        for causal in (False, True):
            for backward in (False, True):
                for name, fn in provs.items():
                    r = measure(fn, shape, causal, backward)
                    rows.append({"provider": name, "shape": shape, "causal": causal,
                                 "backward": backward, **r})  # fmt: skip
                    print_row(rows[-1])
    args.out.mkdir(parents=True, exist_ok=True)
    device = torch.cuda.get_device_name()
    (args.out / "host.json").write_text(json.dumps({"device": device, "rows": rows}, indent=1))
    return 0


def print_row(r: dict) -> None:
    shape = "x".join(map(str, r["shape"])) + (" causal" if r["causal"] else "")
    mode = "fwd+bwd" if r["backward"] else "fwd"
    print(
        f"{shape:>22} {mode:>7} {r['provider']:>15}: issue {r['issue_us']:7.1f} us, "
        f"eager {r['eager_us']:7.1f} us, graph replay {r['graph_us']:7.1f} us",
        flush=True,
    )


if __name__ == "__main__":
    raise SystemExit(main())
