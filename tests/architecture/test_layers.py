"""The layer contract (docs/architecture.md): dnx's imports run one way, from the CLI down to the core.

An equivalent of an import-linter "layers" contract, checked with ``ast`` over the source: import-linter's
graph builder (grimp) walks one package directory, and dnx installs five folders (``dnx/``, ``export/``,
``calibration/``, ``runtime/``, ``benchmarks/``) under the one import name ``dnx`` (pyproject's
``package-dir``), which it cannot follow. Every import is counted, at module level and inside functions.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Highest first. A module may import its own layer's modules and any lower layer's, never a higher one.
# "a | b" are independent siblings: neither may import the other. A module belongs to the longest
# prefix listed; ``dnx.runtime`` (artifact, classifier, batching, selection, runtime precision, timings)
# means runtime's modules not in a more specific entry.
LAYERS = [
    "dnx",                                         # the facade: dnx.load, the error types, __version__
    "dnx.cli",                                     # the click commands
    "dnx.benchmarks | dnx.paper",                  # dnx bench/eval/tune, make gpu-check; the paper's tables
    "dnx.runtime.deploy",                          # Kubernetes, KServe, haproxy replicas
    "dnx.runtime.serve",                           # dnx serve, Triton
    "dnx.runtime",                                 # deployment: artifact, classifier, batching, selection
    "dnx.runtime.tensorrt | dnx.train",            # producers: TensorRT engines; trained checkpoints
    "dnx.calibration",                             # producers: INT8 Q/DQ, FP16, accuracy budgets
    "dnx.export",                                  # producers: ONNX export, verification
    "dnx.runtime.backends",                        # one Runner per engine, the backend table, latency
    "dnx.schemas",                                 # manifest, engine manifest, certificate
    "dnx.data",                                    # preprocessing, datasets, photos
    "dnx.models",                                  # the DenseNet family, the registry, checkpoints
    "dnx.core",                                    # errors, file I/O, hashing, machine, compare, ONNX graph
]
# Benchmarks' one-off experiments are scripts, not product: nothing else imports them.
EXPERIMENTS = "dnx.benchmarks.experiments"
# Function-level imports of dnx modules allowed, each for the reason given.
LAZY = {
    ("dnx", "dnx.runtime.classifier"): "the facade: `import dnx` (and every dnx.core import) must not load runtimes",
    ("dnx.models.registry", "dnx.models.densenet"): "dnx.models.densenet imports torch at module level",
}


def _modules() -> dict[str, Path]:
    mapping = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    found = {}
    for package, folder in mapping.items():
        for path in (ROOT / folder).rglob("*.py"):
            rel = path.relative_to(ROOT / folder).with_suffix("")
            if "cpp" in rel.parts:
                continue
            parts = [p for p in rel.parts if p != "__init__"]
            name = ".".join([package, *parts])
            if package == "dnx" and parts and f"dnx.{parts[0]}" in mapping:
                continue
            found[name] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path):
    """(imported dnx module, line, inside a function) for every import in ``path``."""
    tree = ast.parse(path.read_text())
    is_package = path.name == "__init__.py"

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            targets = []
            if isinstance(child, ast.Import):
                targets = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    parts = name.split(".")[: len(name.split(".")) - child.level + (1 if is_package else 0)]
                    base = ".".join(parts + ([child.module] if child.module else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in child.names]
            for target in targets:
                if target == "dnx" or target.startswith("dnx."):
                    yield target, child.lineno, in_function
            yield from visit(child, nested)

    yield from visit(tree, False)


def _layer(module: str) -> tuple[int, str]:
    best = None
    for index, entry in enumerate(LAYERS):
        for member in (m.strip() for m in entry.split("|")):
            if (module == member or module.startswith(member + ".")) and (best is None or len(member) > len(best[1])):
                best = (index, member)
    assert best is not None, f"{module} is in no layer: add it to LAYERS and docs/architecture.md"
    return best


def test_every_module_has_a_layer():
    assert len(MODULES) > 100
    for module in MODULES:
        _layer(module)


def test_imports_point_down():
    wrong = []
    for module, path in sorted(MODULES.items()):
        here, own = _layer(module)
        for target, line, _ in _imports(module, path):
            there, other = _layer(target)
            if there < here or (there == here and other != own):
                wrong.append(f"{path.relative_to(ROOT)}:{line}: {module} ({own}) imports {target} ({other})")
    assert not wrong, "imports against the layer contract:\n" + "\n".join(wrong)


def test_experiments_are_not_product():
    wrong = [f"{m} imports {t}" for m, p in MODULES.items() if not m.startswith(EXPERIMENTS)
             for t, _, _ in _imports(m, p) if t.startswith(EXPERIMENTS)]
    assert not wrong


def test_dnx_imports_sit_at_module_top():
    inner = sorted({(m, t) for m, p in MODULES.items() for t, _, fn in _imports(m, p) if fn})
    assert set(inner) == set(LAZY), ("function-level imports of dnx modules (move them to the top, or add the "
                                     f"reason to LAZY): {sorted(set(inner) - set(LAZY))}")


def test_packages_holding_lower_layers_import_only_the_core():
    """``dnx`` and ``dnx.runtime`` hold lower layers (``dnx.core``, ``dnx.runtime.backends``), and a package's
    ``__init__`` runs before any of its modules: so these two import nothing but the core."""
    members = [m.strip() for entry in LAYERS for m in entry.split("|")]
    holders = [m for m in members if any(o.startswith(m + ".") for o in members)]
    assert holders == ["dnx", "dnx.runtime"]
    for module in holders:
        path = MODULES[module]
        for target, line, _ in _imports(module, path):
            assert target.startswith("dnx.core.") or (module, target) in LAZY, \
                f"{path.relative_to(ROOT)}:{line} {target}"


@pytest.mark.parametrize("probe", ["dnx.core.errors", "dnx.schemas.manifest", "dnx.runtime.backends.base"])
def test_lower_layers_import_alone(probe):
    """Importing a low layer loads nothing above it (a real import in a fresh interpreter)."""
    import subprocess
    import sys

    code = (f"import sys, {probe}; here = {LAYERS!r}; "
            "print('\\n'.join(sorted(m for m in sys.modules if m == 'dnx' or m.startswith('dnx.'))))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    level = _layer(probe)[0]
    parents = {probe.rsplit(".", i)[0] for i in range(1, probe.count(".") + 1)}  # loaded first, by Python
    above = [m for m in loaded if m in MODULES and _layer(m)[0] < level and m not in parents]
    assert not above, f"importing {probe} loaded higher layers: {above}"
    assert "torch" not in subprocess.run([sys.executable, "-c", f"import sys, {probe}; print(*sys.modules)"],
                                         capture_output=True, text=True, check=True).stdout.split()
