"""Names used in the public signatures' annotations, where an argument may come from several libraries."""
from __future__ import annotations

import os
from typing import Any, Union

ArrayLike = Any
"""An array of any supported library (NumPy, CuPy, torch, array-api-strict), or what ``numpy.asarray`` takes."""

PathLike = Union[str, os.PathLike]
"""A file or folder path."""
