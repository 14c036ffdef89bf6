"""Real checkpoints as cases: a user's ``save_pretrained`` directory, run through every check.

A checkpoint is named on the command line (``--checkpoint PATH``, or the name of an entry) or in
the project's ``[tool.hfci.checkpoints]``. Its ``config.json`` says what it is: the model type
(whose catalog record gives the category, family, tier and heads) and, in ``architectures``, the
head. Its case id carries a short hash of its files, ``ckpt:<name>:<hash12>/<head>``, so that
weights saved again under the same name are a new baseline entry rather than a false regression.
``@`` would read better but already separates a case from its runner in baseline keys.

Nothing here imports torch or transformers at import time; loading a tokenizer or processor
from the directory does, inside the function.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from hfci.catalog import Catalog, ModelRecord
from hfci.errors import HfciError
from hfci.project import checkpoint_entries

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "checkpoint_processors",
    "checkpoint_tokenizer",
    "content_hash",
    "resolve",
    "selected_checkpoints",
]

# The files a saved tokenizer leaves (any one of them means the directory has a tokenizer).
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "spiece.model")
# A Hub id: ``org/name``, nothing more (a path with more parts, or starting with . or /, is a path).
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class CheckpointError(HfciError):
    """A checkpoint that cannot be a case: no such directory, no config.json, an unknown type."""


@dataclass(frozen=True)
class Checkpoint:
    """A local checkpoint directory, what its config says it is, and the hash of its files."""

    name: str
    path: Path
    digest: str
    model_type: str
    head: str
    class_name: str

    @property
    def key(self) -> str:
        """``ckpt:<name>:<hash12>``: what the case id, results and baselines call it."""
        return f"ckpt:{self.name}:{self.digest[:12]}"

    def case(self) -> str:
        """The case id: ``ckpt:<name>:<hash12>/<head>``."""
        return f"{self.key}/{self.head}"

    @property
    def has_tokenizer(self) -> bool:
        return any((self.path / name).is_file() for name in _TOKENIZER_FILES)


def _files(directory: Path) -> list[Path]:
    # Hidden entries are a download's bookkeeping (.cache/huggingface), not the checkpoint.
    return sorted(
        p
        for p in directory.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(directory).parts)
    )


@cache
def content_hash(directory: Path) -> str:
    """sha256 over the directory's files: each relative path, its size and its bytes, sorted.

    Worked out once per process and streamed in 1 MiB blocks, so a checkpoint of several GB is
    read once and never held in memory.
    """
    digest = hashlib.sha256()
    for path in _files(directory):
        relative = path.relative_to(directory).as_posix()
        digest.update(f"{relative}\0{path.stat().st_size}\0".encode())
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _safe_name(text: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.")
    return name or "checkpoint"


def _head_of(record: ModelRecord, config: dict[str, Any], where: str) -> tuple[str, str]:
    """(head name, class name) from the config's ``architectures``, else the record's base head."""
    if not record.has_model or not record.heads:
        raise CheckpointError(f"{where}: model type {record.model_type!r} has no model class in transformers")
    architectures = config.get("architectures") or []
    if not architectures:
        head = record.base_head
        return head.name, head.class_name
    # Several architectures are rare (a checkpoint serving two heads): the first is the one saved.
    wanted = architectures[0]
    for head in record.heads:
        if head.class_name == wanted:
            return head.name, head.class_name
    valid = ", ".join(h.class_name for h in record.heads)
    raise CheckpointError(
        f"{where}: architectures names {wanted!r}, which is no head of {record.model_type}; valid: {valid}"
    )


def _local(name: str, directory: Path, catalog: Catalog) -> Checkpoint:
    directory = directory.resolve()
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise CheckpointError(
            f"checkpoint {name!r}: {directory} has no config.json (expected a save_pretrained directory)"
        )
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise CheckpointError(f"checkpoint {name!r}: {config_path} is unreadable: {error}") from None
    model_type = config.get("model_type") if isinstance(config, dict) else None
    where = f"checkpoint {name!r} ({directory})"
    if not isinstance(model_type, str) or model_type not in catalog.records:
        raise CheckpointError(
            f"{where}: config.json's model_type {model_type!r} is not a model type of the installed "
            f"transformers {catalog.transformers_version} (`hfci catalog` lists them)"
        )
    head, class_name = _head_of(catalog[model_type], config, where)
    return Checkpoint(name, directory, content_hash(directory), model_type, head, class_name)


def _offline_reason() -> str | None:
    # Both spellings huggingface_hub reads; any true value means offline.
    for variable in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(variable, "").strip().lower() in ("1", "true", "yes", "on"):
            return f"{variable} is set"
    return None


def _download(name: str, hub: str, into: Path | None) -> Path:
    """A Hub checkpoint's local copy; one clear error offline or when the Hub is unreachable.

    Untested here: the tests run offline (HF_HUB_OFFLINE=1) and only the offline error is checked.
    """
    target = f" --local-dir {into}" if into else " --local-dir DIR"
    advice = f"download it with `huggingface-cli download {hub}{target}` and pass the directory"
    why = _offline_reason()
    if why is None:
        try:
            from huggingface_hub import snapshot_download

            return Path(snapshot_download(hub, local_dir=into))
        except Exception as error:
            why = f"the Hub is unreachable or refused it ({type(error).__name__}: {str(error)[:200]})"
    place = f"{into} does not exist" if into else f"{hub!r} is not a local directory"
    raise CheckpointError(f"checkpoint {name!r}: {place}; a Hub id needs the network, and {why}; {advice}")


def resolve(value: str, catalog: Catalog, entries: dict[str, dict[str, Any]] | None = None) -> Checkpoint:
    """A ``--checkpoint`` value: a local directory, the name of a project entry, or a Hub id."""
    entries = checkpoint_entries() if entries is None else entries
    candidate = Path(value).expanduser()
    if candidate.is_dir():
        return _local(_safe_name(candidate.resolve().name), candidate, catalog)
    if value in entries:
        return _entry(value, entries[value], catalog)
    if _HUB_ID.match(value) and not candidate.exists():
        return _local(_safe_name(value.replace("/", "--")), _download(value, value, None), catalog)
    if candidate.exists():
        raise CheckpointError(
            f"checkpoint {value!r} is not a directory (expected a save_pretrained directory)"
        )
    names = f"; the project's checkpoints: {', '.join(entries)}" if entries else ""
    raise CheckpointError(f"checkpoint {value!r}: no such directory{names}")


def _entry(name: str, entry: dict[str, Any], catalog: Catalog) -> Checkpoint:
    path, hub = entry.get("path"), entry.get("hub")
    if path is not None and path.is_dir():
        return _local(name, path, catalog)
    if hub:
        return _local(name, _download(name, hub, path), catalog)
    raise CheckpointError(f"checkpoint {name!r} of [tool.hfci.checkpoints]: no such directory {path}")


def selected_checkpoints(values: Sequence[str], catalog: Catalog) -> list[Checkpoint]:
    """The checkpoints a run covers: those named by ``--checkpoint``, else all of the project's.

    The same checkpoint named twice (by path and by name) is one case.
    """
    entries = checkpoint_entries()
    chosen: Iterable[Checkpoint] = (
        (resolve(v, catalog, entries) for v in values)
        if values
        else (_entry(name, entry, catalog) for name, entry in entries.items())
    )
    unique: dict[str, Checkpoint] = {}
    for checkpoint in chosen:
        unique.setdefault(checkpoint.case(), checkpoint)
    return list(unique.values())


def checkpoint_tokenizer(checkpoint: Checkpoint) -> Any:
    """The checkpoint's own tokenizer, or None where it saved none."""
    if not checkpoint.has_tokenizer:
        return None
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(checkpoint.path, local_files_only=True)


def checkpoint_processors(checkpoint: Checkpoint) -> dict[str, Any]:
    """What the checkpoint saved for a pipeline, under the pipeline's keyword names.

    A tokenizer from its tokenizer files; an image processor or a feature extractor from its
    ``preprocessor_config.json``, by the class that file names.
    """
    found: dict[str, Any] = {}
    tokenizer = checkpoint_tokenizer(checkpoint)
    if tokenizer is not None:
        found["tokenizer"] = tokenizer
    preprocessor = checkpoint.path / "preprocessor_config.json"
    if preprocessor.is_file():
        from transformers import AutoFeatureExtractor, AutoImageProcessor

        saved = json.loads(preprocessor.read_text(encoding="utf-8"))
        kind = str(saved.get("image_processor_type") or saved.get("feature_extractor_type") or "")
        if "ImageProcessor" in kind or "image_processor_type" in saved:
            found["image_processor"] = AutoImageProcessor.from_pretrained(
                checkpoint.path, local_files_only=True
            )
        else:
            found["feature_extractor"] = AutoFeatureExtractor.from_pretrained(
                checkpoint.path, local_files_only=True
            )
    return found
