"""Repeat launches of a Triton kernel without Triton's per-call dispatch.

``kernel[grid](*args, **constexprs)`` runs Triton's JIT dispatch on every call: it specialises
every argument (value 1, divisibility by 16, pointer alignment), builds a cache key string, looks
up the device and stream and checks the kernel's globals, before the compiled kernel's own
launcher runs. On an H200's host that dispatch took about 35 us per launch, and a training step
of the Hopper stages makes four (the forward, the backward's prepare pass, the backward, dQ's
cast): skipping it took 130-160 us (13-16%) off v10's step at 256-1024 tokens, where the GPU
waits for the host (``bench/results/h200/2026-11-23-ab-jit-dispatch.log``: medians of 10
interleaved rounds; O, dK and dV identical, dQ to the order of its atomic adds).

``Launcher(kernel)[grid](...)`` makes the same launch. The first call of each *call key* goes
through Triton's dispatch and keeps the compiled kernel it returns; a repeat call hands the
arguments straight to that kernel's launcher. The key holds everything the dispatch specialises
on and more: every int, bool and constexpr by value, a float by type only (Triton passes floats
as fp32 unspecialised), a tensor by dtype and 16-byte alignment, a TMA descriptor by its base's
dtype and alignment, block shape, layout and rank, plus the current device. So a repeat key
compiles to the same kernel, and anything else takes the full dispatch (and a new entry).
Two things a repeat does not see: a change to the globals a kernel read since it compiled
(Triton's dispatch checks; these kernels read module constants, set at import), and a change of
Triton's debug or instrumentation knobs between calls. Under Triton's interpreter (no compiled
kernels) every call takes the plain path.
"""

from __future__ import annotations

import torch
from triton.experimental.gluon.nvidia.hopper import TensorDescriptor
from triton.runtime.driver import driver
from triton.runtime.jit import JITFunction

MAX_KEYS = 512  # distinct call keys kept per kernel (one per shape class and layout)


def _spec(arg):
    """What of ``arg`` the call key holds."""
    if type(arg) is int:  # most arguments (shapes, strides); a bool is keyed apart from 0 and 1
        return arg
    if isinstance(arg, torch.Tensor):
        return (arg.dtype, arg.data_ptr() % 16 == 0)
    if isinstance(arg, TensorDescriptor):
        base = arg.base
        return (base.dtype, base.data_ptr() % 16 == 0, tuple(arg.block_shape), arg.layout,
                len(arg.shape), arg.padding)  # fmt: skip
    if isinstance(arg, float):
        return float
    return (type(arg), arg)  # bools, None, other scalars: by type and value


class Launcher:
    """``kernel[grid](*args, **kwargs)`` with Triton's dispatch done once per call key. Runtime
    arguments are passed positionally, constexprs and options (``num_warps``) by keyword."""

    def __init__(self, kernel):
        self.kernel = kernel
        self.compiled = {}
        # (name, default) of every parameter, in order: a compiled kernel's launcher takes all of
        # them. None under the interpreter, whose kernels are not JITFunctions.
        jit = isinstance(kernel, JITFunction)
        self.params = [(p.name, p.default) for p in kernel.params] if jit else None

    def __getitem__(self, grid):
        return lambda *args, **kwargs: self.launch(tuple(grid), args, kwargs)

    def launch(self, grid, args, kwargs):
        if self.params is None:
            return self.kernel[grid](*args, **kwargs)
        key = (driver.active.get_current_device(), tuple(map(_spec, args)),
               tuple(kwargs.items()))  # fmt: skip
        compiled = self.compiled.get(key)
        if compiled is None:
            compiled = self.kernel[grid](*args, **kwargs)
            if len(self.compiled) >= MAX_KEYS:
                self.compiled.clear()
            self.compiled[key] = compiled
            return compiled
        values = [*args]
        for name, default in self.params[len(args) :]:
            values.append(kwargs.get(name, default))
        compiled[(*grid, 1, 1)[:3]](*values)
        return compiled
