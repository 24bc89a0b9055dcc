"""Griffe extension for the API reference, which reads the source without importing it:

- a docstring completed at import (the estimators' shared parameters, ``{parameters}``) is read from the imported
  object instead;
- the docstrings' Sphinx roles (``:class:`~mlp_backend.History```, ``:meth:`fit```) are shown as code
  (``History``, ``fit``) instead of as literal role markup.
"""
from __future__ import annotations

import importlib
import inspect
import re

import griffe

ROLE = re.compile(r":(?:class|func|meth|attr|mod|exc|data|obj):`(~?)([^`<]*?)(?:\s*<[^>]*>)?`")
COMPLETED_AT_IMPORT = ("{parameters}", "{attributes}")


def _plain(match: re.Match) -> str:
    name = match.group(2).strip()
    return f"`{name.rsplit('.', 1)[-1] if match.group(1) else name}`"


def _imported_doc(path: str) -> str | None:
    module, _, name = path.rpartition(".")
    try:
        return inspect.getdoc(getattr(importlib.import_module(module), name))
    except (ImportError, AttributeError):
        return None


class Docstrings(griffe.Extension):
    def on_instance(self, *, obj, **kwargs):
        if obj.docstring is None:
            return
        if any(mark in obj.docstring.value for mark in COMPLETED_AT_IMPORT):
            obj.docstring.value = _imported_doc(obj.path) or obj.docstring.value
        obj.docstring.value = ROLE.sub(_plain, obj.docstring.value)
