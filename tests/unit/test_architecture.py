"""The house as docs/architecture.md draws it: every module in its layer, imports never climbing,
probes/ free of the agent, modules and classes of a size a reader can hold."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_ROW = re.compile(r"^\| `([\w.*]+)` \| (\d+) \|", re.MULTILINE)
MAX_MODULE_LINES = 420  # "about 400"
MAX_CLASS_LINES = 270  # "about 250"


def _layers() -> dict[str, int]:
    text = (ROOT / "docs" / "architecture.md").read_text()
    return {name: int(layer) for name, layer in _ROW.findall(text)}


def _modules() -> dict[str, Path]:
    """mailprobe module name -> file, for agent/ and probes/."""
    out: dict[str, Path] = {}
    for folder in ("agent", "probes"):
        for path in (ROOT / folder).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(("mailprobe", *parts)).removesuffix(".__init__")
            out[name] = path
    return out


def _layer_of(module: str, layers: dict[str, int]) -> int | None:
    if module.startswith("mailprobe.probes"):
        return layers.get("probes.*")
    if module == "mailprobe.agent":
        return layers.get("mailprobe.agent")
    short = module.removeprefix("mailprobe.agent.")
    while short:
        if short in layers:
            return layers[short]
        short = short.rpartition(".")[0]  # a package's layer covers its modules
    return None


def _imports(path: Path, module: str) -> set[str]:
    found: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                found.add(f"{base}.{node.module}" if node.module else base)
            elif node.module and node.module.startswith("mailprobe"):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("mailprobe"))
    return found


def test_every_module_has_a_layer_in_the_architecture_document() -> None:
    """A new module gets its line in docs/architecture.md: what it holds and where it sits."""
    layers = _layers()
    missing = [m for m in _modules() if _layer_of(m, layers) is None]
    assert missing == []


def test_imports_never_climb_a_layer_and_probes_never_import_the_agent() -> None:
    """Data flows one way: a module imports its own layer or lower ones only."""
    layers = _layers()
    climbing: list[str] = []
    for module, path in _modules().items():
        mine = _layer_of(module, layers)
        assert mine is not None
        for target in _imports(path, module):
            if module.startswith("mailprobe.probes") and target.startswith("mailprobe.agent"):
                climbing.append(f"{module} -> {target} (probes import no agent)")
                continue
            theirs = _layer_of(target, layers)
            if theirs is not None and theirs > mine:
                climbing.append(f"{module} ({mine}) -> {target} ({theirs})")
    assert climbing == []


def test_modules_and_classes_stay_a_size_one_can_read() -> None:
    """No module of agent/ or probes/ over about 400 lines, no class over about 250."""
    big: list[str] = []
    for module, path in _modules().items():
        text = path.read_text()
        if len(text.splitlines()) > MAX_MODULE_LINES:
            big.append(f"{module}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef) and node.end_lineno is not None:
                size = node.end_lineno - node.lineno + 1
                if size > MAX_CLASS_LINES:
                    big.append(f"{module}.{node.name}: {size} lines")
    assert big == []
