"""The backends' public names in one place (``mlp_backend.backends`` holds a class per array library)."""
from .backends import (BACKENDS, CLASSES, Backend, Tape, Workspace, available_backends, backend_class,  # noqa: F401
                       get_backend, library_name, register, to_numpy)
