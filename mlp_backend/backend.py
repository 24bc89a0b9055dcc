"""The backends' public names in one place (``mlp_backend.backends`` holds a class per array library)."""
from .backends import (BACKENDS, CLASSES, Backend, Workspace, available_backends, backend_class, get_backend,  # noqa: F401
                       library_name, register, to_numpy)
