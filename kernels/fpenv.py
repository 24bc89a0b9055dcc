"""The calling thread's floating-point environment while ``fit`` trains: subnormal numbers flushed to zero.

An x86 core computes with a subnormal number (below 1.2e-38 in float32, 2.2e-308 in float64), or makes one, through
a microcode assist many times slower than the arithmetic itself. Late in training a network's tiny gradients make
them in the products and kernels of every step: on a 2-core Xeon the default job's epochs grew from 1.5-1.6 to
2.0-2.2 s by the fifteenth, and stayed at 1.4-1.6 s with them flushed (bench/RESULTS.md). ``subnormals_flushed()`` sets the flush-to-zero and denormals-are-zero bits of the SSE control
register (MXCSR) of the calling thread for the length of a ``with`` block, as XLA's CPU code runs throughout, and
restores the register after: a result that would be subnormal is zero, a subnormal input reads as zero. Threads
that libraries started before (OpenBLAS's, OpenMP's) keep their own register. Elsewhere than on x86-64 it does
nothing.
"""
from __future__ import annotations

import contextlib
import platform
import warnings

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

X86 = platform.machine().lower() in ("x86_64", "amd64")
FLUSH_BITS = 0x8040  # MXCSR's flush-to-zero (bit 15) and denormals-are-zero (bit 6)


def _mxcsr_call(builder, name, pointer):
    fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [ir.IntType(8).as_pointer()]),
                                        name)
    builder.call(fn, [builder.bitcast(pointer, ir.IntType(8).as_pointer())])


@intrinsic
def _stmxcsr(typingctx):
    def codegen(context, builder, signature, args):
        slot = cgutils.alloca_once(builder, ir.IntType(32))
        _mxcsr_call(builder, "llvm.x86.sse.stmxcsr", slot)
        return builder.load(slot)
    return types.uint32(), codegen


@intrinsic
def _ldmxcsr(typingctx, value):
    def codegen(context, builder, signature, args):
        slot = cgutils.alloca_once(builder, ir.IntType(32))
        builder.store(args[0], slot)
        _mxcsr_call(builder, "llvm.x86.sse.ldmxcsr", slot)
        return context.get_dummy_value()
    return types.void(types.uint32), codegen


@njit(cache=True)
def read_mxcsr():
    return _stmxcsr()


@njit(cache=True)
def write_mxcsr(value):
    _ldmxcsr(value)


_UNAVAILABLE: list = []  # why the register cannot be read here, once known


def _register():
    """The calling thread's MXCSR, or None where it cannot be read (not x86-64; the compile failed: warned once)."""
    if not X86 or _UNAVAILABLE:
        return None
    try:
        return read_mxcsr()
    except Exception as e:  # a Numba or LLVM that does not compile the intrinsic: training goes on unflushed
        _UNAVAILABLE.append(f"{type(e).__name__}: {e}")
        warnings.warn(f"subnormal numbers are not flushed to zero while training ({_UNAVAILABLE[0]}): late epochs "
                      "may run slower on x86 cores", RuntimeWarning, stacklevel=3)
        return None


@contextlib.contextmanager
def subnormals_flushed():
    """Subnormal results and inputs as zero on this thread inside the block (x86-64; elsewhere nothing changes)."""
    before = _register()
    if before is None:
        yield
        return
    write_mxcsr(np.uint32(before | FLUSH_BITS))
    try:
        yield
    finally:
        write_mxcsr(before)
