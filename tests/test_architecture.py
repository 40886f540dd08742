"""The one-way data flow, kept by walking every module's imports (DESIGN.md, README "Architecture").

    engine (nets, data, metrics, schedule, precision, dist, config, runs, lifecycle, report, ...)
      <- task packages (classifier, gan, cyclegan): each imports the engine, never another task
        <- evaluate, demo <- cli
Function-level imports count: a lazy import is still an arrow.
"""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "darkroom"
TASKS = ("classifier", "gan", "cyclegan")
ABOVE_TASKS = ("evaluate", "demo", "cli", "__main__")


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = modules()


def imports_of(module: str) -> set[str]:
    """The darkroom modules `module` imports (`from darkroom.x import y` counts as darkroom.x.y when y is a module,
    as darkroom.x otherwise)."""
    path = MODULES[module]
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            submodules = {f"{node.module}.{alias.name}" for alias in node.names} & set(MODULES)
            names |= submodules
            if len(submodules) < len(node.names):  # names defined by the module itself (its __init__ for a package)
                names.add(node.module)
    return {name for name in names if name in MODULES and name != module}


def layer(module: str) -> str:
    top = module.split(".")[1] if "." in module else "darkroom"
    if top in TASKS:
        return top
    return "above" if top in ABOVE_TASKS else "engine"


def test_every_module_is_seen():
    assert {"darkroom.classifier.train", "darkroom.gan.train", "darkroom.cyclegan.train", "darkroom.lifecycle"} <= set(MODULES)


def test_the_engine_imports_no_task_package_and_nothing_above():
    for module in MODULES:
        if layer(module) == "engine" and module != "darkroom":
            bad = {name for name in imports_of(module) if layer(name) != "engine"}
            assert not bad, f"{module} (engine) imports {sorted(bad)}"


def test_task_packages_never_import_each_other_or_the_layers_above():
    for module in MODULES:
        own = layer(module)
        if own in TASKS:
            bad = {name for name in imports_of(module) if layer(name) not in ("engine", own)}
            assert not bad, f"{module} imports {sorted(bad)}"


def test_nothing_imports_the_cli():
    for module in MODULES:
        if module not in ("darkroom.cli", "darkroom.__main__"):
            assert "darkroom.cli" not in imports_of(module), module


def cycles() -> list[list[str]]:
    """Every strongly connected set of more than one module (Tarjan), i.e. every import circle."""
    graph = {module: sorted(imports_of(module)) for module in MODULES}
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_no_import_circles_anywhere():
    assert cycles() == []


def test_the_circle_finder_finds_a_planted_circle(monkeypatch):
    real = imports_of
    planted = {"darkroom.runs": {"darkroom.report.html"}, "darkroom.report.html": {"darkroom.runs"}}
    monkeypatch.setitem(globals(), "imports_of", lambda module: planted.get(module, real(module)))
    assert ["darkroom.report.html", "darkroom.runs"] in cycles()
