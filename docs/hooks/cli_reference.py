"""MkDocs hook: the command-line reference, generated from the ``mlp`` parsers at build time so it cannot drift.

A page containing ``<!-- mlp-cli-reference -->`` gets, in its place, one section per command with its description
and a table of every option: flags, metavar/choices, default and help, as ``mlp COMMAND --help`` prints them.
"""
from __future__ import annotations

import argparse

MARKER = "<!-- mlp-cli-reference -->"


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _option_row(action: argparse.Action) -> str:
    names = ", ".join(f"`{s}`" for s in action.option_strings) or f"`{action.dest}`"
    if action.choices:
        takes = " \\| ".join(f"`{c}`" for c in action.choices)
    elif action.nargs == 0:
        takes = "switch"
    else:
        takes = f"`{action.metavar or action.dest.upper()}`"
        if action.nargs in ("*", "+"):
            takes += " ..."
        elif action.nargs == "?":
            takes = f"[{takes}]"
    default = action.default
    shown = "" if default is None or default is argparse.SUPPRESS or action.nargs == 0 else f"`{default}`"
    help_text = (action.help or "") % {"default": default} if action.help and "%(" in action.help else action.help
    return f"| {names} | {takes} | {shown} | {_cell(help_text or '')} |"


def reference() -> str:
    from mlp_backend.cli import build_parser

    parser = build_parser()
    out = []
    for name, sub in parser.commands.items():
        out += [f"### mlp {name}", ""]
        if sub.description:
            out += [sub.description, ""]
        out += ["```text", sub.format_usage().strip(), "```", "",
                "| option | takes | default | what it does |", "|---|---|---|---|"]
        out += [_option_row(a) for a in sub._actions if "-h" not in a.option_strings]  # argparse lists them nowhere else
        out.append("")
    return "\n".join(out)


def on_page_markdown(markdown, page, config, files):
    if MARKER in markdown:
        return markdown.replace(MARKER, reference())
    return markdown
