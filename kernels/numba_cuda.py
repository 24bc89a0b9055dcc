"""``numba.cuda`` for the CUDA kernels (``cuda.py``, ``gemm.py``), and the ``overload`` its front end inlines.

numba-cuda registers an implementation for ``np.row_stack`` as it loads (``numba/cuda/np/arrayobj.py``), a name
NumPy 2.5 removed; its import then fails (numba-cuda #907, closed as not to be fixed in numba-cuda). ``row_stack``
was NumPy's alias of ``vstack``: for the load alone NumPy has that alias back, then loses it again, so nothing else
sees a changed NumPy.

numba-cuda 0.2x and later compile with a front end of their own, which inlines only overloads registered through
their own ``numba.cuda.extending``: the element functions are registered there too (``jit.register``).
"""
import importlib

import numpy as np


def _load():
    if hasattr(np, "row_stack"):
        from numba import cuda

        return cuda
    np.row_stack = np.vstack
    try:
        from numba import cuda

        try:  # where the registration is, should numba-cuda load it after numba.cuda itself
            importlib.import_module("numba.cuda.np.arrayobj")
        except ImportError:  # the simulator, or numba's own numba.cuda, has no such module
            pass
    finally:
        del np.row_stack
    return cuda


def _extension_api():
    """The ``overload`` of numba-cuda's own front end, with the element functions registered through it; numba's
    where numba.cuda is numba's built-in target or the simulator (the registrations ``jit.py`` made on import serve
    the CUDA target there)."""
    try:
        from numba.cuda.core.errors import TypingError
        from numba.cuda.extending import overload
    except ImportError:
        from numba.extending import overload

        return overload
    from . import jit

    jit.register(overload, TypingError, "cuda")
    return overload


cuda = _load()
overload = _extension_api()
