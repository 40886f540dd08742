"""The one-way data flow, kept by walking every module's imports (DESIGN.md)."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "darkroom"


def imports_of(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in names if name.startswith("darkroom")}


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        yield ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts), path


def family(module: str) -> str:
    """darkroom.train.gan_losses -> gan: a trainer and its helper modules form one family."""
    return module.split(".")[2].split("_")[0]


def test_lower_layers_never_import_trainers_or_cli():
    for module, path in modules():
        if module.split(".")[1] in ("nets", "metrics", "data", "schedule", "checkpoint", "dist", "precision", "config"):
            bad = {name for name in imports_of(path) if name.startswith(("darkroom.train", "darkroom.cli", "darkroom.demo"))}
            assert not bad, f"{module} imports {bad}"


def test_nothing_imports_the_cli():
    for module, path in modules():
        if module not in ("darkroom.cli", "darkroom.__main__"):
            assert not any(name.startswith("darkroom.cli") for name in imports_of(path)), module


def test_trainers_never_import_each_other():
    for module, path in modules():
        if module.startswith("darkroom.train.") and module != "darkroom.train.__init__":
            others = {family(name) for name in imports_of(path) if name.startswith("darkroom.train.")
                      and name.count(".") >= 2}
            assert others <= {family(module)}, f"{module} imports trainers {others}"
