"""What a stage declares it supports. The shared input checks read this, so a stage never has
to repeat them, and the conformance suite draws its problems from it."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Capabilities:
    dtypes: tuple[torch.dtype, ...]
    min_head_dim: int
    max_head_dim: int
    # Longest key (and query) sequence the stage accepts; None means "limited only by memory".
    max_seq_len: int | None
    causal: bool
    backward: bool
    # How a float32 matmul is done on the GPU: "ieee" (plain fp32 FMAs) or "tf32" (tensor cores,
    # 10-bit mantissa inputs). The tests budget fp32 error against PyTorch run the same way.
    fp32_matmul: str = "ieee"
    # Whether query and key lengths may differ (causal mask is top-left aligned, as in SDPA).
    cross_lengths: bool = True
    # Longest sequence the CPU suite gives this stage under Triton's interpreter, which runs every
    # program and every loop step serially in numpy (v01's per-key loop makes N=130 take ~90 s).
    interpreter_max_seq_len: int | None = None
    # False where the backward sums dQ with atomics (v07): the order of the adds then depends on
    # timing, so dQ may differ in its last bits between runs; dK, dV and the output do not.
    deterministic_dq: bool = True

    def describe(self) -> str:
        names = ", ".join(str(d).removeprefix("torch.") for d in self.dtypes)
        seq = "any" if self.max_seq_len is None else f"<= {self.max_seq_len}"
        return (
            f"dtypes {names}; head_dim {self.min_head_dim}..{self.max_head_dim}; seq {seq}; "
            f"causal {'yes' if self.causal else 'no'}; backward {'yes' if self.backward else 'no'}"
        )


@functools.cache
def sm_major(device_index: int) -> int:
    """The major compute capability of a CUDA device (9 on Hopper), looked up once per device:
    ``torch.cuda.get_device_capability`` re-reads the device's properties at every call, 13 us of
    host time on an H200's host, and the Hopper stages asked twice per training step."""
    return torch.cuda.get_device_capability(device_index)[0]
