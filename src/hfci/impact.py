"""Impact: which model types a change of transformers' sources touches (``--changed-since``).

A model type's *sources* are the transformers files it runs, read as files (nothing is imported,
so this needs no torch and can hash a release that is not the installed one):

- its own package ``transformers/models/<module>/*.py``: modeling, configuration, tokenization,
  image, video and feature processing, processing. Not ``modular_*.py`` (the source the
  ``modeling_*.py`` files are generated from) nor ``convert_*.py`` (checkpoint conversion
  scripts): nothing imports them at run time;
- every other model package file those import, transitively (``from ..llama.modeling_llama
  import ...``: a change to Llama's attention is a change to every model built from it);
- the shared files (outside ``models/``) that any of these imports directly: ``modeling_utils``,
  ``cache_utils``, ``masking_utils``, ``processing_utils``, the attention integrations. They are
  hashed into every type that imports them, so a change to ``modeling_utils.py`` moves every
  type's hash, which is true: every model inherits from ``PreTrainedModel``. What they import in
  turn is not followed: from ``modeling_utils`` the imports reach 205 of transformers 5.23's 316
  shared files and, through the integrations' lazy imports, other model packages (BERT would
  depend on Llama, T5 and GPT-2), so every type's hash would move on any change anywhere;
- the type's own entries in the auto mappings (its config class, its heads and the mappings they
  serve, its processor classes). The mapping files themselves (``models/auto/``), like
  ``models/__init__.py`` and ``transformers/__init__.py``, list every model and change with every
  model added; they are registries, never hashed as files.

Files are hashed as bytes. Comments and docstrings count: over the 5.22.2 -> 5.23.0 and 5.23.0 ->
5.24.0 upgrades 15 of 1,505 changed model files changed only there, not worth a parse per file.

A results file records, per model type it ran, the type's hash, and the hash of every file the
hashes cover (:func:`SourceTree.record`). ``--changed-since RESULTS_OR_BASELINE`` selects the
types whose hash differs from the recorded one, and the types the recorded run did not have
(:func:`changed_since`), and says which files moved.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hfci import baselines
from hfci.catalog import Catalog, ModelRecord, transformers_root
from hfci.errors import HfciError
from hfci.results import ResultsError, read_json, read_results_file, results_files

__all__ = ["Impact", "ImpactError", "Recorded", "SourceTree", "changed_since", "read_recorded"]

# Digests are cut to 16 hex digits (64 bits): they tell a change apart, they secure nothing.
DIGEST = 16
# A results file's (and a baseline's) key for the sources of the model types it ran.
KEY = "sources"

# Files that list every model: they change whenever any model is added (see the module's docstring).
_REGISTRIES = ("__init__.py", "models/__init__.py")
_REGISTRY_DIRS = ("models/auto/",)
# Model package files that nothing imports at run time.
_NOT_RUN = ("modular_", "convert_")

# Import statements, found by a regular expression and each parsed by ``ast``: parsing only the
# statements takes a tenth of parsing whole modeling files, and the catalog holds thousands.
_IMPORT_RE = re.compile(
    r"^[ \t]*(?:from[ \t]+[.\w]+[ \t]+import[ \t]+(?:\([^)]*\)|[^\n]*)|import[ \t]+[\w. \t,]+)", re.M
)

# A name a module defines at its top level: a class, a function, an assignment.
_DEFINED_RE = re.compile(r"^(?:class|def|async def)[ \t]+(\w+)|^(\w+)[ \t]*(?::[^=\n]*)?=(?!=)", re.M)


class ImpactError(HfciError):
    """A ``--changed-since`` file that is missing, unreadable, or recorded no sources."""


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:DIGEST]


class SourceTree:
    """One transformers package directory, read as files: each file's digest and imports, once."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else transformers_root()
        self._digests: dict[str, str] = {}
        self._imports: dict[str, frozenset[str]] = {}
        self._types: dict[str, tuple[str, frozenset[str]]] = {}
        self._provided: dict[str, dict[str, set[str]]] = {}
        self._shared: list[str] | None = None

    # -- one file ------------------------------------------------------------------------------

    def digest(self, rel: str) -> str:
        """The digest of the file ``rel`` (a path under the package, ``models/bert/modeling_bert.py``)."""
        if rel not in self._digests:
            self._digests[rel] = _digest((self.root / rel).read_bytes())
        return self._digests[rel]

    def _module_file(self, parts: list[str]) -> str | None:
        """The file of a dotted module under the package (``["utils", "generic"]``), if it is one."""
        if not parts:
            return None
        rel = "/".join(parts)
        for candidate in (f"{rel}.py", f"{rel}/__init__.py"):
            if (self.root / candidate).is_file():
                return candidate
        return None

    def imports(self, rel: str) -> frozenset[str]:
        """The files of this package that the file ``rel`` imports, anywhere in it (a function's
        lazy import runs when the function does)."""
        if rel not in self._imports:
            text = (self.root / rel).read_text(encoding="utf-8")
            try:
                nodes = [n for m in _IMPORT_RE.finditer(text) for n in ast.parse(m.group(0).strip()).body]
            except SyntaxError:
                # A statement the expression cut short (a comment holding a parenthesis): the
                # whole file, then.
                nodes = list(ast.walk(ast.parse(text, filename=rel)))
            package = rel.split("/")[:-1]
            found: set[str] = set()
            for node in nodes:
                if isinstance(node, ast.Import):
                    for alias in node.names:
                        top, *rest = alias.name.split(".")
                        if top == "transformers":
                            found.add(self._module_file(rest) or "")
                elif isinstance(node, ast.ImportFrom):
                    found |= self._from_import(node, package)
            self._imports[rel] = frozenset(found - {""})
        return self._imports[rel]

    @staticmethod
    def _target(node: ast.ImportFrom, package: list[str]) -> list[str] | None:
        """The dotted module (as parts, under the package) a ``from ... import`` reads, if ours."""
        name = node.module or ""
        if node.level:
            if node.level - 1 > len(package):
                return None
            base = package[: len(package) - node.level + 1]
        elif name.split(".")[0] == "transformers":
            base, name = [], name.partition(".")[2]
        else:
            return None
        return base + (name.split(".") if name else [])

    def _from_import(self, node: ast.ImportFrom, package: list[str]) -> set[str]:
        target = self._target(node, package)
        if target is None:
            return set()
        module = self._module_file(target)
        found: set[str] = set()
        for alias in node.names:
            # ``from ..utils import generic``: the name may be a module itself; else it is
            # defined in the module, or in the package's file that the package's
            # ``__init__.py`` re-exports it from (``from ...generation import GenerationMixin``
            # runs generation/utils.py, not only the lazy table in generation/__init__.py).
            submodule = self._module_file([*target, alias.name])
            if submodule:
                found.add(submodule)
            elif module and module.endswith("__init__.py") and module not in _REGISTRIES:
                found |= self._providers(module).get(alias.name) or {module}
            elif module:
                found.add(module)
        return found

    def _providers(self, init: str) -> dict[str, set[str]]:
        """Name -> the files of a package that define it (its direct modules, top level) or that
        its ``__init__.py`` imports it from: what a lazy package's table would load."""
        if init not in self._provided:
            provided: dict[str, set[str]] = {}
            directory = (self.root / init).parent
            for path in sorted(directory.glob("*.py")):
                rel = path.relative_to(self.root).as_posix()
                text = path.read_text(encoding="utf-8")
                for match in _DEFINED_RE.finditer(text):
                    provided.setdefault(match.group(1) or match.group(2), set()).add(rel)
            package = init.split("/")[:-1]
            for m in _IMPORT_RE.finditer((self.root / init).read_text(encoding="utf-8")):
                try:
                    nodes = ast.parse(m.group(0).strip()).body
                except SyntaxError:
                    continue
                for node in nodes:
                    target = self._target(node, package) if isinstance(node, ast.ImportFrom) else None
                    if target is None or target == package:
                        continue
                    for alias in node.names:
                        source = self._module_file([*target, alias.name]) or self._module_file(target)
                        if source:
                            provided.setdefault(alias.asname or alias.name, set()).add(source)
            self._provided[init] = provided
        return self._provided[init]

    # -- one model type ------------------------------------------------------------------------

    def files_of(self, module: str) -> frozenset[str]:
        """Every file the sources of a model package cover (see the module's docstring)."""
        directory = self.root / "models" / module
        own = sorted(
            f"models/{module}/{p.name}" for p in directory.glob("*.py") if not p.name.startswith(_NOT_RUN)
        )
        seen: set[str] = set()
        stack = list(own)
        while stack:
            rel = stack.pop()
            if rel in seen or rel in _REGISTRIES or rel.startswith(_REGISTRY_DIRS):
                continue
            seen.add(rel)
            if rel.startswith("models/"):
                # Model files are followed; a shared file is hashed, its own imports are not.
                stack += self.imports(rel)
        return frozenset(seen)

    def type_hash(self, record: ModelRecord) -> tuple[str, frozenset[str]]:
        """A model type's hash, and the files it covers."""
        if record.model_type not in self._types:
            files = self.files_of(record.module)
            entries = {
                "config": record.config_class,
                "heads": sorted([h.class_name, *h.mappings] for h in record.heads),
                "processors": dict(sorted(record.processors.items())),
            }
            text = "".join(f"{rel} {self.digest(rel)}\n" for rel in sorted(files))
            text += "auto " + json.dumps(entries, sort_keys=True)
            self._types[record.model_type] = (_digest(text.encode()), files)
        return self._types[record.model_type]

    def shared_files(self) -> list[str]:
        """Every file outside ``models/`` but the registries: recorded whether or not a type's
        hash covers it, so that ``--changed-since`` can name a shared file that moved where no
        model imports it directly (``integrations/sdpa_attention.py``, reached through
        ``modeling_utils``)."""
        # Walked once: a run records its sources at every partial write of its results.
        if self._shared is None:
            found = (p.relative_to(self.root).as_posix() for p in self.root.rglob("*.py"))
            self._shared = sorted(f for f in found if not f.startswith("models/") and f not in _REGISTRIES)
        return list(self._shared)

    def record(self, records: Iterable[ModelRecord]) -> dict[str, dict[str, str]]:
        """What a results file records for the model types it ran: ``{"types": {model type:
        hash}, "files": {file: digest}}``, the files being those the types' hashes cover and
        every shared file."""
        types: dict[str, str] = {}
        files: set[str] = set(self.shared_files())
        for record in records:
            types[record.model_type], covered = self.type_hash(record)
            files |= covered
        return {"types": dict(sorted(types.items())), "files": {f: self.digest(f) for f in sorted(files)}}


# -- what a run recorded -----------------------------------------------------------------------


@dataclass
class Recorded:
    """The sources one or more results files (or a baseline) recorded."""

    types: dict[str, set[str]] = field(default_factory=dict)
    files: dict[str, set[str]] = field(default_factory=dict)
    paths: list[Path] = field(default_factory=list)

    def add(self, sources: Mapping[str, Any], path: Path) -> None:
        for key, table in (("types", self.types), ("files", self.files)):
            for name, value in (sources.get(key) or {}).items():
                table.setdefault(name, set()).add(str(value))
        self.paths.append(path)


def _sources_of(path: Path) -> Mapping[str, Any] | None:
    """The sources one results or baseline file recorded (None: it recorded none)."""
    payload = read_json(path, ImpactError, "results or baseline")
    if isinstance(payload, dict) and payload.get("schema") == baselines.SCHEMA:
        sources = baselines.Baseline.from_dict(payload, path).sources
    else:
        sources = read_results_file(path).meta.get(KEY)
    if sources is not None and not (isinstance(sources, dict) and isinstance(sources.get("types"), dict)):
        raise ImpactError(f"{path}: its {KEY!r} is not a table of model types' hashes")
    return sources or None


def read_recorded(spec: str | Path) -> Recorded:
    """The sources recorded in a results file, a directory of (shard) results, or a baseline.

    Missing, unreadable, or without sources (a file from an hfci that did not record them): one
    ``ImpactError`` naming it.
    """
    path = Path(spec)
    try:
        files = results_files([path])
        if path.is_dir() and not files:
            raise ImpactError(f"{path}: no results-*.json files under this directory")
        recorded = Recorded()
        for file in files:
            sources = _sources_of(file)
            if sources is not None:
                recorded.add(sources, file)
    except (ResultsError, baselines.BaselineError, ImpactError) as error:
        raise ImpactError(f"--changed-since: {error}") from None
    if not recorded.types:
        raise ImpactError(
            f"--changed-since {path}: records no transformers sources (written by an hfci before --changed-since); "
            "run the selection once with this hfci, then compare with that run's results"
        )
    return recorded


# -- what changed ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Impact:
    """The model types ``--changed-since`` selects, and why."""

    since: str
    total: int
    new: tuple[str, ...]
    moved: tuple[str, ...]
    # Each file that moved (or is new to the sources), with how many of the moved types it is in.
    files: tuple[tuple[str, int], ...] = ()
    # Shared files that moved which no type's hash covers: nothing was selected for them.
    uncovered: tuple[str, ...] = ()

    @property
    def selected(self) -> frozenset[str]:
        return frozenset(self.new) | frozenset(self.moved)

    def describe(self, shown: int = 8) -> str:
        """One line: how many types, of how many, and why (the moved files most types share first)."""
        line = (
            f"--changed-since {self.since}: {len(self.selected)} of {self.total} model types with a model "
            f"({len(self.moved)} whose transformers sources moved, {len(self.new)} new)"
        )
        if self.files:
            listed = ", ".join(f"{name} ({n})" for name, n in self.files[:shown])
            more = f", and {len(self.files) - shown} more" if len(self.files) > shown else ""
            line += f"; files moved: {listed}{more}"
        if self.uncovered:
            listed = ", ".join(self.uncovered[:shown])
            more = f" and {len(self.uncovered) - shown} more" if len(self.uncovered) > shown else ""
            line += (
                f"; moved too, but imported by no model directly, so selecting none: {listed}{more} "
                "(run the whole catalog if they matter to you)"
            )
        return line


def changed_since(spec: str | Path, catalog: Catalog, tree: SourceTree | None = None) -> Impact:
    """The catalog's model types whose sources moved since the run recorded in ``spec``, and the
    types that run did not have. A type recorded with two hashes (files of two runs) counts as moved."""
    recorded = read_recorded(spec)
    tree = tree or SourceTree()
    new, moved = [], []
    files: Counter[str] = Counter()
    covering: set[str] = set()
    # Config-only types (a sub-config with no model class) have no case to run, so no run records
    # them: they are neither selected nor counted.
    runnable = [record for record in catalog if record.has_model]
    for record in runnable:
        digest, covered = tree.type_hash(record)
        covering |= covered
        before = recorded.types.get(record.model_type)
        if before is None:
            new.append(record.model_type)
        elif before != {digest}:
            moved.append(record.model_type)
            files.update(f for f in covered if recorded.files.get(f) != {tree.digest(f)})
    ranked = tuple(sorted(files.items(), key=lambda kv: (-kv[1], kv[0])))
    uncovered = tuple(
        f
        for f in tree.shared_files()
        if f not in covering and f in recorded.files and recorded.files[f] != {tree.digest(f)}
    )
    return Impact(str(spec), len(runnable), tuple(new), tuple(moved), ranked, uncovered)
