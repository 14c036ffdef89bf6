"""Checks: what every case must pass. Each raises ``CheckFailed`` with a reason, or ``CheckSkipped``."""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Iterator
from typing import Any

from hfci.factory import TinyCase
from hfci.inputs import main_input

CHECKS = ("forward", "determinism", "save_load", "generate", "pipeline")

# Heads whose outputs are token scores over the vocabulary, one per input position.
_TOKEN_SCORE_MAPPINGS = {"MODEL_FOR_CAUSAL_LM", "MODEL_FOR_MASKED_LM"}
_LABEL_MAPPINGS = {
    "MODEL_FOR_SEQUENCE_CLASSIFICATION",
    "MODEL_FOR_IMAGE_CLASSIFICATION",
    "MODEL_FOR_AUDIO_CLASSIFICATION",
}
_GENERATIVE_MAPPINGS = {
    "MODEL_FOR_CAUSAL_LM",
    "MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM",
    "MODEL_FOR_SPEECH_SEQ_2_SEQ",
    "MODEL_FOR_IMAGE_TEXT_TO_TEXT",
    "MODEL_FOR_MULTIMODAL_LM",
}
# Outputs that are caches or bookkeeping, not results to compare (attention maps: any key ending
# in "attentions", which fused attention kernels do not return).
_IGNORED_OUTPUTS = {"past_key_values", "cache_params", "mems"}
SEED = 0


class CheckFailed(AssertionError):
    """A check ran and found the model wrong."""


class CheckSkipped(Exception):
    """A check does not apply to this case; the message says why."""


def run_forward(case: TinyCase) -> Any:
    """One eval forward, from a fixed seed: models that sample in eval (MAE's masking) repeat."""
    import torch

    torch.manual_seed(SEED)
    with torch.inference_mode():
        return case.model(**case.inputs)


def tensors(output: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(name, tensor) for every tensor in a model output, caches left out."""
    import torch

    if isinstance(output, torch.Tensor):
        yield prefix or "output", output
    elif isinstance(output, dict):
        for key, value in output.items():
            if key not in _IGNORED_OUTPUTS and not str(key).endswith("attentions"):
                yield from tensors(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(output, (tuple, list)):
        for i, value in enumerate(output):
            yield from tensors(value, f"{prefix}[{i}]")


def compare(reference: Any, other: Any, atol: float = 1e-5, rtol: float = 1e-4) -> list[str]:
    """The names of outputs that differ (shape or values) between two forwards."""
    import torch

    ref, got = dict(tensors(reference)), dict(tensors(other))
    if not ref.keys() & got.keys():
        # A runner may return plain tuples where eager returned named outputs: compare in order.
        ref = {f"[{i}]": t for i, t in enumerate(ref.values())}
        got = {f"[{i}]": t for i, t in enumerate(got.values())}
    problems = [f"{name}: missing" for name in ref if name not in got]
    for name, a in ref.items():
        b = got.get(name)
        if b is None:
            continue
        if a.shape != b.shape:
            problems.append(f"{name}: shape {tuple(a.shape)} vs {tuple(b.shape)}")
        elif a.is_floating_point() or a.is_complex():
            x, y = a.float().cpu(), b.float().cpu()
            if not torch.equal(x.isnan(), y.isnan()):
                problems.append(f"{name}: NaN in {int(x.isnan().sum())} vs {int(y.isnan().sum())} elements")
            elif not torch.allclose(x, y, atol=atol, rtol=rtol, equal_nan=True):
                diff = (x - y).abs().nan_to_num(0).max().item()
                problems.append(f"{name}: max abs diff {diff:.3g}")
        elif not torch.equal(a.cpu(), b.cpu()):
            problems.append(f"{name}: values differ")
    return problems


def check_forward(case: TinyCase) -> Any:
    """Runs; outputs are finite and have the expected leading shapes. Returns the output."""
    output = run_forward(case)
    found = list(tensors(output))
    if not found:
        raise CheckFailed("forward returned no tensors")
    bad = [name for name, t in found if t.is_floating_point() and not t.isfinite().all()]
    if bad:
        raise CheckFailed(f"non-finite values in {', '.join(bad[:5])}")
    head = case.record.head(case.head)
    logits = dict(found).get("logits")
    batch = input_batch(case)
    if logits is not None:
        decoder = case.inputs.get("decoder_input_ids")
        allowed = {batch}
        if decoder is not None and decoder.dim() == 2:
            # Multi-codebook decoders read and score one row per codebook: (batch * codebooks, length).
            allowed.add(decoder.shape[0])
        elif decoder is not None and decoder.dim() == 3:
            # Or read (batch, length, channels) and score each channel as a row.
            allowed.add(decoder.shape[0] * decoder.shape[2])
        if logits.shape[0] not in allowed:
            raise CheckFailed(f"logits batch {logits.shape[0]} != input batch {batch}")
        config = case.model.config
        if set(head.mappings) & _TOKEN_SCORE_MAPPINGS and "input_ids" in case.inputs:
            vocab = getattr(config.get_text_config(decoder=True), "vocab_size", None)
            seq_len = case.inputs["input_ids"].shape[1]
            if logits.dim() != 3 or logits.shape[1] != seq_len or (vocab and logits.shape[-1] != vocab):
                raise CheckFailed(
                    f"logits shape {tuple(logits.shape)}, expected ({batch}, {seq_len}, {vocab})"
                )
        if set(head.mappings) & _LABEL_MAPPINGS and logits.shape[-1] != config.num_labels:
            raise CheckFailed(f"logits shape {tuple(logits.shape)}, expected ({batch}, {config.num_labels})")
    return output


def input_batch(case: TinyCase) -> int:
    """The batch size: from input_ids, else the main input (patch-row inputs fold batch in)."""
    main = case.inputs.get("input_ids")
    if main is None:
        main = case.inputs.get(main_input(case.model, ""), next(iter(case.inputs.values())))
    return main.shape[0]


def check_determinism(case: TinyCase, reference: Any) -> None:
    """Two forwards in eval mode agree."""
    problems = compare(reference, run_forward(case), atol=1e-6, rtol=1e-5)
    if problems:
        raise CheckFailed("two eval forwards differ: " + "; ".join(problems[:5]))


def check_save_load(case: TinyCase, reference: Any) -> None:
    """save_pretrained (safetensors) then from_pretrained offline gives the same outputs."""
    import torch

    cls = type(case.model)
    with tempfile.TemporaryDirectory(prefix="hfci-") as directory:
        case.model.save_pretrained(directory, safe_serialization=True)
        loaded = cls.from_pretrained(directory, local_files_only=True).eval().to(case.device)
    torch.manual_seed(SEED)
    with torch.inference_mode():
        output = loaded(**case.inputs)
    problems = compare(reference, output)
    if problems:
        raise CheckFailed("reloaded model differs: " + "; ".join(problems[:5]))


def is_generative(head: Any) -> bool:
    """Whether a catalog head is one that generates (causal LM, seq2seq, image-text-to-text, ...)."""
    return bool(set(head.mappings) & _GENERATIVE_MAPPINGS)


def check_generate(case: TinyCase, new_tokens: int = 3) -> None:
    """Greedy generation yields ``new_tokens`` more tokens per sequence."""
    import torch

    if not is_generative(case.record.head(case.head)):
        raise CheckSkipped("not a generative head")
    if not case.model.can_generate():
        raise CheckSkipped(f"{type(case.model).__name__} cannot generate")
    inputs = {k: v for k, v in case.inputs.items() if not k.startswith("decoder_")}
    original = case.model.generation_config
    config = copy.deepcopy(original)
    if config.pad_token_id is None:
        config.pad_token_id = config.eos_token_id if config.eos_token_id is not None else 0
    if (
        case.model.config.is_encoder_decoder
        and config.decoder_start_token_id is None
        and config.bos_token_id is None
    ):
        # T5-style models start decoding from the pad token; their tiny configs may not say so.
        config.decoder_start_token_id = config.pad_token_id
    config.max_new_tokens = config.min_new_tokens = new_tokens
    config.do_sample = False
    # Set on the model rather than passed in: some generate() overrides (BLIP's) pass their own
    # generation arguments down and would receive ours twice.
    case.model.generation_config = config
    try:
        with torch.inference_mode():
            output = case.model.generate(**inputs)
    finally:
        case.model.generation_config = original
    sequences = output if isinstance(output, torch.Tensor) else getattr(output, "sequences", None)
    if sequences is None:
        raise CheckFailed(f"generate returned {type(output).__name__} without sequences")
    batch = input_batch(case)
    if sequences.shape[0] != batch:
        raise CheckFailed(f"generated batch {sequences.shape[0]} != {batch}")
    prompt = 0
    ids = inputs.get("input_ids")
    # Decoder-only models return the prompt first; vision-language models may drop their image
    # placeholders from it, and then only the new tokens can be counted.
    if (
        ids is not None
        and not case.model.config.is_encoder_decoder
        and sequences.shape[-1] >= ids.shape[1]
        and torch.equal(sequences[:, : ids.shape[1]].cpu(), ids.cpu())
    ):
        prompt = ids.shape[1]
    if sequences.shape[-1] < prompt + new_tokens:
        raise CheckFailed(f"generated length {sequences.shape[-1]} < prompt {prompt} + {new_tokens}")


def check_pipeline(case: TinyCase) -> None:
    """``transformers.pipeline`` serves the head's task with processors built offline."""
    import warnings

    from transformers import pipeline

    from hfci.processors import RECIPES, NoRecipe, pick_task

    head = case.record.head(case.head)
    case.model._hfci_category = case.record.category
    try:
        task = pick_task(head.tasks, case.model)
        if "pixel_values" in case.inputs:
            case.model._hfci_pixel_shape = tuple(case.inputs["pixel_values"].shape)
        recipe = RECIPES[task]
        kwargs = recipe.kwargs(case.model, case.record)
    except NoRecipe as why:
        raise CheckSkipped(f"pipeline: {why}") from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe = pipeline(task, model=case.model, **kwargs)
        result = recipe.call(pipe, case.model)
    if not recipe.expect(result):
        raise CheckFailed(f"{task} pipeline returned an unexpected structure: {str(result)[:200]}")


def check_parity(case: TinyCase, runner_name: str) -> None:
    """A runner's outputs agree with the eager float32 reference, within its dtype's tolerance."""
    from hfci import runners

    runner = runners.load(runner_name)
    reference = runners.eager(case.model, case.inputs)
    try:
        result = runners.outputs_of(runner_name, runner(case.model, case.inputs))
    except runners.RunnerSkip as why:
        raise CheckSkipped(f"{runner_name}: {why}") from None
    except runners.RunnerError as error:
        raise CheckFailed(str(error)) from None
    atol, rtol = runners.tolerance(runner_name)
    problems = compare(reference, result, atol=atol, rtol=rtol)
    if problems:
        raise CheckFailed(f"{runner_name} differs from eager: " + "; ".join(problems[:5]))


def check_device_parity(case: TinyCase, cpu_case: TinyCase, atol: float = 1e-3, rtol: float = 1e-3) -> None:
    """The same seeded model gives the same outputs on this device as on the CPU."""
    problems = compare(run_forward(cpu_case), run_forward(case), atol=atol, rtol=rtol)
    if problems:
        raise CheckFailed(f"{case.device} differs from cpu: " + "; ".join(problems[:5]))
