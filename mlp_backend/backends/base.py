"""What every backend does, written against the Array API: the behaviour of a library that offers nothing more.

A library's own class (``numpy.py``, ``strict.py``, ``torch.py``, ``cupy.py``) overrides only what it does
differently: its device names, faster transfers, ``out=`` arguments, random draws on its device, and how its
arrays travel between MPI ranks.
"""
from __future__ import annotations

import contextlib
import importlib
import operator

import array_api_compat
import numpy as np

DTYPES = ("float32", "float64")


class Backend:
    """An array library bound to a device, a default dtype and a seeded random generator.

    Random numbers are drawn on the host from one NumPy generator and moved to the device, so a seed gives the
    same initial weights, shuffles and dropout masks on every backend that does not draw on its device.
    """

    name = ""               # the library's name (``mlp train --backend``)
    namespace = ""          # the module of its Array API namespace
    fused_kernels = None    # its module of Numba kernels in kernels/ (``cpu``, ``torch_cpu``, ``cuda``), or None
    writes_into = False     # whether results can be written into existing arrays (``out=``)
    assigns_by_index = False  # whether ``a[i] = v`` takes an integer array ``i`` of the library's (on its device)
    communicator = "mpi-staged"  # how its arrays travel between ranks by default (mlp_backend.distributed)
    install = ""            # how to install the library, for the error when it is missing
    records_graphs = False  # whether ``capture`` can record a training step for replay (CUDA graphs)
    replays_calls = False  # whether a training step can be replayed as its calls bound to their arrays (StepCalls)

    def __init__(self, device=None, dtype: str = "float32", seed: int | None = 0):
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
        try:
            self.xp = importlib.import_module(self.namespace)
        except ImportError as e:
            raise ImportError(f"backend {self.name!r} needs its library installed ({e})"
                              + (f": {self.install}" if self.install else "")) from e
        self.dtype = dtype
        self.device = self.resolve_device(device)
        self.reseed(seed)

    def __repr__(self):
        return f"{type(self).__name__}(device={self.device!r}, dtype={self.dtype!r}, seed={self.seed!r})"

    # -- the library's arrays (class-level: no instance needed) ----------------------------------
    @classmethod
    def owns(cls, x) -> bool:
        """Whether ``x`` is an array of this library."""
        raise NotImplementedError

    @classmethod
    def host_copy(cls, x) -> np.ndarray:
        """A host NumPy copy (or view) of one of this library's arrays, from any device."""
        return np.asarray(x)

    def resolve_device(self, device):
        return device

    # -- random numbers -------------------------------------------------------------------------
    def reseed(self, seed: int | None):
        self.seed = seed
        self.rng = np.random.default_rng(seed)

    def uniform(self, shape, low, high, dtype=None):
        return self.asarray(self.rng.uniform(low, high, size=shape), dtype=dtype)

    def normal(self, shape, std, dtype=None):
        return self.asarray(self.rng.normal(0.0, std, size=shape), dtype=dtype)

    def permutation(self, n: int) -> np.ndarray:
        return self.rng.permutation(n)

    def keep_mask(self, shape, keep: float, dtype, out=None, draws=None):
        """Dropout mask in the backend's dtype: 1/keep where kept, 0 where dropped (inverted dropout), drawn on
        the host. ``out`` (the mask) and ``draws`` (float64, the uniform draws) are arrays a library that writes
        in place may reuse."""
        mask = self.asarray((self.rng.random(shape) < keep) / keep)
        if out is None:
            return mask
        out[...] = mask
        return out

    def bind_keep_mask(self, keep: float, out, draws):
        """``keep_mask`` into ``out`` (drawing into ``draws``) as bound calls, each call a new mask from the same
        generator, or None (this backend binds nothing)."""
        return None

    def state(self) -> dict:
        """The host generator's state (JSON-serialisable) for checkpoints and exact resume."""
        return self.rng.bit_generator.state

    def set_state(self, state: dict):
        self.rng.bit_generator.state = state

    # -- arrays ---------------------------------------------------------------------------------
    def float_dtype(self, dtype=None):
        return getattr(self.xp, dtype or self.dtype)

    def zeros(self, shape, dtype=None):
        return self.xp.zeros(shape, dtype=self.float_dtype(dtype), device=self.device)

    def asarray(self, x, dtype=None):
        """Host data (NumPy, lists) or an array of this backend, as a float array on this device."""
        return self._convert(x, dtype or self.dtype)

    def asarray_int(self, x):
        return self._convert(x, "int64")

    def _convert(self, x, dtype: str):
        if not isinstance(x, (np.ndarray, np.generic, list, tuple, int, float)):
            self.check_same(x)
            want = getattr(self.xp, dtype)
            return x if x.dtype == want else self.xp.astype(x, want)
        x = np.asarray(x)
        if x.dtype != np.dtype(dtype):
            x = x.astype(dtype)
        return self.from_host(x)

    def from_host(self, x: np.ndarray):
        """A host array of the right dtype on this backend's device."""
        return self.xp.asarray(x, device=self.device)

    def check_same(self, x, what="array"):
        """Raise a clear error when ``x`` is from another library or device than this backend."""
        from . import library_name

        name = library_name(x)
        if not self.owns(x):
            raise TypeError(
                f"{what} is a {name} array but this model lives on the {self.name!r} backend; "
                f"move one of them (model.to({name!r}) or convert the data)")
        if array_api_compat.device(x) != self.device:
            raise ValueError(f"{what} is on device {array_api_compat.device(x)} but this model is on {self.device}")

    def compute(self, name: str, *args, out=None, **kwargs):
        """``xp.<name>(*args, **kwargs)``, written into ``out`` when given (here: computed, then copied in; a
        library that writes in place overrides this). ``name`` must mean the same in the Array API and in
        NumPy (matmul, take, sum, multiply, argmax, equal, ...)."""
        result = getattr(self.xp, name)(*args, **kwargs)
        if out is None:
            return result
        out[...] = result
        return out

    def take_rows(self, a, idx, out=None):
        """Rows ``idx`` of ``a`` (the batch gather), written into ``out`` when given."""
        return self.compute("take", a, idx, axis=0, out=out)

    def matmul_bias_act(self, ops, x, w, b, act: str, alpha: float = 0.0, out=None):
        """``act(x @ w + b)`` (``b`` may be None), into ``out`` when given: a Dense layer's forward. Here the product,
        then one fused elementwise pass over it in place; a backend whose products take an epilogue does both in
        one kernel (CuPy while recording a step)."""
        z = self.compute("matmul", x, w, out=out)
        return ops.bias_act(self.xp, z, b, act, alpha)

    # -- calls bound to their arrays -------------------------------------------------------------
    # A training step makes the same calls on the same arrays at every step (its workspace's). Where a backend
    # binds them, a layer resolves its calls once and then makes just those (``Workspace.planned``): no checks, no
    # choice of kernel, no Python in between. A bound call writes into the arrays it was given, as the call
    # it stands for does.
    def bind(self, name: str, *args, out=None):
        """``compute(name, *args, out=out)`` as a call without arguments (None: this backend binds nothing)."""
        return None

    def bind_matmul_bias_act(self, ops, x, w, b, act: str, alpha: float = 0.0, out=None):
        """``matmul_bias_act`` into ``out`` as bound calls, or None."""
        from ..kernels import bind

        calls = (self.bind("matmul", x, w, out=out), bind(ops.bias_act, self.xp, out, b, act, alpha))
        return None if out is None or None in calls else calls

    def graph_support(self) -> str | None:
        """Why a training step cannot be recorded and replayed here (None: it can; see ``capture``)."""
        return None if self.records_graphs else f"{self.name} arrays have no graphs to record (CuPy's CUDA graphs do)"

    def graph_products(self):
        """A context in which matrix products are those a recorded step uses (``capture``): ``StepGraph`` runs its
        first, eager step in it, so that a run resumed from a checkpoint (whose first step is eager) and an
        uninterrupted one (where the same step is a replay) compute it alike."""
        return contextlib.nullcontext()

    def capture(self, step):
        """Record ``step()`` once without running it and return a function that replays the recording: no Python
        runs in a replay, so ``step`` must read everything that changes between calls from arrays on the device.
        Only where ``graph_support()`` is None."""
        raise NotImplementedError(self.graph_support())

    def put_at(self, array, index, value):
        """``array[index] = value`` for ``index`` a one-element integer array of this backend (a step program's
        counter), without reading the index back: directly where the library assigns through its own index arrays
        (``assigns_by_index``), else through ``where`` over the whole (small) array, as the Array API has no
        integer-array assignment."""
        if self.assigns_by_index:
            array[index] = value
            return
        xp = self.xp
        at = xp.arange(array.shape[0], device=self.device) == index
        array[...] = xp.where(at, xp.astype(xp.asarray(value, device=self.device), array.dtype), array)

    def upload(self, host, out):
        """Host data (NumPy) written into ``out``, an existing array of this backend."""
        out[...] = self.xp.astype(self.xp.asarray(np.asarray(host), device=self.device), out.dtype)
        return out

    def copy(self, x, out=None):
        """A copy of ``x``: a new array, or ``x`` written into ``out``."""
        if out is None:
            return self.xp.asarray(x, copy=True)
        out[...] = x
        return out

    def to_host_result(self, value):
        """What a host caller gets back: a NumPy array (predict and friends given NumPy input)."""
        return np.asarray(self.host_copy(value))

    # -- between MPI ranks ------------------------------------------------------------------------
    @classmethod
    def host_view(cls, array):
        """A NumPy view of ``array`` that MPI can read and write in place, or None (a device array)."""
        return None

    @classmethod
    def stage(cls, array, buffers: dict) -> np.ndarray:
        """``array``'s values in a host buffer kept in ``buffers`` (one per shape and dtype), for MPI."""
        values = cls.host_copy(array)
        key = ("host", values.shape, values.dtype)
        if key not in buffers:
            buffers[key] = np.empty_like(values)
        np.copyto(buffers[key], values)
        return buffers[key]

    @classmethod
    def unstage(cls, host, array):
        """The host buffer's values written back into ``array``."""
        xp = array_api_compat.array_namespace(array)
        array[...] = xp.asarray(host, device=array_api_compat.device(array))

    @classmethod
    def rank_device(cls, device):
        """The device a rank of a distributed run trains on, when none was named."""
        return device


class Workspace:
    """Arrays a training step reuses from one step to the next, by (owner, name, shape, dtype).

    A step that takes its arrays from here allocates nothing once it has run at a batch shape: the first run
    makes them, later runs write into them (``Backend.compute(..., out=)``). That is what replaying a step as
    a CUDA graph needs, and on the CPU it spares the allocator. Only libraries that write into existing
    arrays (``Backend.writes_into``) get arrays; elsewhere ``get`` answers None and the caller allocates.

    It also keeps what a layer planned (``keep_plan``): the calls its step made, bound to these arrays
    (``Backend.bind``, ``kernels.bind``), which it then makes alone while its inputs are the same objects
    (``planned``). A layer that plans nothing (an activation or Softmax layer, a layer of the user's) is, where
    steps are replayed as their calls (``hosts_calls``), one host call whose result is copied into an array of here
    (``host``).
    """

    PLANS_PER_CALL = 4  # a full batch's and the last, partial batch's, and a few more; then no more plans

    def __init__(self, be: Backend):
        self.be = be
        self._arrays: dict = {}
        self._plans: dict = {}
        self.tape: Tape | None = None  # while set, the planned calls made are also written on it
        self.hosts_calls = False  # set where steps are replayed as their calls (StepCalls): see host

    def planned(self, owner, name: str, key: tuple):
        """What ``owner`` kept for its call ``name`` (``keep_plan``) with the very objects of ``key``, else None."""
        for kept, plan in self._plans.get((id(owner), name), ()):
            if len(kept) == len(key) and all(map(operator.is_, kept, key)):
                break
        else:
            plan = None
        if plan is None and self.tape is not None:  # none kept, or these arrays could not be planned
            self.tape.miss(f"{type(owner).__name__}.{name} has no bound calls for these arrays")
        return plan

    def run(self, calls):
        """Make a plan's bound calls (and write them on the tape, if one is set)."""
        for call in calls:
            call()
        if self.tape is not None:
            self.tape.calls.extend(calls)

    def host(self, owner, name: str, compute):
        """``compute()``, a call of ``owner``'s written with array functions, with its result (an array, or None: it
        writes into arrays that are the same at every step) copied into an array of here: the calls after it then see
        the same array at every step, as a planned call's. While a tape records the step it goes on it as one call
        that computes and copies again."""
        result = compute()
        out = None if result is None else self.get(owner, f"{name} result", result.shape, result.dtype)
        if out is None:
            call = compute
        else:
            self.be.copy(result, out=out)

            def call():
                self.be.copy(compute(), out=out)
        if self.tape is not None:
            self.tape.calls.append(call)
        return result if out is None else out

    def keep_plan(self, owner, name: str, key: tuple, make):
        """Keep what ``make()`` returns (its bound calls and the arrays they write; None: these objects cannot be
        planned) for ``owner``'s call ``name`` with the objects of ``key``. A call whose objects change from step to
        step (a layer fed new arrays each time) stops being planned after a few: ``make`` is not called again."""
        plans = self._plans.setdefault((id(owner), name), [])
        if len(plans) < self.PLANS_PER_CALL:
            plans.append((key, make()))

    def get(self, owner, name: str, shape, dtype=None):
        if not self.be.writes_into:
            return None
        key = (id(owner), name, shape, dtype)
        array = self._arrays.get(key)
        if array is None:
            xp = self.be.xp
            array = self._arrays[key] = xp.empty(shape, dtype=dtype or self.be.float_dtype(), device=self.be.device)
        return array

    def __len__(self):
        return len(self._arrays)


class Tape:
    """The calls one training step makes, each bound to its arrays, in order: the step again without the Python
    around them (``StepCalls``). A layer's planned calls go on it through ``Workspace.run``; the step's own ops
    through ``ops(kernel_set)``. ``missing`` says what the step computed that is not on it (then it is not
    replayed)."""

    def __init__(self):
        self.calls: list = []
        self.missing: str | None = None

    def miss(self, what: str):
        self.missing = self.missing or what

    def ops(self, kernel_set):
        """``kernel_set`` whose ops, called, are bound to their arguments, written on this tape and then made."""
        return _TapedOps(kernel_set, self)


class _TapedOps:
    def __init__(self, kernel_set, tape: Tape):
        self._kernel_set, self._tape = kernel_set, tape

    def __getattr__(self, name):
        from ..kernels import bind

        op, tape = getattr(self._kernel_set, name), self._tape

        def taped(*args, **kwargs):
            call = bind(op, *args, **kwargs)
            if call is None:
                tape.miss(f"the {name} op has no bound form for these arrays")
                return op(*args, **kwargs)
            tape.calls.append(call)
            return call()
        return taped
