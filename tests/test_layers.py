"""The package's layering: no module imports a layer above its own (docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import rsembed_db

ROOT = Path(rsembed_db.__file__).parent
# Lowest first; names in one tuple share a layer and must not import each other.
LAYERS: list[tuple[str, ...]] = [
    ("errors", "display"), ("specs",), ("tiling",), ("sources",), ("models",), ("producers",), ("store",),
    ("ingest", "query"), ("export", "inspect"), ("api",), ("service",), ("cli",),
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "rsembed_db" and len(parts) > 1 else None


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_every_subpackage_has_a_layer():
    names = {p.stem if p.is_file() else p.name for p in ROOT.iterdir()
             if (p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists())) and p.name != "__pycache__"}
    assert names - {"__init__", "__main__"} <= set(RANK), names - set(RANK)


def test_no_module_imports_a_higher_or_sibling_layer():
    violations = []
    for path in sorted(ROOT.rglob("*.py")):
        own = _layer("rsembed_db." + ".".join(path.relative_to(ROOT).with_suffix("").parts))
        if own is None or own not in RANK:
            continue
        for module in _imports(path):
            other = _layer(module)
            if other is None or other == own or other not in RANK:
                continue
            if RANK[other] >= RANK[own]:
                violations.append(f"{path.relative_to(ROOT)} ({own}) imports {module} ({other})")
    assert not violations, "\n".join(violations)
