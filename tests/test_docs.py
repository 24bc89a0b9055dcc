"""The API reference documents what it shows: every function, class and method on a ``docs/api`` page has a
numpydoc docstring whose Parameters section names exactly its parameters, each with a type, and a signature
whose parameters are annotated.

Which objects a page shows is read from the page's ``::: target`` lines and their ``options`` (``members:
false``, ``members: [names]``, ``filters``), with mkdocs.yml's default filters, as mkdocstrings renders them.
"""
from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import re
from pathlib import Path

import pytest
from numpydoc.validate import validate  # the dev extra's: a missing one fails here rather than skipping

ROOT = Path(__file__).resolve().parent.parent
CHECKS = {"GL08": "no docstring", "PR01": "a parameter is not documented", "PR02": "documents an unknown parameter",
          "PR04": "a parameter has no type"}


def _filters(text: str) -> list[str] | None:
    found = re.search(r"filters:\s*(\[.*\])", text)
    return ast.literal_eval(found.group(1)) if found else None


def _shown(pattern_list: list[str], name: str) -> bool:
    for pattern in pattern_list:
        negate = pattern.startswith("!")
        if re.search(pattern.lstrip("!"), name):
            return not negate
    return True


def _resolve(path: str):
    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(path)


def documented() -> list[str]:
    """Import paths of every object the API pages show (classes, functions and the methods they list)."""
    default = _filters((ROOT / "mkdocs.yml").read_text()) or []
    paths = []
    for page in sorted((ROOT / "docs" / "api").glob("*.md")):
        text = page.read_text()
        for found in re.finditer(r"^::: (\S+)\n((?:    .*\n)*)", text, re.M):
            target, options = found.group(1), found.group(2)
            paths.append(target)
            obj = _resolve(target)
            if not inspect.isclass(obj) or re.search(r"members:\s*false", options):
                continue
            listed = re.search(r"members:\s*(\[.*\])", options)
            if listed:  # named members, inherited ones included; ours must be documented
                for name in re.findall(r"\w+", listed.group(1)):
                    if getattr(getattr(obj, name), "__module__", "").startswith("mlp_backend"):
                        paths.append(f"{target}.{name}")
                continue
            filters = _filters(options) or default
            for name, member in vars(obj).items():
                if isinstance(member, (classmethod, staticmethod)):
                    member = member.__func__
                if inspect.isfunction(member) and _shown(filters, name):
                    paths.append(f"{target}.{name}")
    return paths


def _parameters(obj) -> list[str]:
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):
        return []
    return [p for p in signature.parameters if p not in ("self", "cls")]


def test_the_reference_shows_the_central_api():
    shown = set(documented())
    assert {"mlp_backend.build_mlp", "mlp_backend.fit", "mlp_backend.estimators.MLPClassifier",
            "mlp_backend.Sequential.fit", "mlp_backend.data.load_fashion_mnist"} <= shown


@pytest.mark.parametrize("path", documented())
def test_parameters_are_documented(path):
    obj = _resolve(path)
    if inspect.isclass(obj) and issubclass(obj, BaseException) or not _parameters(obj):
        return  # nothing to document but prose
    errors = [f"{code} ({CHECKS[code]}): {message}" for code, message in validate(path)["errors"] if code in CHECKS]
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("path", documented())
def test_signatures_are_annotated(path):
    obj = _resolve(path)
    if inspect.isclass(obj) and (issubclass(obj, BaseException) or "__init__" not in vars(obj) and not _parameters(obj)):
        return
    signature = inspect.signature(obj)
    bare = [name for name, p in signature.parameters.items()
            if name not in ("self", "cls") and p.annotation is inspect.Parameter.empty]
    assert not bare, f"{path}: parameters without a type annotation: {', '.join(bare)}"


def test_a_missing_or_unknown_parameter_fails():
    """The check itself: a docstring that forgets a parameter, or names one the function lacks, is caught."""
    def forgets(a: int, b: int):
        """Add.

        Parameters
        ----------
        a : int
            First.
        """

    def invents(a: int):
        """Add.

        Parameters
        ----------
        a : int
            First.
        c : int
            Not a parameter.
        """

    import sys
    module = sys.modules[__name__]
    module.forgets, module.invents = forgets, invents
    assert "PR01" in {code for code, _ in validate(f"{__name__}.forgets")["errors"]}
    assert "PR02" in {code for code, _ in validate(f"{__name__}.invents")["errors"]}


def test_the_command_line_page_lists_every_option():
    """The CLI reference is generated from the parsers: every command and every option of it is on the page."""
    spec = importlib.util.spec_from_file_location("cli_reference", ROOT / "docs" / "hooks" / "cli_reference.py")
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)
    page = hook.reference()
    from mlp_backend.cli import build_parser

    for name, parser in build_parser().commands.items():
        assert f"### mlp {name}\n" in page
        section = page.split(f"### mlp {name}\n")[1].split("\n### ")[0]
        for flag in parser.format_usage().replace("[", " ").replace("]", " ").split():
            if flag.startswith("--"):
                assert f"`{flag}`" in section, f"mlp {name} {flag} is missing from the reference"
    assert hook.on_page_markdown(f"before\n{hook.MARKER}\nafter", None, None, None).count("### mlp ") == len(
        build_parser().commands)
