"""Catalog: one record per model type of the installed transformers.

Everything here is read from transformers' own auto-mapping tables. Those tables live in
modules that import torch when executed, and the matrix planner must run without torch, so the
tables are read from source: each top-level assignment made of literals (dicts, tuples, strings,
names of earlier tables) is evaluated, everything else is skipped. Nothing about a model is
listed by hand here; the priority tiers come from ``data/tiers.toml``.
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any

from hfci import data
from hfci.errors import HfciError, validate_choices

__all__ = [
    "CATEGORIES",
    "GENERATIVE_MAPPINGS",
    "INPUT_MODALITY",
    "MAPPING_MODALITY",
    "PROCESSOR_MODALITY",
    "SUB_CONFIG_ROLE_MODALITY",
    "SUPPORTED_TRANSFORMERS",
    "TIERS",
    "Catalog",
    "CatalogError",
    "Head",
    "ModelRecord",
    "build_catalog",
    "build_heads",
    "categorize",
    "check_supported",
    "defined_classes",
    "entries_note",
    "family_of",
    "head_mappings",
    "identifier_for",
    "load_catalog",
    "main_inputs",
    "mapping_tasks",
    "module_name",
    "pipeline_task_types",
    "processors_for",
    "read_transformers_tables",
    "resolve_class",
    "sub_config_roles",
    "task_requirements",
    "tier_table",
    "transformers_root",
    "unmatched_entries",
]

CATEGORIES = ("text", "vision", "audio", "multimodal", "time-series", "other")
TIERS = ("critical", "high", "medium", "other")

# What each of transformers' head mappings consumes (or, for text-to-speech, produces).
# This is knowledge about the mapping tables, not about any one model.
MAPPING_MODALITY: dict[str, str] = {
    "MODEL_FOR_CAUSAL_LM": "text",
    "MODEL_FOR_MASKED_LM": "text",
    "MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM": "text",
    "MODEL_FOR_SEQUENCE_CLASSIFICATION": "text",
    "MODEL_FOR_QUESTION_ANSWERING": "text",
    "MODEL_FOR_TOKEN_CLASSIFICATION": "text",
    "MODEL_FOR_MULTIPLE_CHOICE": "text",
    "MODEL_FOR_NEXT_SENTENCE_PREDICTION": "text",
    "MODEL_FOR_TEXT_ENCODING": "text",
    "MODEL_FOR_TABLE_QUESTION_ANSWERING": "text",
    "MODEL_FOR_IMAGE": "vision",
    "MODEL_FOR_IMAGE_CLASSIFICATION": "vision",
    "MODEL_FOR_IMAGE_SEGMENTATION": "vision",
    "MODEL_FOR_SEMANTIC_SEGMENTATION": "vision",
    "MODEL_FOR_INSTANCE_SEGMENTATION": "vision",
    "MODEL_FOR_UNIVERSAL_SEGMENTATION": "vision",
    "MODEL_FOR_OBJECT_DETECTION": "vision",
    "MODEL_FOR_DEPTH_ESTIMATION": "vision",
    "MODEL_FOR_MASKED_IMAGE_MODELING": "vision",
    "MODEL_FOR_CAUSAL_IMAGE_MODELING": "vision",
    "MODEL_FOR_BACKBONE": "vision",
    "MODEL_FOR_KEYPOINT_DETECTION": "vision",
    "MODEL_FOR_KEYPOINT_MATCHING": "vision",
    "MODEL_FOR_IMAGE_TO_IMAGE": "vision",
    "MODEL_FOR_MASK_GENERATION": "vision",
    "MODEL_FOR_VIDEO_CLASSIFICATION": "vision",
    "MODEL_FOR_IMAGE_MATTING": "vision",
    "MODEL_FOR_NORMAL_ESTIMATION": "vision",
    "MODEL_FOR_POINTMAP_ESTIMATION": "vision",
    "MODEL_FOR_POSE_ESTIMATION": "vision",
    "MODEL_FOR_TEXT_RECOGNITION": "vision",
    "MODEL_FOR_TABLE_RECOGNITION": "vision",
    "MODEL_FOR_AUDIO_CLASSIFICATION": "audio",
    "MODEL_FOR_CTC": "audio",
    "MODEL_FOR_RNNT": "audio",
    "MODEL_FOR_TDT": "audio",
    "MODEL_FOR_AUDIO_FRAME_CLASSIFICATION": "audio",
    "MODEL_FOR_AUDIO_XVECTOR": "audio",
    "MODEL_FOR_SPEECH_SEQ_2_SEQ": "audio",
    "MODEL_FOR_AUDIO_TOKENIZATION": "audio",
    "MODEL_FOR_TEXT_TO_SPECTROGRAM": "audio",
    "MODEL_FOR_TEXT_TO_WAVEFORM": "audio",
    "MODEL_FOR_IMAGE_TEXT_TO_TEXT": "multimodal",
    "MODEL_FOR_MULTIMODAL_LM": "multimodal",
    "MODEL_FOR_VISUAL_QUESTION_ANSWERING": "multimodal",
    "MODEL_FOR_DOCUMENT_QUESTION_ANSWERING": "multimodal",
    "MODEL_FOR_ZERO_SHOT_IMAGE_CLASSIFICATION": "multimodal",
    "MODEL_FOR_ZERO_SHOT_OBJECT_DETECTION": "multimodal",
    "MODEL_FOR_RETRIEVAL": "multimodal",
    "MODEL_FOR_TIME_SERIES_CLASSIFICATION": "time-series",
    "MODEL_FOR_TIME_SERIES_REGRESSION": "time-series",
    "MODEL_FOR_TIME_SERIES_PREDICTION": "time-series",
    "MODEL_FOR_DECISION": "other",
}

# The modality of a model's main input, for heads whose mapping says nothing (the base model).
INPUT_MODALITY: dict[str, str] = {
    "input_ids": "text",
    "inputs_embeds": "text",
    "pixel_values": "vision",
    "pixel_values_videos": "vision",
    "flattened_patches": "vision",
    "patch_embeds": "vision",
    "input_values": "audio",
    "input_features": "audio",
    "audio_mel": "audio",
    "spectrogram": "audio",
    "past_values": "time-series",
    "states": "other",
    "state": "other",
}

# A sub-config is named for its role inside its parent: ``vision_config``, ``text_config``, ...
SUB_CONFIG_ROLE_MODALITY = {
    "text": "text",
    "language": "text",
    "vision": "vision",
    "visual": "vision",
    "image": "vision",
    "audio": "audio",
    "speech": "audio",
    "acoustic": "audio",
}

PROCESSOR_MODALITY = {
    "tokenizer": "text",
    "image_processor": "vision",
    "video_processor": "vision",
    "feature_extractor": "audio",
}

# The transformers releases whose tables hfci reads (pyproject.toml pins the same range).
SUPPORTED_TRANSFORMERS = ">=4.57,<6"

# Order matters: when one class serves several mappings, the head is named after the first.
_AUTO_FILES = (
    "models/auto/auto_mappings.py",
    "models/auto/configuration_auto.py",
    "models/auto/tokenization_auto.py",
    "models/auto/feature_extraction_auto.py",
    "models/auto/image_processing_auto.py",
    "models/auto/processing_auto.py",
    "models/auto/video_processing_auto.py",
    "models/auto/modeling_auto.py",
    "pipelines/__init__.py",
)


class CatalogError(HfciError):
    """A bad selection or an installed transformers hfci cannot read."""


# The head mappings whose models generate tokens (what ``generate`` is checked on).
GENERATIVE_MAPPINGS = frozenset(
    {
        "MODEL_FOR_CAUSAL_LM",
        "MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM",
        "MODEL_FOR_SPEECH_SEQ_2_SEQ",
        "MODEL_FOR_IMAGE_TEXT_TO_TEXT",
        "MODEL_FOR_MULTIMODAL_LM",
    }
)


@dataclass(frozen=True)
class Head:
    """One model class of a model type, with the auto mappings and pipeline tasks it serves."""

    name: str
    class_name: str
    mappings: tuple[str, ...]
    tasks: tuple[str, ...]

    @property
    def generative(self) -> bool:
        """Whether the head generates (causal LM, seq2seq, image-text-to-text, ...)."""
        return bool(GENERATIVE_MAPPINGS & set(self.mappings))


@dataclass(frozen=True)
class ModelRecord:
    """Everything hfci knows about one model type, derived from transformers."""

    model_type: str
    identifier: str
    stem: str
    module: str
    config_class: str
    category: str
    family: str
    tier: str
    has_model: bool
    heads: tuple[Head, ...] = ()
    processors: Mapping[str, str] = field(default_factory=dict)

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(sorted({task for head in self.heads for task in head.tasks}))

    @property
    def base_head(self) -> Head:
        """The head that stands for the architecture: the bare ``Model``, else the first by name
        of those named ``...Model`` (``TextModel``, a borrowed ``LlamaModel``), else the first."""
        names = sorted(head.name for head in self.heads)
        if not names:
            raise CatalogError(f"{self.model_type} has no model class, so no head")
        models = ["Model"] if "Model" in names else [n for n in names if n.endswith("Model")]
        return self.head((models or names)[0])

    def head(self, name: str) -> Head:
        """The head called ``name``; a clear error naming the valid ones otherwise."""
        for head in self.heads:
            if head.name == name:
                return head
        raise CatalogError(
            f"unknown head {name!r} for {self.model_type}; valid: {', '.join(h.name for h in self.heads)}"
        )

    def to_dict(self) -> dict[str, Any]:
        """Everything derived about the model type, as ``hfci catalog --format json`` prints it."""
        record = asdict(self)
        record["processors"] = dict(self.processors)
        record["tasks"] = list(self.tasks)
        return record


@dataclass(frozen=True)
class Catalog:
    """All model types of one transformers installation."""

    transformers_version: str
    records: Mapping[str, ModelRecord]
    unmatched_tiers: tuple[tuple[str, str, str], ...] = ()
    dangling_heads: tuple[str, ...] = ()
    unmatched_entries: tuple[tuple[str, str], ...] = ()

    def __iter__(self):
        return iter(self.records.values())

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, model_type: str) -> ModelRecord:
        return self.records[model_type]

    def by_identifier(self, identifier: str) -> ModelRecord:
        """The record whose Python identifier is ``identifier`` (``xlm_roberta``)."""
        for record in self.records.values():
            if record.identifier == identifier:
                return record
        raise KeyError(identifier)

    def select(
        self,
        categories: Iterable[str] = (),
        families: Iterable[str] = (),
        tiers: Iterable[str] = (),
        models: Iterable[str] = (),
    ) -> list[ModelRecord]:
        """Records matching every given filter (each filter: any of its values). Validates values."""
        categories, families, tiers, models = (list(v) for v in (categories, families, tiers, models))
        validate_choices("category", categories, CATEGORIES, CatalogError)
        validate_choices("family", families, sorted({r.family for r in self}), CatalogError)
        validate_choices("tier", tiers, TIERS, CatalogError)
        wanted_models = {self.resolve(m) for m in models}
        return [
            r
            for r in self
            if (not categories or r.category in categories)
            and (not families or r.family in families)
            and (not tiers or r.tier in tiers)
            and (not wanted_models or r.model_type in wanted_models)
        ]

    def resolve(self, name: str) -> str:
        """The model type for a model type or its identifier; a clear error otherwise."""
        if name in self.records:
            return name
        try:
            return self.by_identifier(name).model_type
        except KeyError:
            close = sorted(m for m in self.records if name.replace("_", "-") in m.replace("_", "-"))[:10]
            hint = f" (close: {', '.join(close)})" if close else ""
            raise CatalogError(
                f"unknown model {name!r}{hint}; valid: any of the {len(self.records)} model types "
                "listed by `hfci catalog`"
            ) from None


# -- reading transformers' tables ------------------------------------------------------------


@dataclass(frozen=True)
class _Symbol:
    """A name the reader could not evaluate (a class object, a function).

    ``origin`` is its dotted path when the file imported it (``from .text_classification import
    TextClassificationPipeline``): until 5.10 named them by string, pipelines named their classes so.
    """

    name: str
    origin: str = ""


@dataclass(frozen=True)
class _LazyMapping:
    """``_LazyAutoMapping(CONFIG_MAPPING_NAMES, <names>)``: remembers which table it wraps."""

    names: str


@dataclass(frozen=True)
class _AutoClass:
    mapping: Any


class _Unsupported(Exception):
    pass


def _evaluate(node: ast.AST, ns: dict[str, Any]) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return tuple(_evaluate(e, ns) for e in node.elts)
    if isinstance(node, ast.Dict):
        out: dict[Any, Any] = {}
        for key, value in zip(node.keys, node.values, strict=True):
            if key is None:
                out.update(_evaluate(value, ns))
            else:
                out[_evaluate(key, ns)] = _evaluate(value, ns)
        return out
    if isinstance(node, ast.Name):
        return ns.get(node.id, _Symbol(node.id))
    if isinstance(node, ast.IfExp):
        # Conditional entries guard on optional backends; hfci wants the table as if present.
        return _evaluate(node.body, ns)
    if isinstance(node, ast.Call):
        func = node.func.value if isinstance(node.func, ast.Subscript) else node.func
        name = func.id if isinstance(func, ast.Name) else None
        if name in ("OrderedDict", "dict"):
            out = dict(_evaluate(node.args[0], ns)) if node.args else {}
            for kw in node.keywords:
                if kw.arg is None:
                    out.update(_evaluate(kw.value, ns))
                else:
                    out[kw.arg] = _evaluate(kw.value, ns)
            return out
        if name == "_LazyAutoMapping" and len(node.args) == 2 and isinstance(node.args[1], ast.Name):
            return _LazyMapping(node.args[1].id)
    raise _Unsupported


def _runtime_statements(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """The top-level statements that run on import, with every optional backend present.

    Older releases wrap their tables in ``if TYPE_CHECKING: <annotation> else: <table>`` and their
    imports in ``if is_torch_available():``; the table hfci wants is the one that runs, with the
    backends there (as for conditional entries, see ``_evaluate``).
    """
    for stmt in body:
        if isinstance(stmt, ast.If):
            test = stmt.test
            name = (
                test.id
                if isinstance(test, ast.Name)
                else test.attr
                if isinstance(test, ast.Attribute)
                else ""
            )
            yield from _runtime_statements(stmt.orelse if name == "TYPE_CHECKING" else stmt.body)
        elif isinstance(stmt, ast.Try):
            yield from _runtime_statements(stmt.body)
        else:
            yield stmt


def _imported(stmt: ast.ImportFrom, package: str) -> dict[str, str]:
    """Name -> dotted path for ``from .module import Name`` (relative to ``package``)."""
    parts = package.split(".")
    # ``from .x`` is x in the package, ``from ..x`` x in its parent; an absolute import names it all.
    base = parts[: len(parts) - stmt.level + 1] if stmt.level else []
    prefix = ".".join([*base, *([stmt.module] if stmt.module else [])])
    return {alias.asname or alias.name: f"{prefix}.{alias.name}" for alias in stmt.names if alias.name != "*"}


def _read_tables(path: Path, ns: dict[str, Any], package: str = "") -> None:
    """Evaluate the literal top-level assignments (and ``X.update(...)`` calls) of one file into ns.

    ``package`` is the file's package (``transformers.pipelines``), to resolve relative imports.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for stmt in _runtime_statements(tree.body):
        try:
            if isinstance(stmt, ast.ImportFrom):
                # A table read from an earlier file stays; other imported names keep their origin.
                for name, origin in _imported(stmt, package).items():
                    if not isinstance(ns.get(name), (dict, _AutoClass, _LazyMapping)):
                        ns[name] = _Symbol(name, origin)
            elif (
                isinstance(stmt, ast.Assign)
                and len(stmt.targets) == 1
                and isinstance(stmt.targets[0], ast.Name)
            ):
                ns[stmt.targets[0].id] = _evaluate(stmt.value, ns)
            elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.value:
                ns[stmt.target.id] = _evaluate(stmt.value, ns)
            elif (
                isinstance(stmt, ast.Expr)
                and isinstance(stmt.value, ast.Call)
                and isinstance(stmt.value.func, ast.Attribute)
                and stmt.value.func.attr == "update"
                and isinstance(stmt.value.func.value, ast.Name)
                and isinstance(ns.get(stmt.value.func.value.id), dict)
            ):
                ns[stmt.value.func.value.id].update(_evaluate(stmt.value.args[0], ns))
            elif isinstance(stmt, ast.ClassDef):
                # An auto class without its own mapping reads its base's (4.57's deprecated
                # AutoModelForVision2Seq subclasses the one that names the table).
                bases = [ns.get(b.id) for b in stmt.bases if isinstance(b, ast.Name)]
                inherited = next((b for b in bases if isinstance(b, _AutoClass)), None)
                if inherited:
                    ns[stmt.name] = inherited
                for item in stmt.body:
                    if (
                        isinstance(item, ast.Assign)
                        and isinstance(item.targets[0], ast.Name)
                        and item.targets[0].id == "_model_mapping"
                    ):
                        ns[stmt.name] = _AutoClass(_evaluate(item.value, ns))
        except _Unsupported:
            continue


def transformers_root() -> Path:
    """The installed transformers package directory, found without importing it."""
    spec = importlib.util.find_spec("transformers")
    if spec is None or not spec.submodule_search_locations:
        raise CatalogError("transformers is not installed; install it with `pip install transformers`")
    return Path(next(iter(spec.submodule_search_locations)))


def _tree_version(root: Path) -> str:
    """The ``__version__`` a transformers source tree declares, read without importing it."""
    init = root / "__init__.py"
    text = init.read_text(encoding="utf-8") if init.exists() else ""
    found = re.search(r'^__version__\s*=\s*"([^"]+)"', text, re.M)
    return found.group(1) if found else "of unknown version"


def read_transformers_tables(root: Path | None = None) -> dict[str, Any]:
    """transformers' auto-mapping tables and pipeline tasks, as plain data.

    Every file is optional: a table moved between them across releases (5.10 gathered the
    config and processor tables into ``auto_mappings.py``), and the others hold what is left.
    """
    root = root or transformers_root()
    ns: dict[str, Any] = {}
    for rel in _AUTO_FILES:
        path = root / rel
        if path.exists():
            package = ".".join(["transformers", *Path(rel).parent.parts])
            _read_tables(path, ns, package)
    if not isinstance(ns.get("CONFIG_MAPPING_NAMES"), dict) or not isinstance(
        ns.get("MODEL_MAPPING_NAMES"), dict
    ):
        raise CatalogError(
            f"could not read the auto mappings of transformers {_tree_version(root)} at {root}; "
            f"hfci supports transformers {SUPPORTED_TRANSFORMERS}"
        )
    return ns


def head_mappings(ns: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``MODEL_FOR_X`` (and ``MODEL``) -> {model type: class name or tuple of them}."""
    out = {}
    for name, value in ns.items():
        if name.startswith("MODEL") and name.endswith("_NAMES") and isinstance(value, dict):
            key = name.removesuffix("_NAMES").removesuffix("_MAPPING")
            out[key] = value
    # MODEL first, so the base class is named after it.
    return dict(sorted(out.items(), key=lambda kv: (kv[0] != "MODEL", kv[0])))


def mapping_tasks(ns: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    """``MODEL_FOR_X`` -> the pipeline tasks whose auto classes read that mapping."""
    out: dict[str, list[str]] = {}
    for task, spec in (ns.get("SUPPORTED_TASKS") or {}).items():
        for auto in spec.get("pt", ()) if isinstance(spec, dict) else ():
            if isinstance(auto, _AutoClass):
                lazy = auto.mapping
                if isinstance(lazy, _Symbol):
                    lazy = ns.get(lazy.name)
                if isinstance(lazy, _LazyMapping):
                    key = lazy.names.removesuffix("_NAMES").removesuffix("_MAPPING")
                    out.setdefault(key, []).append(task)
    return {k: tuple(sorted(v)) for k, v in out.items()}


def pipeline_task_types(ns: Mapping[str, Any]) -> dict[str, str]:
    """Pipeline task -> the input type transformers declares for it (text, image, audio, ...)."""
    return {
        task: spec.get("type", "")
        for task, spec in (ns.get("SUPPORTED_TASKS") or {}).items()
        if isinstance(spec, dict)
    }


_LOADS_RE = re.compile(r"^    _load_(tokenizer|image_processor|feature_extractor|processor) = True", re.M)


def task_requirements(ns: Mapping[str, Any], root: Path) -> dict[str, frozenset[str]]:
    """Pipeline task -> the processor kinds its pipeline class loads (read from its source)."""
    out = {}
    for task, spec in (ns.get("SUPPORTED_TASKS") or {}).items():
        impl = spec.get("impl", "") if isinstance(spec, dict) else ""
        # A dotted string from 5.10 on, an imported class before.
        impl = impl.origin if isinstance(impl, _Symbol) else impl if isinstance(impl, str) else ""
        parts = impl.split(".")
        path = root.joinpath(*parts[1:-1]).with_suffix(".py") if len(parts) > 2 else None
        text = path.read_text(encoding="utf-8") if path and path.exists() else ""
        out[task] = frozenset(_LOADS_RE.findall(text))
    return out


_SUB_CONFIG_ENTRY_RE = re.compile(r'"(\w+?)_config":\s*(\w+)')


def sub_config_roles(module_dir: Path) -> dict[str, str]:
    """Config class name -> its role (``vision``, ``text``, ...) in the parent configs of one module."""
    roles = {}
    for path in sorted(module_dir.glob("configuration_*.py")):
        for role, class_name in _SUB_CONFIG_ENTRY_RE.findall(path.read_text(encoding="utf-8")):
            roles.setdefault(class_name, role)
    return roles


def module_name(model_type: str, ns: Mapping[str, Any]) -> str:
    """The transformers module (under ``transformers.models``) of a model type."""
    special = ns.get("SPECIAL_MODEL_TYPE_TO_MODULE_NAME") or {}
    name = special.get(model_type, model_type.replace("-", "_"))
    # Before 5.0, retired models lived on under models/deprecated/.
    return f"deprecated.{name}" if name in (ns.get("DEPRECATED_MODELS") or ()) else name


def _module_dir(root: Path, module: str) -> Path:
    return root.joinpath("models", *module.split("."))


def identifier_for(model_type: str) -> str:
    """A Python identifier for a model type: ``xlm-roberta`` -> ``xlm_roberta``."""
    ident = re.sub(r"\W", "_", model_type)
    return ident if ident.isidentifier() else f"_{ident}"


_CLASS_RE = re.compile(r"^class (\w+)\(([^)]*)\):", re.M)
_MAIN_INPUT_RE = re.compile(r'^    main_input_name\s*=\s*"(\w+)"', re.M)


def main_inputs(module_dir: Path) -> dict[str, str]:
    """Class name -> ``main_input_name`` for the modeling classes of one transformers module."""
    own: dict[str, str] = {}
    bases: dict[str, list[str]] = {}
    for path in sorted(module_dir.glob("modeling_*.py")):
        text = path.read_text(encoding="utf-8")
        starts = list(_CLASS_RE.finditer(text))
        for i, match in enumerate(starts):
            end = starts[i + 1].start() if i + 1 < len(starts) else len(text)
            bases[match.group(1)] = [b.strip().split(".")[-1] for b in match.group(2).split(",") if b.strip()]
            found = _MAIN_INPUT_RE.search(text, match.end(), end)
            if found:
                own[match.group(1)] = found.group(1)

    def resolve(name: str, seen: frozenset[str] = frozenset()) -> str | None:
        if name in own:
            return own[name]
        for base in bases.get(name, ()):
            if base not in seen:
                found = resolve(base, seen | {name})
                if found:
                    return found
        return None

    return {name: resolve(name) or "input_ids" for name in bases}


def _as_tuple(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (tuple, list)):
        return tuple(v for v in value if isinstance(v, str))
    return ()


def processors_for(model_type: str, ns: Mapping[str, Any]) -> dict[str, str]:
    """The tokenizer, image processor, feature extractor, processor and video processor classes."""
    found: dict[str, str] = {}
    tables = {
        "tokenizer": ("TOKENIZER_MAPPING_NAMES",),
        "image_processor": ("IMAGE_PROCESSOR_MAPPING_NAMES",),
        "feature_extractor": ("FEATURE_EXTRACTOR_MAPPING_NAMES", "MISSING_FEATURE_EXTRACTOR_MAPPING_NAMES"),
        "processor": ("PROCESSOR_MAPPING_NAMES",),
        "video_processor": ("VIDEO_PROCESSOR_MAPPING_NAMES",),
    }
    for kind, names in tables.items():
        for table in names:
            value = (ns.get(table) or {}).get(model_type)
            if isinstance(value, dict):
                # Image processors come per backend; PIL needs no torchvision.
                value = value.get("pil") or value.get("torchvision") or next(iter(value.values()), None)
            classes = _as_tuple(value)
            if classes:
                found[kind] = classes[-1] if kind == "tokenizer" else classes[0]
                break
    return found


def _head_name(class_name: str, stem: str) -> str:
    if class_name.startswith(stem) and len(class_name) > len(stem):
        return class_name[len(stem) :]
    return class_name


def build_heads(
    model_type: str,
    stem: str,
    mappings: Mapping[str, Mapping[str, Any]],
    tasks: Mapping[str, tuple[str, ...]],
    requirements: Mapping[str, frozenset[str]],
    processors: Mapping[str, str],
) -> tuple[Head, ...]:
    """One head per model class; a head serves a task only if the model has what its pipeline loads."""
    by_class: dict[str, list[str]] = {}
    for key, table in mappings.items():
        for class_name in _as_tuple(table.get(model_type)):
            by_class.setdefault(class_name, []).append(key)
    heads = []
    for class_name, keys in by_class.items():
        head_tasks = sorted(
            {
                t
                for k in keys
                for t in tasks.get(k, ())
                if requirements.get(t, frozenset()) <= processors.keys()
            }
        )
        heads.append(Head(_head_name(class_name, stem), class_name, tuple(keys), tuple(head_tasks)))
    return tuple(heads)


def categorize(head_modalities: Iterable[str], processors: Mapping[str, str], base_only: bool = False) -> str:
    """The category of a model from what its heads consume, processors as a fallback.

    Speech models read audio and also have text heads (Whisper's decoder), so text beside audio
    stays audio; text beside vision is multimodal.
    """
    seen = set(head_modalities)
    if not seen & {"text", "vision", "audio", "multimodal", "time-series"}:
        seen |= {PROCESSOR_MODALITY[k] for k in processors if k in PROCESSOR_MODALITY}
    if "time-series" in seen:
        return "time-series"
    if base_only and len(seen & {"text", "vision", "audio"}) > 1:
        # A base model fed by processors of several modalities (CLAP: text and audio).
        return "multimodal"
    if "multimodal" in seen or {"vision", "audio"} <= seen or {"vision", "text"} <= seen:
        return "multimodal"
    for category in ("audio", "vision", "text"):
        if category in seen:
            return category
    return "other"


_DENSE_VISION = {
    "MODEL_FOR_OBJECT_DETECTION",
    "MODEL_FOR_IMAGE_SEGMENTATION",
    "MODEL_FOR_SEMANTIC_SEGMENTATION",
    "MODEL_FOR_INSTANCE_SEGMENTATION",
    "MODEL_FOR_UNIVERSAL_SEGMENTATION",
    "MODEL_FOR_DEPTH_ESTIMATION",
    "MODEL_FOR_MASK_GENERATION",
    "MODEL_FOR_KEYPOINT_DETECTION",
    "MODEL_FOR_KEYPOINT_MATCHING",
}


def family_of(category: str, mapping_keys: set[str]) -> str:
    """A family within the category, from the head mappings the model type appears in."""
    if category == "text":
        if "MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM" in mapping_keys:
            return "encoder-decoder"
        if "MODEL_FOR_MASKED_LM" in mapping_keys or "MODEL_FOR_CAUSAL_LM" not in mapping_keys:
            return "encoder-only"
        return "decoder-only"
    if category == "vision":
        if "MODEL_FOR_VIDEO_CLASSIFICATION" in mapping_keys:
            return "video-encoder"
        if mapping_keys & _DENSE_VISION:
            return "vision-dense-prediction"
        if "MODEL_FOR_IMAGE_TO_IMAGE" in mapping_keys:
            return "image-to-image"
        return "vision-encoder"
    if category == "audio":
        if mapping_keys & {"MODEL_FOR_TEXT_TO_SPECTROGRAM", "MODEL_FOR_TEXT_TO_WAVEFORM"}:
            return "text-to-speech"
        if "MODEL_FOR_SPEECH_SEQ_2_SEQ" in mapping_keys:
            return "speech-seq2seq"
        if "MODEL_FOR_AUDIO_TOKENIZATION" in mapping_keys:
            return "audio-codec"
        return "speech-encoder"
    if category == "multimodal":
        if mapping_keys & {
            "MODEL_FOR_IMAGE_TEXT_TO_TEXT",
            "MODEL_FOR_MULTIMODAL_LM",
            "MODEL_FOR_VISUAL_QUESTION_ANSWERING",
        }:
            return "vision-language-generative"
        if "MODEL_FOR_DOCUMENT_QUESTION_ANSWERING" in mapping_keys:
            return "document"
        return "multimodal-encoder"
    if category == "time-series":
        return "time-series"
    return "other"


def tier_table(model_types: Iterable[str]) -> tuple[dict[str, str], tuple[tuple[str, str, str], ...]]:
    """Model type -> tier from ``data/tiers.toml``, and the (tier, name, type) entries that match nothing."""
    known = set(model_types)
    tiers: dict[str, str] = {}
    unmatched = []
    for tier in TIERS[:-1]:
        for name, model_type in data.load("tiers").get(tier, {}).items():
            if model_type not in known:
                unmatched.append((tier, name, model_type))
            else:
                tiers.setdefault(model_type, tier)
    return tiers, tuple(unmatched)


def _named(value: str | list[str]) -> str:
    return value if isinstance(value, str) else ", ".join(value)


def unmatched_entries(model_types: Iterable[str], version: str) -> tuple[tuple[str, str], ...]:
    """(model type, why) for each ``models.toml`` entry, or known failure in one, that does not
    apply to transformers ``version``: its model type is not there, or its range excludes it.

    Without this an entry left behind by a release (a renamed model type, a failure fixed
    upstream) would be silently ignored: its case would pass, or fail unexplained.
    """
    known = set(model_types)
    out = []
    for model_type in data.entry_model_types():
        if model_type not in known:
            out.append((model_type, f"not a model type of transformers {version}"))
            continue
        for failure in data.model_entry(model_type).get("known_failures", []):
            versions = failure.get("transformers")
            if not data.in_range(versions, version):
                what = f"{_named(failure.get('check', '*'))} of {_named(failure.get('head', '*'))}"
                out.append((model_type, f"known failure ({what}) is for transformers {versions}"))
    return tuple(out)


def entries_note(catalog: Catalog) -> str:
    """One line saying how many models.toml entries do not apply, and where they are listed."""
    types = len({model_type for model_type, _ in catalog.unmatched_entries})
    return (
        f"models.toml: {len(catalog.unmatched_entries)} entries of {types} model types do not apply "
        f"to transformers {catalog.transformers_version} (`hfci catalog --unmatched-entries` lists them)"
    )


def defined_classes(root: Path) -> set[str]:
    """Every class defined at top level in transformers' modeling sources."""
    found: set[str] = set()
    for path in [*root.glob("models/*/modeling_*.py"), *root.glob("models/deprecated/*/modeling_*.py")]:
        found.update(_CLASS_RE_NAME.findall(path.read_text(encoding="utf-8")))
    return found


_CLASS_RE_NAME = re.compile(r"^class (\w+)\(", re.M)


def build_catalog(ns: Mapping[str, Any], root: Path, version: str) -> Catalog:
    """The catalog from the auto-mapping tables read from transformers at ``root``."""
    mappings = head_mappings(ns)
    # A mapping can name a class that its module does not define (an upstream slip); such a head
    # cannot be built, so it is left out and reported instead.
    defined = defined_classes(root)
    dangling = sorted(
        {c for table in mappings.values() for v in table.values() for c in _as_tuple(v)} - defined
    )
    mappings = {
        key: {t: tuple(c for c in _as_tuple(v) if c in defined) for t, v in table.items()}
        for key, table in mappings.items()
    }
    tasks = mapping_tasks(ns)
    requirements = task_requirements(ns, root)
    configs: Mapping[str, str] = ns["CONFIG_MAPPING_NAMES"]
    tiers, unmatched = tier_table(configs)
    records = {}
    for model_type, config_class in configs.items():
        stem = config_class.removesuffix("Config")
        module = module_name(model_type, ns)
        processors = processors_for(model_type, ns)
        heads = build_heads(model_type, stem, mappings, tasks, requirements, processors)
        keys = {k for h in heads for k in h.mappings}
        modalities = [MAPPING_MODALITY[k] for k in keys if k in MAPPING_MODALITY]
        base_only = not modalities and bool(heads)
        if base_only:
            # Only the base model: what it reads, and what non-text processors prepare for it
            # (a tokenizer beside a vision encoder only decodes its outputs).
            inputs = main_inputs(_module_dir(root, module))
            modalities = [INPUT_MODALITY.get(inputs.get(h.class_name, "input_ids"), "other") for h in heads]
            modalities += [
                PROCESSOR_MODALITY[k] for k in processors if k != "tokenizer" and k in PROCESSOR_MODALITY
            ]
        category = categorize(modalities, processors, base_only)
        records[model_type] = ModelRecord(
            model_type=model_type,
            identifier=identifier_for(model_type),
            stem=stem,
            module=module,
            config_class=config_class,
            category=category,
            family=family_of(category, keys) if heads else "sub-config",
            tier=tiers.get(model_type, "other"),
            has_model=bool(heads),
            heads=heads,
            processors=processors,
        )
    return Catalog(
        version,
        _place_sub_configs(records, root),
        unmatched,
        tuple(dangling),
        unmatched_entries(records, version),
    )


def _place_sub_configs(records: dict[str, ModelRecord], root: Path) -> dict[str, ModelRecord]:
    """Give each config-only type the category of its role in its parent (or the parent's own)."""
    parents: dict[str, ModelRecord] = {}
    for record in records.values():
        if record.has_model:
            parents.setdefault(record.module, record)
    roles_by_module: dict[str, dict[str, str]] = {}
    out = {}
    for model_type, record in records.items():
        if record.category == "other" and record.family in ("other", "sub-config"):
            if record.module not in roles_by_module:
                roles_by_module[record.module] = sub_config_roles(_module_dir(root, record.module))
            role = roles_by_module[record.module].get(record.config_class, "")
            parent = parents.get(record.module)
            category = SUB_CONFIG_ROLE_MODALITY.get(role) or (parent.category if parent else "other")
            record = replace(record, category=category)
        out[model_type] = record
    return out


def check_supported(version: str) -> None:
    """A clear error for a transformers release outside the range hfci reads."""
    # Imported here: packaging costs every `hfci` start, and only this check needs it.
    from packaging.specifiers import SpecifierSet

    # A development build (5.25.0.dev0) is the release it leads to.
    if not SpecifierSet(SUPPORTED_TRANSFORMERS).contains(version, prereleases=True):
        raise CatalogError(
            f"transformers {version} is installed; hfci supports transformers {SUPPORTED_TRANSFORMERS}"
        )


@cache
def load_catalog() -> Catalog:
    """The catalog of the installed transformers (cached for the process)."""
    root = transformers_root()
    version = importlib.metadata.version("transformers")
    check_supported(version)
    return build_catalog(read_transformers_tables(root), root, version)


def resolve_class(record: ModelRecord, class_name: str) -> type:
    """A transformers class by name: exported at the top level, or defined in the model's module.

    Importing it imports torch; only the factory and the checks call this.
    """
    import importlib

    import transformers

    try:
        return getattr(transformers, class_name)
    except AttributeError:
        pass
    package = importlib.import_module(f"transformers.models.{record.module}")
    for path in sorted(Path(package.__path__[0]).glob("modeling_*.py")):
        module = importlib.import_module(f"{package.__name__}.{path.stem}")
        if hasattr(module, class_name):
            return getattr(module, class_name)
    raise CatalogError(f"{class_name} is neither exported by transformers nor defined in {package.__name__}")
