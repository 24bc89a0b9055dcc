"""Griffe extension for the API reference: the docstrings' Sphinx roles (``:class:`~mlp_backend.History```,
``:meth:`fit```) shown as code (``History``, ``fit``) instead of as literal role markup."""
from __future__ import annotations

import re

import griffe

ROLE = re.compile(r":(?:class|func|meth|attr|mod|exc|data|obj):`~?([^`<]*?)(?:\s*<[^>]*>)?`")


def _plain(match: re.Match) -> str:
    name = match.group(1).strip()
    return f"`{name.rsplit('.', 1)[-1] if match.group(0).split('`')[1].startswith('~') else name}`"


class SphinxRoles(griffe.Extension):
    def on_instance(self, *, obj, **kwargs):
        if obj.docstring is not None:
            obj.docstring.value = ROLE.sub(_plain, obj.docstring.value)
