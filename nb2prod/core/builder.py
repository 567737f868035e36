"""Notebook → :class:`PipelineSpec`: assign cells to stages, infer the data flow, validate."""

from __future__ import annotations

import errno
import graphlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nb2prod.core import analysis, grammar
from nb2prod.core.analysis import BUILTIN_NAMES, CellFlow
from nb2prod.core.params import jsonable, literal_type
from nb2prod.core.source import UNPARSABLE, clean_source
from nb2prod.core.spec import CellCode, Issue, Parameter, PipelineSpec, Stage
from nb2prod.errors import NotebookError

MAIN_STAGE = "main"


@dataclass
class _Cell:
    index: int
    id: str | None
    code: str
    tags: grammar.Directives
    flow: CellFlow | None = None


def real_path(path: str | Path) -> Path:
    """The absolute path of ``path``, symlinks resolved; a NotebookError for a path no file can have (a symlink
    loop, a name too long, characters the file system cannot take), its ``details["reason"]`` saying which. A
    missing or unreadable file is the reader's to report."""
    try:
        real = Path(path).resolve()
        os.stat(real)
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return real
    except RuntimeError:  # Python < 3.13 resolving a symlink loop
        reason = "a symlink loop"
    except OSError as exc:  # Python >= 3.13 resolves a loop as it is; stat then fails with ELOOP
        reason = "a symlink loop" if exc.errno == errno.ELOOP else exc.strerror or str(exc)
    except UnicodeError:
        reason = "characters the file system cannot hold"
    except ValueError as exc:  # a NUL byte
        reason = str(exc)
    else:
        return real
    raise NotebookError(f"{str(path)!r} is not a usable path: {reason}", reason=reason)


def read_notebook(path: str | Path) -> dict[str, Any]:
    """Read a notebook file as JSON, refusing anything that is not an nbformat >= 4 notebook.

    Plain JSON on purpose: importing nbformat pulls in jsonschema (~0.7 s), which a CLI run must not pay.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NotebookError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise NotebookError(f"{path}: cannot be read ({exc})") from None
    except json.JSONDecodeError as exc:
        raise NotebookError(f"{path}: not a notebook (invalid JSON at line {exc.lineno}: {exc.msg})") from None
    except RecursionError:
        raise NotebookError(f"{path}: not a notebook (JSON nested too deeply)") from None
    if not isinstance(data, dict) or not isinstance(data.get("cells"), list):
        raise NotebookError(f"{path}: not a notebook (no 'cells' list)")
    if not isinstance(data.get("nbformat"), int) or data["nbformat"] < 4:
        raise NotebookError(f"{path}: nbformat {data.get('nbformat')!r} is too old; "
                            "open and save it in Jupyter to upgrade it to nbformat 4")
    for index, cell in enumerate(data["cells"]):
        problem = _malformed_cell(cell)
        if problem:
            raise NotebookError(f"{path}: not a valid notebook (cell {index}: {problem})")
    return data


def _malformed_cell(cell: object) -> str | None:
    """What makes a cell unreadable (the parts nb2prod reads), or None."""
    if not isinstance(cell, dict):
        return "not an object"
    source, metadata = cell.get("source", ""), cell.get("metadata", {})
    if not (isinstance(source, str) or isinstance(source, list) and all(isinstance(s, str) for s in source)):
        return "'source' must be a string or a list of strings"
    if not isinstance(metadata, dict):
        return "'metadata' must be an object"
    tags = metadata.get("tags") or []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        return "'metadata.tags' must be a list of strings"
    if not isinstance(cell.get("id") or "", str) or not isinstance(cell.get("cell_type") or "", str):
        return "'id' and 'cell_type' must be strings"
    return None


def build_spec(path: str | Path) -> PipelineSpec:
    """Read a notebook and build its validated pipeline spec (errors are in ``spec.errors``)."""
    path = real_path(path)
    return spec_from_notebook(read_notebook(path), str(path))


def spec_from_notebook(nb: dict[str, Any], notebook: str) -> PipelineSpec:
    """Build the spec of an in-memory notebook."""
    return _Builder(nb, notebook).build()


class _Builder:
    def __init__(self, nb: dict[str, Any], notebook: str) -> None:
        self.spec = PipelineSpec(notebook=notebook)
        self.cells: list[_Cell] = []
        self.setup: list[_Cell] = []
        self.params_cell: _Cell | None = None
        self.skipped: list[_Cell] = []
        self.stage_cells: dict[str, list[_Cell]] = {}
        self.kale_metric_names: list[tuple[str, _Cell]] = []
        self.unassigned: list[_Cell] = []
        self._read_cells(nb)

    def error(self, message: str, cell: _Cell | None = None, stage: str | None = None) -> None:
        self.spec.errors.append(Issue(message, cell and cell.index, cell and cell.id, stage))

    def _failed(self, cell: _Cell) -> bool:
        return any(e.cell_index == cell.index for e in self.spec.errors)

    def warn(self, message: str, cell: _Cell | None = None, stage: str | None = None) -> None:
        self.spec.warnings.append(Issue(message, cell and cell.index, cell and cell.id, stage))

    # --- 1. cells and their directives --------------------------------------------
    def _read_cells(self, nb: dict[str, Any]) -> None:
        for index, raw in enumerate(nb["cells"]):
            if raw.get("cell_type") != "code":
                continue
            source = raw.get("source", "")
            source = "".join(source) if isinstance(source, list) else source
            tags = raw.get("metadata", {}).get("tags", []) or []
            clean = clean_source(source)
            cell = _Cell(index, raw.get("id"), clean.code, grammar.parse_tags(list(tags)))
            self.cells.append(cell)
            if cell.tags.role in ("skip", "injected"):  # never read: not its header, tags or code
                continue
            if clean.stage_header is not None:
                try:
                    cell.tags.merge(grammar.parse_stage_magic(clean.stage_header))
                except ValueError as exc:
                    self.error(f"bad %%stage header: {exc}. Usage: {grammar.stage_magic_parser().usage}", cell)
            for problem in cell.tags.problems:
                self.error(problem, cell)
            for message in clean.errors:
                self.error(message, cell)
            self.spec.gates += [g for g in cell.tags.gates if g not in self.spec.gates]

    # --- 2. which cell belongs where -------------------------------------------------
    def build(self) -> PipelineSpec:
        dialects = {c.tags.stage_dialect for c in self.cells if c.tags.stage_dialect}
        if len(dialects) > 1:
            first_kale = next(c for c in self.cells if c.tags.stage_dialect == "kale")
            self.error("the notebook mixes nb2prod tags (stage:) with Kale tags (step:/block:); "
                       "use one dialect", first_kale)
            return self.spec
        self.spec.dialect = dialects.pop() if dialects else "nb2prod"
        self._assign_cells()
        self._pin_cell_errors_to_stages()
        analyzed = [*self.setup, *(c for cs in self.stage_cells.values() for c in cs)]
        for cell in analyzed:
            if not self._failed(cell):
                try:
                    cell.flow = analysis.analyze(cell.code)
                except UNPARSABLE:
                    self.error("the cell is nested too deeply to analyse; split the expression", cell)
        analysis.ignore_module_mutations([c.flow for c in analyzed if c.flow])
        self._read_parameters()
        self._infer_flow()
        self._order_stages()
        if not self.spec.stages:
            self.warn("the pipeline has no stage: the notebook has no code to run outside `parameters`, `setup` "
                      "and `skip` cells (tag a cell stage:NAME, or leave code cells untagged)")
        return self.spec

    def _assign_cells(self) -> None:
        kale = self.spec.dialect == "kale"
        current: str | None = None
        block: _Cell | None = None  # Kale: the imports/functions/parameters/metrics cell untagged cells continue
        for cell in self.cells:
            tags = cell.tags
            if kale and block is not None and not tags.stage and tags.role == "code" and not tags.kale_metrics:
                self._continue_kale_block(block, cell)
                continue
            if kale and (tags.role in ("parameters", "setup") or tags.kale_metrics):
                block = cell
            elif tags.stage:
                block = None
            if tags.role == "parameters":
                if self.params_cell is None:
                    self.params_cell = cell
                else:
                    self.warn("a second parameters cell; like papermill, only the first one is used", cell)
                    current = self._add_to(current, cell)
                continue
            if tags.role == "setup":
                self.setup.append(cell)
                continue
            if tags.role == "skip":
                self.skipped.append(cell)
                continue
            if tags.role == "injected":  # as papermill replaces it; running it would undo the run's parameters
                self.warn("the `injected-parameters` cell (an executed notebook's record of a previous run's "
                          "parameters) is not run: the parameters cell's values and -p apply", cell)
                self.skipped.append(cell)
                continue
            if tags.kale_metrics:
                self._kale_metric_cell(cell)
                continue
            if tags.stage:
                if tags.stage in self.stage_cells and not kale:
                    first = self.stage_cells[tags.stage][0]
                    self.error(f"duplicate stage name {tags.stage!r} (first used in cell {first.index}); "
                               "rename one of them", cell, tags.stage)
                current = tags.stage
            elif current is None and not kale and analysis.is_blank(cell.code) and not self._failed(cell):
                continue  # only dropped magics (%load_ext nb2prod) or comments: no `main` stage for it
            elif kale and current is None:
                self.unassigned.append(cell)  # Kale: cells before the first step belong to no step
                continue
            if kale and tags.prev and (tags.stage is None or tags.stage in self.stage_cells):
                self.warn("Kale reads prev: only on the cell that starts a step; ignored here", cell, current)
                tags.prev = []
            current = self._add_to(current, cell)
        self.setup.sort(key=lambda c: (c.tags.kale_setup_order, c.index))

    def _continue_kale_block(self, block: _Cell, cell: _Cell) -> None:
        """Kale appends an untagged cell to the special block above it."""
        if block.tags.kale_metrics:
            self._kale_metric_cell(cell)
            return
        if block.tags.role == "parameters":
            self.warn("Kale merges this cell into pipeline-parameters; nb2prod reads one parameters cell, "
                      "so it runs as setup and its values cannot be overridden: move them into that cell", cell)
        cell.tags.kale_setup_order = 2 if block.tags.role == "parameters" else block.tags.kale_setup_order
        self.setup.append(cell)

    def _kale_metric_cell(self, cell: _Cell) -> None:
        if not self._failed(cell):  # a cell with a syntax error already has its error
            self.kale_metric_names += [(n, cell) for n in analysis.printed_names(cell.code)]

    def _pin_cell_errors_to_stages(self) -> None:
        stage_of = {c.index: name for name, cells in self.stage_cells.items() for c in cells}
        for issue in self.spec.errors:
            if issue.stage is None and issue.cell_index in stage_of:
                issue.stage = stage_of[issue.cell_index]

    def _add_to(self, current: str | None, cell: _Cell) -> str:
        name = current or MAIN_STAGE
        self.stage_cells.setdefault(name, []).append(cell)
        stage = self.spec.stages.setdefault(name, Stage(name))
        tags = cell.tags
        stage.cells.append(cell.index)
        stage.after += [a for a in tags.after + tags.prev if a not in stage.after]
        stage.resources.update(tags.resources)
        stage.retries = tags.retries if tags.retries is not None else stage.retries
        stage.timeout = tags.timeout if tags.timeout is not None else stage.timeout
        stage.nocache |= tags.nocache
        stage.input_files += tags.inputs
        stage.register.update(tags.register)
        stage.monitor += [v for v in tags.monitor if v not in stage.monitor]
        self.spec.cells[cell.index] = CellCode(cell.index, cell.id, cell.code)
        return name

    def _read_parameters(self) -> None:
        cell = self.params_cell
        for setup_cell in self.setup:
            self.spec.setup_cells.append(setup_cell.index)
            self.spec.cells[setup_cell.index] = CellCode(setup_cell.index, setup_cell.id, setup_cell.code)
        if cell is None or self._failed(cell):
            return
        self.spec.parameters_cell = cell.index
        self.spec.cells[cell.index] = CellCode(cell.index, cell.id, cell.code)
        found, others = analysis.parameter_assignments(cell.code)
        if others:
            self.warn(f"the parameters cell has {others} statement(s) that are not NAME = literal; "
                      "they run in every stage, and names they bind have type 'any'", cell)
        for name, (literal, value) in found.items():
            self.spec.parameters[name] = Parameter(name, literal_type(value) if literal else "any",
                                                   jsonable(value) if literal else None)

    # --- 3. data flow --------------------------------------------------------------
    def _infer_flow(self) -> None:
        functions: dict[str, set[str]] = {}
        for cell in [*self.setup, *(c for cs in self.stage_cells.values() for c in cs)]:
            if cell.flow:
                for name, names in cell.flow.functions.items():
                    functions.setdefault(name, set()).update(names)
        available = set(self.spec.parameters) | BUILTIN_NAMES
        star = False
        for cell in self.setup:
            if cell.flow:
                available |= cell.flow.defines
                star |= cell.flow.star_import
        order = list(self.stage_cells)
        defines: dict[str, set[str]] = {}
        for position, name in enumerate(order):
            stage = self.spec.stages[name]
            reads, defined, mutated = self._stage_reads(self.stage_cells[name], functions)
            defines[name] = defined
            stage.parameters_read = sorted(r for r in reads if r in self.spec.parameters)
            for read, cell in reads.items():
                producer = self._producer(read, order[:position], defines, name)
                if producer:
                    stage.inputs.append(read)
                    self._edge(producer, name)
                    self.spec.stages[producer].outputs.append(read)
                    if read in mutated:
                        stage.mutated_inputs.append(read)
                elif read in available or star:
                    continue
                elif cell is None or self.spec.dialect == "kale" and any(read in d for d in defines.values()):
                    continue  # a name free in a function the Kale step defines; or warned in _producer
                else:
                    self.error(self._undefined_hint(read, order[position + 1:], defines), cell, name)
            for call in sorted({c for cell in self.stage_cells[name] if cell.flow
                                for c in cell.flow.nondeterministic}) if not stage.nocache else []:
                self.warn(f"calls {call}(), which is not deterministic; tag the stage `nocache` "
                          "so its cached result is never reused", self.stage_cells[name][0], name)
            self._metrics(stage, self.stage_cells[name])
            self._check_bound(name, defined)
        for name in order:
            stage = self.spec.stages[name]
            stage.outputs = sorted(set(stage.outputs))
            for after in stage.after:
                if after not in self.spec.stages:
                    known = ", ".join(self.spec.stages) or "none"
                    self.error(f"depends on unknown stage {after!r} (known stages: {known})",
                               self._cell_with_dep(name, after), name)
                else:
                    self._edge(after, name)
        self._kale_metrics(order, defines)

    def _stage_reads(self, cells: list[_Cell], functions: dict[str, set[str]]):
        """Names the stage reads (→ the cell reading it; None for Kale's names free in its functions)."""
        reads: dict[str, _Cell | None] = {}
        defined: set[str] = set()
        mutated: set[str] = set()
        for cell in cells:
            if not cell.flow:
                continue
            names = list(cell.flow.reads)
            for used in cell.flow.loads & functions.keys():
                names += sorted(_closure(used, functions) - cell.flow.defines)
            for read in names:
                if read not in defined and read not in reads and read not in BUILTIN_NAMES:
                    reads[read] = cell
            defined |= cell.flow.defines
            mutated |= cell.flow.mutates
        if self.spec.dialect == "kale":  # as Kale (pyflakes): names free in the functions a step defines
            free = {n for c in cells if c.flow for names in c.flow.functions.values() for n in names}
            reads.update(dict.fromkeys(sorted(free - defined - reads.keys() - BUILTIN_NAMES)))
        return reads, defined, mutated

    def _producer(self, read: str, earlier: list[str], defines: dict[str, set[str]], stage: str) -> str | None:
        if self.spec.dialect == "nb2prod":
            return next((s for s in reversed(earlier) if read in defines[s]), None)
        ancestors = self._kale_ancestors(stage)
        producer = next((s for s in reversed(list(defines)) if s in ancestors and read in defines[s]), None)
        if producer is None and any(read in defines[s] for s in defines if s != stage):
            other = next(s for s in defines if s != stage and read in defines[s])
            self.warn(f"reads {read!r}, which only step {other!r} defines, but {other!r} is not an "
                      f"ancestor; add the tag prev:{other}", self.stage_cells[stage][0], stage)
        return producer

    def _kale_ancestors(self, stage: str) -> set[str]:
        seen: set[str] = set()
        todo = list(self.spec.stages[stage].after)
        while todo:
            name = todo.pop()
            if name not in seen and name in self.spec.stages:
                seen.add(name)
                todo += self.spec.stages[name].after
        return seen

    def _undefined_hint(self, read: str, later: list[str], defines: dict[str, set[str]]) -> str:
        definer = next((s for s in later if read in defines.get(s, ()) or
                        any(c.flow and read in c.flow.defines for c in self.stage_cells[s])), None)
        if definer:
            return (f"reads {read!r} before any stage defines it: it is first defined in later stage "
                    f"{definer!r}; move the cell, or define {read!r} earlier")
        if _defined_in(read, self.skipped):
            return f"reads {read!r}, which is defined only in a cell tagged `skip`; untag that cell or tag it `setup`"
        if _defined_in(read, self.unassigned):
            return (f"reads {read!r}, which only an untagged cell before the first step defines; as in Kale, "
                    "such cells belong to no step: tag it `imports`, `functions` or a step:NAME")
        return (f"reads {read!r}, which no upstream stage, parameter, setup cell or builtin defines; "
                "define it in an earlier stage or a `setup` cell")

    def _cell_with_dep(self, stage: str, dep: str) -> _Cell:
        cells = self.stage_cells[stage]
        return next((c for c in cells if dep in c.tags.after + c.tags.prev), cells[0])

    def _edge(self, a: str, b: str) -> None:
        if (a, b) not in self.spec.edges and a != b:
            self.spec.edges.append((a, b))

    def _metrics(self, stage: Stage, cells: list[_Cell]) -> None:
        for cell in cells:
            if cell.tags.metrics and cell.flow:
                stage.metrics += sorted(cell.flow.defines - set(stage.metrics))

    def _check_bound(self, name: str, defined: set[str]) -> None:
        """A ``register:``/``monitor:`` variable must be bound by the stage whose cell carries the tag."""
        for cell in self.stage_cells[name]:
            if self._failed(cell):
                continue  # its own error (syntax, bad tag) says more
            tagged = [("register", v) for v in cell.tags.register] + [("monitor", v) for v in cell.tags.monitor]
            for kind, var in tagged:
                if var not in defined:
                    self.error(f"{kind}:{var} names {var!r}, which stage {name!r} does not bind; tag the cell "
                               f"of the stage that assigns {var!r}", cell, name)

    def _kale_metrics(self, order: list[str], defines: dict[str, set[str]]) -> None:
        for name, cell in self.kale_metric_names:
            definer = next((s for s in reversed(order) if name in defines[s]), None)
            if definer is None and name in self.spec.parameters and order:
                definer = order[-1]  # a parameter: every stage knows it; Kale's metrics step runs last
            if definer is None:
                self.error(f"pipeline-metrics prints {name!r}, which no step defines", cell)
            elif name not in self.spec.stages[definer].metrics:
                self.spec.stages[definer].metrics.append(name)

    def _order_stages(self) -> None:
        position = {name: i for i, name in enumerate(self.spec.stages)}
        sorter = graphlib.TopologicalSorter({n: set() for n in self.spec.stages})
        for a, b in self.spec.edges:
            sorter.add(b, a)
        try:
            sorter.prepare()
        except graphlib.CycleError as exc:
            cycle = exc.args[1]
            self.error("the stages form a cycle: " + " -> ".join(cycle) +
                       "; remove one of the after:/prev: dependencies", None, cycle[0])
            return
        ordered: list[str] = []
        while sorter.is_active():
            ready = sorted(sorter.get_ready(), key=position.__getitem__)
            ordered += ready
            sorter.done(*ready)
        for name in ordered:
            self.spec.stages[name].upstream = sorted({a for a, b in self.spec.edges if b == name},
                                                     key=position.__getitem__)
        self.spec.stages = {n: self.spec.stages[n] for n in ordered}
        self.spec.edges.sort(key=lambda e: (position[e[0]], position[e[1]]))


def _closure(name: str, functions: dict[str, set[str]]) -> set[str]:
    seen: set[str] = set()
    todo = [name]
    while todo:
        for used in functions.get(todo.pop(), ()):
            if used not in seen:
                seen.add(used)
                todo.append(used)
    return seen


def _defined_in(name: str, cells: list[_Cell]) -> bool:
    for cell in cells:
        try:
            if name in analysis.analyze(cell.code).defines:
                return True
        except UNPARSABLE:
            continue
    return False

