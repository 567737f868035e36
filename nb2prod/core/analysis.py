"""Static data-flow analysis of cell code with :mod:`ast` and :mod:`symtable`.

A cell *defines* a name it assigns, imports, defs/classes, augments, deletes, assigns an attribute
or item of (``x.a = ...``, ``x[k] = ...``), or mutates in place: a call of one of
:data:`MUTATING_METHODS` on it (``model.fit(...)``, ``rows.append(...)``) or any call with
``inplace=True`` (``df.dropna(inplace=True)``). Mutations of imported modules (``sys.path.append``,
``plt.rcParams.update``) do not count (:func:`ignore_module_mutations`, given every cell's flow).
A cell *reads* a name it uses before (re)defining it. Statements are visited in execution order;
both branches of an ``if`` count. Names bound inside comprehensions and lambdas are local to them.
What the rules miss, an ``after:`` tag covers.
"""

from __future__ import annotations

import ast
import builtins
import symtable
from dataclasses import dataclass, field

from nb2prod.core.source import UNPARSABLE

MUTATING_METHODS = frozenset({
    "fit", "partial_fit", "append", "extend", "insert", "update", "pop", "remove", "clear",
    "sort", "reverse", "add", "discard", "setdefault", "set_params",
})
BUILTIN_NAMES = frozenset(dir(builtins)) | {"display", "__name__", "__file__", "__builtins__"}
NONDETERMINISTIC_CALLS = frozenset({
    "time.time", "time.time_ns", "datetime.now", "datetime.utcnow", "date.today",
    "random.random", "random.randint", "random.choice", "random.shuffle", "random.sample",
    "random.uniform", "np.random.rand", "np.random.randn", "np.random.randint", "np.random.random",
    "np.random.choice", "np.random.shuffle", "np.random.permutation", "np.random.normal",
    "uuid.uuid1", "uuid.uuid4", "os.urandom", "requests.get", "requests.post", "urlopen",
})

_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)


@dataclass
class CellFlow:
    """What one cell reads, defines and uses."""

    reads: list[str] = field(default_factory=list)
    defines: set[str] = field(default_factory=set)
    mutates: set[str] = field(default_factory=set)
    mutated_only: set[str] = field(default_factory=set)  # mutated, never bound here
    imports: set[str] = field(default_factory=set)
    loads: set[str] = field(default_factory=set)
    functions: dict[str, set[str]] = field(default_factory=dict)
    nondeterministic: list[str] = field(default_factory=list)
    star_import: bool = False


def analyze(code: str) -> CellFlow:
    """Analyze the (magic-free) code of one cell."""
    tree = ast.parse(code)
    visitor = _FlowVisitor()
    for stmt in tree.body:
        visitor.visit(stmt)
    flow = visitor.flow
    flow.functions = _function_globals(code, tree)
    flow.mutates -= flow.imports
    flow.mutated_only = visitor.mutation_only
    return flow


def imported_modules(code: str) -> set[str]:
    """The absolute modules the (magic-free) code of a cell imports as it runs: ``import a.b`` gives ``a.b``,
    ``from a.b import c`` gives ``a.b`` and ``a.b.c`` (``c`` may be a submodule); imports inside functions and
    classes, relative imports and code that does not parse give none."""
    try:
        tree = ast.parse(code)
    except UNPARSABLE:
        return set()
    modules: set[str] = set()
    pending: list[ast.AST] = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module:
                modules.add(node.module)
                modules.update(f"{node.module}.{alias.name}" for alias in node.names if alias.name != "*")
        elif not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            pending.extend(ast.iter_child_nodes(node))
    return modules


def is_blank(code: str) -> bool:
    """True when the code has no statements (only comments, or magics that were dropped)."""
    try:
        return not ast.parse(code).body
    except UNPARSABLE:
        return False


def ignore_module_mutations(flows: list[CellFlow]) -> None:
    """Mutating a module the notebook imports (``sys.path.append``) does not (re)define it."""
    modules = {name for flow in flows for name in flow.imports}
    for flow in flows:
        flow.defines -= flow.mutated_only & modules
        flow.mutates -= modules


def parameter_assignments(code: str) -> tuple[dict[str, tuple[bool, object]], int]:
    """Top-level ``NAME = value`` bindings of a parameters cell.

    Returns ``{name: (is_literal, value)}`` and the number of other statements.
    """
    found: dict[str, tuple[bool, object]] = {}
    others = 0
    for stmt in ast.parse(code).body:
        targets: list[ast.expr] = []
        value = None
        if isinstance(stmt, ast.Assign):
            targets, value = stmt.targets, stmt.value
        elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
            targets, value = [stmt.target], stmt.value
        names = [t.id for t in targets if isinstance(t, ast.Name)]
        if not names or len(names) != len(targets):
            others += 1
            for name in _bound_names(stmt):
                found.setdefault(name, (False, None))
            continue
        try:
            literal = (True, ast.literal_eval(value))
        except (ValueError, SyntaxError, TypeError, RecursionError):
            literal = (False, None)
        for name in names:
            found[name] = literal
    return found, others


def printed_names(code: str) -> list[str]:
    """Names in ``print(name)`` lines (Kale's ``pipeline-metrics`` cell)."""
    names = []
    for stmt in ast.parse(code).body:
        if (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call)
                and isinstance(stmt.value.func, ast.Name) and stmt.value.func.id == "print"):
            names += [a.id for a in stmt.value.args if isinstance(a, ast.Name)]
    return names


def _bound_names(stmt: ast.stmt) -> list[str]:
    v = _FlowVisitor()
    v.visit(stmt)
    return sorted(v.flow.defines)


def _root_name(node: ast.expr) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call, ast.Starred)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def _dotted(node: ast.expr) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


class _FlowVisitor(ast.NodeVisitor):
    def __init__(self) -> None:
        self.flow = CellFlow()
        self.local_scopes: list[set[str]] = []
        self.mutation_only: set[str] = set()

    # --- names -----------------------------------------------------------------------
    def _read(self, name: str) -> None:
        if any(name in scope for scope in self.local_scopes):
            return
        self.flow.loads.add(name)
        if name not in self.flow.defines and name not in self.flow.reads:
            self.flow.reads.append(name)

    def _define(self, name: str) -> None:
        if self.local_scopes:
            self.local_scopes[-1].add(name)
        else:
            self.flow.defines.add(name)
            self.mutation_only.discard(name)

    def _mutate(self, name: str | None) -> None:
        if name is None or self.local_scopes:
            return
        if name not in self.flow.defines:
            self.mutation_only.add(name)
        self.flow.defines.add(name)
        self.flow.mutates.add(name)

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Load):
            self._read(node.id)
        else:
            self._define(node.id)

    def _store_target(self, target: ast.expr) -> None:
        if isinstance(target, (ast.Attribute, ast.Subscript)):
            self.visit(target.value)
            if isinstance(target, ast.Subscript):
                self.visit(target.slice)
            self._mutate(_root_name(target))
        elif isinstance(target, (ast.Tuple, ast.List)):
            for elt in target.elts:
                self._store_target(elt)
        elif isinstance(target, ast.Starred):
            self._store_target(target.value)
        else:
            self.visit(target)

    # --- statements, in execution order ---------------------------------------------
    def visit_Assign(self, node: ast.Assign) -> None:
        self.visit(node.value)
        for target in node.targets:
            self._store_target(target)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self.visit(node.annotation)
        if node.value is not None:
            self.visit(node.value)
            self._store_target(node.target)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self.visit(node.value)
        if isinstance(node.target, ast.Name):
            self._read(node.target.id)
            self._define(node.target.id)
        else:
            self._store_target(node.target)

    def visit_Delete(self, node: ast.Delete) -> None:
        for target in node.targets:
            self._store_target(target)

    def visit_For(self, node: ast.For | ast.AsyncFor) -> None:
        self.visit(node.iter)
        self._store_target(node.target)
        for stmt in node.body + node.orelse:
            self.visit(stmt)

    visit_AsyncFor = visit_For

    def visit_With(self, node: ast.With | ast.AsyncWith) -> None:
        for item in node.items:
            self.visit(item.context_expr)
            if item.optional_vars is not None:
                self._store_target(item.optional_vars)
        for stmt in node.body:
            self.visit(stmt)

    visit_AsyncWith = visit_With

    def visit_Import(self, node: ast.Import | ast.ImportFrom) -> None:
        for alias in node.names:
            if alias.name == "*":
                self.flow.star_import = True
                continue
            name = alias.asname or alias.name.split(".")[0]
            self._define(name)
            self.flow.imports.add(name)

    visit_ImportFrom = visit_Import

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        args = node.args
        annotations = [a.annotation for a in args.posonlyargs + args.args + args.kwonlyargs
                       + [a for a in (args.vararg, args.kwarg) if a] if a.annotation] + [node.returns]
        for expr in node.decorator_list + args.defaults + [d for d in args.kw_defaults if d] + annotations:
            if expr is not None:
                self.visit(expr)
        self._define(node.name)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for expr in node.decorator_list + node.bases + [k.value for k in node.keywords]:
            self.visit(expr)
        self.local_scopes.append(set())  # the class body runs now, in its own scope
        for stmt in node.body:
            self.visit(stmt)
        self.local_scopes.pop()
        self._define(node.name)

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.type is not None:
            self.visit(node.type)
        if node.name:
            self._define(node.name)
        for stmt in node.body:
            self.visit(stmt)

    def visit_Global(self, node: ast.Global) -> None:
        pass

    visit_Nonlocal = visit_Global

    def visit_MatchAs(self, node: ast.MatchAs) -> None:
        if node.pattern is not None:
            self.visit(node.pattern)
        if node.name:
            self._define(node.name)

    def visit_MatchStar(self, node: ast.MatchStar) -> None:
        if node.name:
            self._define(node.name)

    def visit_MatchMapping(self, node: ast.MatchMapping) -> None:
        self.generic_visit(node)
        if node.rest:
            self._define(node.rest)

    # --- expressions -----------------------------------------------------------------
    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self.visit(node.value)
        if self.local_scopes:  # a walrus in a comprehension binds in the enclosing scope
            scopes, self.local_scopes = self.local_scopes, []
            self._define(node.target.id)
            self.local_scopes = scopes
        else:
            self._define(node.target.id)

    def visit_Call(self, node: ast.Call) -> None:
        self.generic_visit(node)
        dotted = _dotted(node.func)
        if dotted and any(dotted == c or dotted.endswith("." + c) for c in NONDETERMINISTIC_CALLS):
            self.flow.nondeterministic.append(dotted)
        if isinstance(node.func, ast.Attribute):
            inplace = any(k.arg == "inplace" and isinstance(k.value, ast.Constant) and k.value.value is True
                          for k in node.keywords)
            if node.func.attr in MUTATING_METHODS or inplace:
                self._mutate(_root_name(node.func.value))

    def visit_Lambda(self, node: ast.Lambda) -> None:
        for expr in node.args.defaults + [d for d in node.args.kw_defaults if d]:
            self.visit(expr)
        args = node.args
        params = {a.arg for a in args.posonlyargs + args.args + args.kwonlyargs}
        params |= {a.arg for a in (args.vararg, args.kwarg) if a}
        self.local_scopes.append(params)
        self.visit(node.body)
        self.local_scopes.pop()

    def _comprehension(self, node: ast.ListComp | ast.SetComp | ast.DictComp | ast.GeneratorExp) -> None:
        first, *rest = node.generators
        self.visit(first.iter)
        self.local_scopes.append(set())
        self._store_target(first.target)
        for cond in first.ifs:
            self.visit(cond)
        for gen in rest:
            self.visit(gen.iter)
            self._store_target(gen.target)
            for cond in gen.ifs:
                self.visit(cond)
        if isinstance(node, ast.DictComp):
            self.visit(node.key)
            self.visit(node.value)
        else:
            self.visit(node.elt)
        self.local_scopes.pop()

    visit_ListComp = visit_SetComp = visit_DictComp = visit_GeneratorExp = _comprehension


def _function_globals(code: str, tree: ast.Module) -> dict[str, set[str]]:
    """Free global names used by each top-level function and class of a cell."""
    defs = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    if not defs:
        return {}
    result: dict[str, set[str]] = {}
    for table in symtable.symtable(code, "<cell>", "exec").get_children():
        if table.get_name() in defs and table.get_type() in ("function", "class"):
            result.setdefault(table.get_name(), set()).update(_globals_of(table))
    return result


def _globals_of(table: symtable.SymbolTable) -> set[str]:
    names = {s.get_name() for s in table.get_symbols()
             if s.is_referenced() and (s.is_global() or (table.get_type() == "class" and not s.is_assigned()))}
    for child in table.get_children():
        names |= _globals_of(child)
    return names - BUILTIN_NAMES
