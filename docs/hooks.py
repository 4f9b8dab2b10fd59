"""MkDocs hooks (mkdocs.yml ``hooks:``): pages written at build time from the code, so they cannot
drift from it.

- ``reference/cli.md``: every subcommand's options, read from the argparse parser that builds
  ``--help`` (``unetkit.cli.build_parser``), whose config options come from ``cli/options.py``'s
  ``FLAGS`` and the comments in ``config.py``.
- ``reference/python.md``: one mkdocstrings block per public name (``unetkit.__all__``, and the
  functions of ``unetkit.api`` where it exists).
- ``benchmarks/results/*.json``: the committed benchmark results, copied into the site so that
  pages link to them.

``python docs/hooks.py cli`` (or ``python``) prints a page without building the site.
"""

from __future__ import annotations

import argparse
import inspect
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def use_this_checkout() -> None:
    """Import unetkit from this checkout's src/, whatever is installed (an editable install may point
    at another checkout). At call time: mkdocs restores sys.path after importing a hook."""
    source = str(ROOT / "src")
    if sys.path[:1] != [source]:
        sys.path.insert(0, source)
    loaded = sys.modules.get("unetkit")
    if loaded is not None and not str(loaded.__file__).startswith(source):
        for name in [name for name in sys.modules if name == "unetkit" or name.startswith("unetkit.")]:
            del sys.modules[name]


def cli_reference() -> str:
    """The command-line reference in Markdown: each subcommand's usage and options by group."""
    use_this_checkout()
    from unetkit.cli import build_parser
    from unetkit.config.flags import FLAGS

    config_paths = {path for table in FLAGS.values() for path in table.values()}
    lines = [
        "# Command line",
        "",
        "Generated from the parser that prints `unetkit COMMAND --help` (`src/unetkit/cli/`); the",
        "options that set a config field (marked *config*) take their type, choices, default and help",
        "from the config dataclasses (`src/unetkit/config/`), through `src/unetkit/cli/options.py`. `python -m unetkit` works",
        "the same as `unetkit`.",
        "",
    ]
    for name, parser in _subcommands(build_parser(), "unetkit"):
        lines += _command_section(name, parser, config_paths)
    return "\n".join(lines) + "\n"


def _subcommands(parser: argparse.ArgumentParser, prefix: str):
    """(``unetkit train``, its parser), ... depth first, in the order of ``unetkit --help``."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, subparser in action.choices.items():
                nested = any(isinstance(a, argparse._SubParsersAction) for a in subparser._actions)
                if nested:
                    yield from _subcommands(subparser, f"{prefix} {name}")
                else:
                    yield f"{prefix} {name}", subparser


def _command_section(name: str, parser: argparse.ArgumentParser, config_paths: set[str]) -> list[str]:
    formatter = parser._get_formatter()
    usage = parser.format_usage().removeprefix("usage: ").strip()
    lines = [f"## `{name}`", "", parser.description or "", "", "```text", usage, "```", ""]
    for group in parser._action_groups:
        actions = [a for a in group._group_actions if not isinstance(a, argparse._HelpAction)]
        if not actions:
            continue
        lines += [f"**{group.title}**" + (f": {group.description}" if group.description else ""), ""]
        lines += ["| option | value | what it does |", "|---|---|---|"]
        for action in actions:
            flags = ", ".join(f"`{flag}`" for flag in action.option_strings) or f"`{action.metavar or action.dest}`"
            value = _value_of(action)
            text = formatter._expand_help(action) if action.help else ""
            if action.dest in config_paths:
                text += f" *config: `{action.dest}`*"
            lines.append(f"| {flags} | {value} | {_cell(text)} |")
        lines.append("")
    return lines


def _value_of(action: argparse.Action) -> str:
    if action.nargs == 0:
        return ""
    if action.choices is not None and not isinstance(action, argparse._SubParsersAction):
        return " \\| ".join(f"`{choice}`" for choice in action.choices)
    return f"`{action.metavar or action.dest.upper()}`"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def python_reference() -> str:
    """The Python API page: a mkdocstrings block per public name of ``unetkit``."""
    use_this_checkout()
    import importlib.util

    import unetkit

    lines = [
        "# Python API",
        "",
        "The names `import unetkit` offers (`unetkit.__all__`), each documented from its docstring.",
        "",
    ]
    if importlib.util.find_spec("unetkit.api") is not None:
        lines += ["## Train, plan, load, evaluate", "", "::: unetkit.api", ""]
    sections: dict[str, list[str]] = {"Models and prediction": [], "Configuration": [], "Errors": []}
    for name in unetkit.__all__:
        obj = getattr(unetkit, name)
        if not (inspect.isclass(obj) or inspect.isfunction(obj)) or obj.__module__ == "unetkit.api":
            continue
        if inspect.isclass(obj) and issubclass(obj, Exception):
            section = "Errors"
        elif obj.__module__ == "unetkit.config":
            section = "Configuration"
        else:
            section = "Models and prediction"
        sections[section].append(f"::: {obj.__module__}.{obj.__qualname__}")
    for title, blocks in sections.items():
        if blocks:
            lines += [f"## {title}", ""] + [line for block in blocks for line in (block, "")]
    return "\n".join(lines)


GENERATED_PAGES = {"reference/cli.md": cli_reference, "reference/python.md": python_reference}


def on_files(files, config):
    """Add the generated pages and the committed benchmark results to the site."""
    from mkdocs.structure.files import File

    for src_uri, render in GENERATED_PAGES.items():
        files.append(File.generated(config, src_uri, content=render()))
    for result in sorted((ROOT / "benchmarks" / "results").glob("*.json")):
        src_uri = f"benchmarks/results/{result.name}"
        files.append(File.generated(config, src_uri, abs_src_path=str(result)))
    return files


if __name__ == "__main__":
    page = sys.argv[1] if len(sys.argv) > 1 else "cli"
    print(cli_reference() if page == "cli" else python_reference())
