"""Static check of dnx's TensorRT code against the API names of every TensorRT version it supports.

Full TensorRT cannot be installed on the CPU machines, so dnx's TensorRT code is never executed
there. This module reads that code with ``ast`` (nothing is imported), collects every attribute
name read or written on the tensorrt module and on objects derived from it, and compares them with
the names found in each version's compiled bindings (``api_names/tensorrt-<version>.txt`` beside
this module: 10.0.1, 10.8.0.43, 10.16.1.11, 11.0.0.114 and 11.4.0.106, copied from ``shared/trt-api``).

What counts as a TensorRT object (the conventions of :mod:`dnx.runtime.backends.tensorrt_compat`):

* the name ``trt`` (the module is always bound to it);
* a parameter or variable annotated with a ``trt.…`` type (``engine: trt.ICudaEngine = loaded.engine``);
* a variable, ``self.`` attribute, loop or ``with`` target assigned from an expression rooted in one
  (``builder = trt.Builder(logger)``, ``self._context = engine.create_execution_context()``);
  calling a plain function on it ends the chain (``str(tensor.name)`` is a Python ``str``).

Version guards: a use inside ``if is_trt11(trt):``, ``if trt_major_version(trt) >= 11:``,
``if trt_version(trt) >= (10, 9):`` (or a variable assigned from ``trt_major_version(...)`` or
``trt_version(...)``), in ``not``/``and``/``or`` combinations, or in their ``else`` branch, is
checked only against the listed versions for which that branch runs. An early ``return`` does not
count as a guard: use ``if``/``else``.

Every list is checked, the oldest supported release (10.0.1) included: a name that arrived later in
10.x is absent there and fails unless guarded. :data:`FIRST_IN` names the release that brought such
names, so the failure says which guard to write, and a use guarded too loosely (``>= (10, 8, 1)``
for a 10.9 name) still fails although no list falls between the two versions.

What a pass means, and its limits:

* A missing name is a real failure. A name is accepted when it is in the list or is the tail of a
  listed string: the linker stores a string literal inside the tail of a longer one, so
  ``TensorIOMode.INPUT`` is only present as ``CONDITIONAL_INPUT``, ``LayerType.CONVOLUTION`` as
  ``DECONVOLUTION``.
* A name found is not proof: the lists are flat (``BuilderFlag.FP16`` is removed in 11 while
  ``DataType.FP16`` stays) and docstring words appear too. Names removed by a version (NVIDIA's
  migration guides, ``trt-api/README.md``) are therefore also checked by name and as
  ``Owner.NAME`` pairs (:data:`REMOVED`).
* Names the ``tensorrt`` package defines in Python rather than in the bindings (``__version__``)
  are accepted explicitly; other dunder names (``__init__`` of a subclassed interface) are Python
  protocol and not checked. Argument names and counts are not checked.
"""

from __future__ import annotations

import ast
import operator
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from trt_api_versions import FIRST_IN, REMOVED, Version

API_DIR_ENV = "DNX_TRT_API_DIR"
ROOT_NAMES = frozenset({"trt"})
MAJOR_FUNCTION = "trt_major_version"  # returns an int: 10
VERSION_FUNCTION = "trt_version"  # returns a tuple: (10, 8, 0, 43)
VERSION_FUNCTIONS = (MAJOR_FUNCTION, VERSION_FUNCTION)
IS_TRT11 = "is_trt11"
PYTHON_LEVEL_NAMES = frozenset({"__version__"})


@dataclass(frozen=True)
class ApiUse:
    name: str
    owner: str | None  # the attribute (or ``trt``) it was read from, when that is a plain chain
    file: str
    line: int
    versions: frozenset[Version]  # the checked versions for which this line runs

    @property
    def dotted(self) -> str:
        return f"{self.owner}.{self.name}" if self.owner else f"….{self.name}"


@dataclass(frozen=True)
class Finding:
    use: ApiUse
    version: str
    reason: str

    def __str__(self) -> str:
        return f"{self.use.file}:{self.use.line}: {self.use.dotted}: {self.reason} (TensorRT {self.version})"


@dataclass(frozen=True)
class ApiList:
    version: str
    names: frozenset[str]
    tails: frozenset[str]

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])

    @property
    def version_tuple(self) -> Version:
        return version_tuple(self.version)

    def has(self, name: str) -> bool:
        return name in self.names or name in self.tails


def version_tuple(version: str) -> Version:
    return tuple(int(p) for p in re.findall(r"\d+", version)[:4])


def default_api_dir() -> Path:
    """``$DNX_TRT_API_DIR``, else the copy of the lists committed beside this module (``api_names/``)."""
    if os.environ.get(API_DIR_ENV):
        return Path(os.environ[API_DIR_ENV])
    return Path(__file__).resolve().parent / "api_names"


def load_api_lists(api_dir: str | Path | None = None) -> list[ApiList]:
    """One :class:`ApiList` per ``tensorrt-<version>.txt`` in ``api_dir`` (empty if there is none)."""
    api_dir = Path(api_dir) if api_dir else default_api_dir()
    lists = []
    for path in sorted(api_dir.glob("tensorrt-*.txt")):
        names = frozenset(line.strip() for line in path.read_text().splitlines() if line.strip())
        tails = frozenset(n[i:] for n in names for i in range(1, len(n) - 2))
        lists.append(ApiList(path.stem.removeprefix("tensorrt-"), names, tails))
    return lists


def dnx_tensorrt_modules() -> list[Path]:
    """dnx's modules that touch TensorRT objects: the producer (``runtime/tensorrt/``) and the runner and
    version rules (``runtime/backends/tensorrt_*.py``)."""
    root = Path(__file__).resolve().parents[4]
    found = [*root.glob("runtime/tensorrt/*.py"), *root.glob("runtime/backends/tensorrt_*.py")]
    return sorted(p for p in found if p.name != "__init__.py")


# -- collecting uses -----------------------------------------------------------------------------

def _mentions_root(expr: ast.AST | None) -> bool:
    if expr is None:
        return False
    if isinstance(expr, ast.Constant) and isinstance(expr.value, str):  # a string annotation
        return bool(re.match(r"\s*trt\.", expr.value))
    return any(isinstance(n, ast.Name) and n.id in ROOT_NAMES for n in ast.walk(expr))


def _is_version_call(expr: ast.AST | None, name: str) -> bool:
    return isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name) and expr.func.id == name


def _version_function(expr: ast.AST | None) -> str | None:
    return next((name for name in VERSION_FUNCTIONS if _is_version_call(expr, name)), None)


class _Scope:
    """Names holding TensorRT objects, and names holding a version (name -> the function it came from)."""

    def __init__(self, tainted: set[str], version_vars: dict[str, str]) -> None:
        self.tainted = tainted
        self.version_vars = version_vars


def _own_nodes(body: Sequence[ast.AST]) -> Iterable[ast.AST]:
    """Nodes of ``body`` outside nested functions and classes (those are scopes of their own)."""
    stack = list(body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


def _assignments(node: ast.AST) -> Iterable[tuple[ast.AST, ast.AST | None, ast.AST | None]]:
    """(target, value, annotation) pairs bound by ``node``."""
    if isinstance(node, ast.Assign):
        for target in node.targets:
            if isinstance(target, (ast.Tuple, ast.List)) and isinstance(node.value, (ast.Tuple, ast.List)) \
                    and len(target.elts) == len(node.value.elts):
                yield from ((t, v, None) for t, v in zip(target.elts, node.value.elts))
            else:
                yield target, node.value, None
    elif isinstance(node, ast.AnnAssign):
        yield node.target, node.value, node.annotation
    elif isinstance(node, (ast.For, ast.AsyncFor, ast.comprehension)):
        yield node.target, node.iter, None
    elif isinstance(node, (ast.With, ast.AsyncWith)):
        for item in node.items:
            if item.optional_vars is not None:
                yield item.optional_vars, item.context_expr, None
    elif isinstance(node, ast.NamedExpr):
        yield node.target, node.value, None


def _target_keys(target: ast.AST) -> Iterable[str]:
    if isinstance(target, ast.Name):
        yield target.id
    elif isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) and target.value.id == "self":
        yield f"self.{target.attr}"
    elif isinstance(target, (ast.Tuple, ast.List)):
        for element in target.elts:
            yield from _target_keys(element)
    elif isinstance(target, ast.Starred):
        yield from _target_keys(target.value)


class _Collector:
    def __init__(self, filename: str, self_tainted: set[str]) -> None:
        self.filename = filename
        self.self_tainted = self_tainted
        self.uses: list[ApiUse] = []

    # -- taint ---------------------------------------------------------------------------------
    def tainted(self, expr: ast.AST | None, scope: _Scope) -> bool:
        if isinstance(expr, ast.Name):
            return expr.id in scope.tainted or expr.id in ROOT_NAMES
        if isinstance(expr, ast.Attribute):
            if isinstance(expr.value, ast.Name) and expr.value.id == "self":
                return f"self.{expr.attr}" in self.self_tainted
            return self.tainted(expr.value, scope)
        if isinstance(expr, (ast.Call,)):
            return self.tainted(expr.func, scope)
        if isinstance(expr, (ast.Subscript, ast.Starred, ast.Await)):
            return self.tainted(expr.value, scope)
        if isinstance(expr, ast.IfExp):
            return self.tainted(expr.body, scope) or self.tainted(expr.orelse, scope)
        if isinstance(expr, ast.BoolOp):
            return any(self.tainted(v, scope) for v in expr.values)
        return False

    def scope_for(self, args: ast.arguments | None, body: Sequence[ast.AST], parent: _Scope) -> _Scope:
        scope = _Scope(set(parent.tainted), dict(parent.version_vars))
        if args is not None:
            for arg in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]:
                if arg is not None and _mentions_root(arg.annotation):
                    scope.tainted.add(arg.arg)
        changed = True
        while changed:  # flow-insensitive: repeat until no assignment adds a name
            changed = False
            for node in _own_nodes(body):
                for target, value, annotation in _assignments(node):
                    if _version_function(value) and isinstance(target, ast.Name):
                        scope.version_vars[target.id] = _version_function(value)
                    if not (self.tainted(value, scope) or _mentions_root(annotation)):
                        continue
                    for key in _target_keys(target):
                        bucket = self.self_tainted if key.startswith("self.") else scope.tainted
                        if key not in bucket:
                            bucket.add(key)
                            changed = True
        return scope

    # -- version guards ------------------------------------------------------------------------
    @staticmethod
    def _version_source(expr: ast.AST, scope: _Scope) -> str | None:
        """The version function ``expr`` is a call of, or a variable assigned from; None otherwise."""
        if isinstance(expr, ast.Name):
            return scope.version_vars.get(expr.id)
        return _version_function(expr)

    def _value(self, expr: ast.AST, scope: _Scope, version: Version) -> int | Version | None:
        source = self._version_source(expr, scope)
        if source is not None:
            return version[0] if source == MAJOR_FUNCTION else version
        if isinstance(expr, ast.Constant) and isinstance(expr.value, int) and not isinstance(expr.value, bool):
            return expr.value
        if isinstance(expr, ast.Tuple) and expr.elts and all(
                isinstance(e, ast.Constant) and type(e.value) is int for e in expr.elts):
            return tuple(e.value for e in expr.elts)
        return None

    def _holds(self, test: ast.AST, scope: _Scope, version: Version) -> bool | None:
        """Whether ``test`` is true under TensorRT ``version``; None when it is not a version test."""
        if _is_version_call(test, IS_TRT11):
            return version[0] >= 11
        if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
            inner = self._holds(test.operand, scope, version)
            return None if inner is None else not inner
        if isinstance(test, ast.BoolOp):
            parts = [self._holds(v, scope, version) for v in test.values]
            if None in parts:
                return None
            return all(parts) if isinstance(test.op, ast.And) else any(parts)
        if isinstance(test, ast.Compare):
            exprs = (test.left, *test.comparators)
            operands = [self._value(e, scope, version) for e in exprs]
            if None in operands or not any(self._version_source(e, scope) for e in exprs):
                return None
            ops = {ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
                   ast.Eq: operator.eq, ast.NotEq: operator.ne}
            pairs = list(zip(test.ops, operands, operands[1:]))
            # An int against a tuple (major vs full version) is a mistake, not a guard.
            if not all(type(op) in ops and type(a) is type(b) for op, a, b in pairs):
                return None
            return all(ops[type(op)](a, b) for op, a, b in pairs)
        return None

    def split(self, test: ast.AST, scope: _Scope,
              versions: frozenset[Version]) -> tuple[frozenset[Version], frozenset[Version]]:
        results = {v: self._holds(test, scope, v) for v in versions}
        if not results or None in results.values():
            return versions, versions
        return (frozenset(v for v, r in results.items() if r), frozenset(v for v, r in results.items() if not r))

    # -- walking -------------------------------------------------------------------------------
    def record(self, name: str, base: ast.AST, node: ast.AST, versions: frozenset[int]) -> None:
        owner = base.attr if isinstance(base, ast.Attribute) else (base.id if isinstance(base, ast.Name) else None)
        self.uses.append(ApiUse(name, owner, self.filename, node.lineno, versions))

    def walk(self, node: ast.AST, scope: _Scope, versions: frozenset[Version]) -> None:
        if isinstance(node, (ast.If, ast.IfExp)):
            self.walk(node.test, scope, versions)
            body, orelse = self.split(node.test, scope, versions)
            for child in (node.body if isinstance(node.body, list) else [node.body]):
                self.walk(child, scope, body)
            for child in (node.orelse if isinstance(node.orelse, list) else [node.orelse]):
                self.walk(child, scope, orelse)
            return
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            for expr in [*getattr(node, "decorator_list", []), *node.args.defaults, *node.args.kw_defaults]:
                if expr is not None:
                    self.walk(expr, scope, versions)
            for arg in [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs, node.args.vararg,
                        node.args.kwarg]:
                if arg is not None and arg.annotation is not None:
                    self.walk(arg.annotation, scope, versions)
            if getattr(node, "returns", None) is not None:
                self.walk(node.returns, scope, versions)
            body = node.body if isinstance(node.body, list) else [node.body]
            inner = self.scope_for(node.args, body, scope)
            for child in body:
                self.walk(child, inner, versions)
            return
        if isinstance(node, ast.ClassDef):
            for expr in [*node.decorator_list, *node.bases]:
                self.walk(expr, scope, versions)
            inner = self.scope_for(None, node.body, scope)
            for child in node.body:
                self.walk(child, inner, versions)
            return
        if isinstance(node, ast.Attribute) and self.tainted(node.value, scope):
            self.record(node.attr, node.value, node, versions)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "setattr") \
                and len(node.args) >= 2 and self.tainted(node.args[0], scope) \
                and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str):
            self.record(node.args[1].value, node.args[0], node, versions)
        for child in ast.iter_child_nodes(node):
            self.walk(child, scope, versions)


def collect_uses(source: str, filename: str = "<source>",
                 versions: Iterable[Version] = ((10, 0), (11, 0))) -> list[ApiUse]:
    """Every TensorRT attribute use in ``source``, with those of ``versions`` its line runs under."""
    tree = ast.parse(source, filename=filename)
    versions = frozenset(versions)
    self_tainted: set[str] = set()
    while True:  # ``self.x`` assigned in one method and used in another: repeat until stable
        before = len(self_tainted)
        collector = _Collector(filename, self_tainted)
        module_scope = collector.scope_for(None, tree.body, _Scope(set(), {}))
        for node in tree.body:
            collector.walk(node, module_scope, versions)
        if len(self_tainted) == before:
            return collector.uses


# -- checking ------------------------------------------------------------------------------------

def _last_before(version: Version) -> Version:
    """A stand-in for the newest release before ``version``: ``(10, 9)`` -> ``(10, 8, 9999)``."""
    return (*version[:-1], version[-1] - 1, 9999)


def check_uses(uses: Iterable[ApiUse], api_lists: Sequence[ApiList]) -> list[Finding]:
    findings = []
    for use in uses:
        if use.name.startswith("__") and use.name.endswith("__") and use.name not in PYTHON_LEVEL_NAMES:
            continue
        first = FIRST_IN.get(use.name)
        early = sorted(v for v in use.versions if first is not None and v < first)
        if early:
            wanted = ", ".join(map(str, first))
            findings.append(Finding(use, ".".join(map(str, early[0])),
                                    f"first in TensorRT {'.'.join(map(str, first))}; use it only inside "
                                    f"`if trt_version(trt) >= ({wanted}):`"))
        for api in api_lists:
            if api.version_tuple not in use.versions or (first is not None and api.version_tuple < first):
                continue
            removed_by = [m for m, r in REMOVED.items() if m <= api.major
                          and (use.name in r.names or (use.owner, use.name) in r.pairs)]
            if removed_by:
                findings.append(Finding(use, api.version, f"removed in TensorRT {removed_by[-1]}; guard it with "
                                                          "a version check or drop it"))
            elif use.name not in PYTHON_LEVEL_NAMES and not api.has(use.name):
                findings.append(Finding(use, api.version, "absent from this version's bindings"))
    return findings


def check_source(source: str, api_lists: Sequence[ApiList], filename: str = "<source>") -> list[Finding]:
    """Findings of ``source`` against ``api_lists``. Guards are also evaluated just below each
    :data:`FIRST_IN` release within the lists' range, so ``>= (10, 8, 1)`` for a 10.9 name fails
    although no list lies between 10.8.0.43 and 10.9."""
    versions = {api.version_tuple for api in api_lists}
    oldest = min(versions, default=None)
    versions |= {_last_before(first) for first in FIRST_IN.values()
                 if oldest is not None and oldest <= _last_before(first)}
    return check_uses(collect_uses(source, filename, versions), api_lists)


def check_files(paths: Iterable[str | Path], api_lists: Sequence[ApiList]) -> list[Finding]:
    findings = []
    for path in paths:
        findings += check_source(Path(path).read_text(), api_lists, str(path))
    return findings
