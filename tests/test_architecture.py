"""The package's arrows run one way (docs/guides/code-layout.md): read from the import statements."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "unetkit"

# component -> the unetkit components it may import (a component is a top-level module or folder)
ALLOWED = {
    "errors": set(),
    "atomic": set(),
    "config": {"errors"},
    "device": {"atomic", "errors"},
    "losses": {"errors"},
    "metrics": {"errors"},
    "model": {"config", "errors"},
    "checkpoint": {"atomic", "config", "errors"},
    "data": {"atomic", "config", "errors"},
    "tables": set(),
    "inference": {"atomic", "checkpoint", "config", "data", "device", "errors", "metrics", "model"},
    "training": {"atomic", "checkpoint", "config", "data", "device", "errors", "inference", "losses", "model"},
    "planning": {"config", "data", "device", "errors", "model", "tables", "training"},
    "report": {"atomic", "config", "data", "errors", "inference", "metrics", "training"},  # training: run folders' curves
    "serve": {"config", "data", "errors", "inference", "report", "training"},
    "api": {"atomic", "config", "data", "device", "errors", "inference", "planning", "report", "training"},
}
WEB_FRAMEWORKS = {"fastapi", "starlette", "uvicorn", "multipart"}


def imported_names(path: Path) -> list[str]:
    """The modules a source file imports (``from x import y``: x; ``import x.y``: x.y)."""
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        names += [node.module or ""] if isinstance(node, ast.ImportFrom) else []
        names += [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
    return names


def component_imports() -> dict[str, set[str]]:
    """component -> the other unetkit components its modules import."""
    imports: dict[str, set[str]] = defaultdict(set)
    for path in PACKAGE.rglob("*.py"):
        component = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
        for name in imported_names(path):
            parts = name.split(".")
            if parts[0] == "unetkit" and len(parts) > 1 and parts[1] != component:
                imports[component].add(parts[1])
    return imports


@pytest.mark.parametrize("component", sorted(ALLOWED))
def test_component_imports_only_what_lies_below_it(component: str) -> None:
    assert (PACKAGE / component).exists() or (PACKAGE / f"{component}.py").exists(), component
    unexpected = component_imports()[component] - ALLOWED[component]
    assert not unexpected, f"unetkit.{component} imports {sorted(unexpected)}, against the layering"


def test_a_predictor_loads_weights_beside_the_checkpoints_not_through_the_exporter() -> None:
    assert "unetkit.inference.export" not in imported_names(PACKAGE / "inference" / "predictor.py")
    assert "load_weights" in (PACKAGE / "checkpoint.py").read_text()


def test_only_serve_imports_a_web_framework() -> None:
    """The web stack is an extra (``unetkit[serve]``): the core must import without it."""
    for path in PACKAGE.rglob("*.py"):
        if path.relative_to(PACKAGE).parts[0] == "serve":
            continue
        roots = {name.split(".")[0] for name in imported_names(path)}
        assert not roots & WEB_FRAMEWORKS, f"{path} imports a web framework"
