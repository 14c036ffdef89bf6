"""Checks: what every case must pass. Each raises ``CheckFailed`` with a reason, or ``CheckSkipped``."""

from __future__ import annotations

import copy
import tempfile
from typing import Any

from hfci import runners, training, variants
from hfci.case import TinyCase
from hfci.checkpoints import checkpoint_processors
from hfci.inputs import main_input
from hfci.outputs import compare, seeded_forward, tensors
from hfci.processors import RECIPES, NoRecipe, pick_task

__all__ = [
    "PROBE_TEXT",
    "CheckFailed",
    "CheckSkipped",
    "check_cache",
    "check_determinism",
    "check_device_parity",
    "check_forward",
    "check_generate",
    "check_padding",
    "check_parity",
    "check_pipeline",
    "check_save_load",
    "check_training",
    "input_batch",
    "run_forward",
]

# Heads whose outputs are token scores over the vocabulary, one per input position.
_TOKEN_SCORE_MAPPINGS = {"MODEL_FOR_CAUSAL_LM", "MODEL_FOR_MASKED_LM"}
_LABEL_MAPPINGS = {
    "MODEL_FOR_SEQUENCE_CLASSIFICATION",
    "MODEL_FOR_IMAGE_CLASSIFICATION",
    "MODEL_FOR_AUDIO_CLASSIFICATION",
}


class CheckFailed(AssertionError):
    """A check ran and found the model wrong."""


class CheckSkipped(Exception):
    """A check does not apply to this case; the message says why."""


def run_forward(case: TinyCase) -> Any:
    """The case's model on its inputs, seeded (see :func:`hfci.outputs.seeded_forward`)."""
    return seeded_forward(case.model, case.inputs)


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
    """A forward from another random state agrees with the seeded reference.

    Nothing re-seeds in between: a model that draws random numbers in eval mode (dropout left
    on, sampling) shows, where two seeded forwards would agree.
    """
    import torch

    torch.rand(1)  # whatever the reference drew, the random state is not the seed's any more
    with torch.inference_mode():
        output = case.model(**case.inputs)
    problems = compare(reference, output, atol=1e-6, rtol=1e-5)
    if problems:
        raise CheckFailed("an unseeded eval forward differs from the seeded one: " + "; ".join(problems[:5]))


def check_save_load(case: TinyCase, reference: Any) -> None:
    """save_pretrained (safetensors) then from_pretrained offline gives the same outputs."""
    cls = type(case.model)
    with tempfile.TemporaryDirectory(prefix="hfci-") as directory:
        case.model.save_pretrained(directory, safe_serialization=True)
        loaded = cls.from_pretrained(directory, local_files_only=True).eval().to(case.device)
    problems = compare(reference, seeded_forward(loaded, case.inputs))
    if problems:
        raise CheckFailed("reloaded model differs: " + "; ".join(problems[:5]))


def _generation(case: TinyCase, new_tokens: int) -> tuple[dict[str, Any], Any]:
    """The prompt inputs and a greedy generation config asking for exactly ``new_tokens``."""
    if not case.record.head(case.head).generative:
        raise CheckSkipped("not a generative head")
    if not case.model.can_generate():
        raise CheckSkipped(f"{type(case.model).__name__} cannot generate")
    # The forward checks turn the cache off; generation takes the path real decoding takes.
    inputs = {k: v for k, v in case.inputs.items() if not k.startswith("decoder_") and k != "use_cache"}
    config = copy.deepcopy(case.model.generation_config)
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
    return inputs, config


def _generate(case: TinyCase, inputs: dict[str, Any], config: Any, **options: Any) -> Any:
    import torch

    # Set on the model rather than passed in: some generate() overrides (BLIP's) pass their own
    # generation arguments down and would receive ours twice.
    original = case.model.generation_config
    case.model.generation_config = config
    try:
        with torch.inference_mode():
            return case.model.generate(**inputs, **options)
    finally:
        case.model.generation_config = original


def _sequences(output: Any) -> Any:
    import torch

    sequences = output if isinstance(output, torch.Tensor) else getattr(output, "sequences", None)
    if sequences is None:
        raise CheckFailed(f"generate returned {type(output).__name__} without sequences")
    return sequences


def _prompt_length(case: TinyCase, inputs: dict[str, Any], sequences: Any) -> int:
    """How many leading positions of ``sequences`` are the prompt (0 where that is unknown).

    Decoder-only models return the prompt first; vision-language models may drop their image
    placeholders from it, and then only the new tokens can be counted.
    """
    import torch

    ids = inputs.get("input_ids")
    if (
        ids is not None
        and not case.model.config.is_encoder_decoder
        and sequences.shape[-1] >= ids.shape[1]
        and torch.equal(sequences[:, : ids.shape[1]].cpu(), ids.cpu())
    ):
        return ids.shape[1]
    return 0


def check_generate(case: TinyCase, new_tokens: int = 3) -> None:
    """Greedy generation yields exactly ``new_tokens`` more tokens per sequence."""
    inputs, config = _generation(case, new_tokens)
    sequences = _sequences(_generate(case, inputs, config))
    batch = input_batch(case)
    if sequences.shape[0] != batch:
        raise CheckFailed(f"generated batch {sequences.shape[0]} != {batch}")
    prompt = _prompt_length(case, inputs, sequences)
    if sequences.shape[-1] < prompt + new_tokens:
        raise CheckFailed(f"generated length {sequences.shape[-1]} < prompt {prompt} + {new_tokens}")
    if prompt and sequences.shape[-1] > prompt + new_tokens:
        # min and max new tokens were both set: more means the request did not reach the decoder.
        raise CheckFailed(f"generated length {sequences.shape[-1]} > prompt {prompt} + {new_tokens}")


def check_cache(case: TinyCase, new_tokens: int = 3) -> None:
    """Decoding with the cache computes what decoding without it computes.

    Greedy ``generate`` with the cache and without it give the same tokens; the logits of each
    cached step equal those of one forward, without a cache, over the whole generated sequence
    at that position; and where no logits processor changed a step's choice, its token is the
    argmax of that forward there. A near-tie (the two best logits within the tolerance) is not
    judged: either token is right.
    """
    import torch

    inputs, config = _generation(case, new_tokens)
    decoder = case.inputs.get("decoder_input_ids")
    if decoder is not None and decoder.dim() == 2 and decoder.shape[0] == input_batch(case):
        # Decoding continues the case's decoder prompt: a cache of distinct tokens, where one
        # start token repeated would hide a cache that forgets.
        inputs["decoder_input_ids"] = decoder
    # Nothing stops early: every row decodes all its steps, so the positions line up.
    config.min_new_tokens = None
    config.eos_token_id = None
    options = {"return_dict_in_generate": True, "output_logits": True, "output_scores": True}
    try:
        cached = _generate(case, inputs, config, use_cache=True, **options)
    except Exception as error:
        raise CheckSkipped(
            f"generate fails ({type(error).__name__}); the generate check reports it"
        ) from None
    try:
        plain = _generate(case, inputs, config, use_cache=False, **options)
    except Exception as error:
        raise CheckFailed(f"generate without the cache fails: {type(error).__name__}: {error}") from None
    with_cache, without = _sequences(cached), _sequences(plain)
    steps = list(getattr(cached, "logits", None) or ())
    if with_cache.shape != without.shape:
        raise CheckFailed(
            f"generate: {tuple(with_cache.shape)} tokens with the cache, {tuple(without.shape)} without"
        )
    different = (with_cache != without).any(dim=0).nonzero().flatten()
    first = int(different[0]) if len(different) else None
    new_from = with_cache.shape[-1] - len(steps)
    if first is not None and not (steps and first >= new_from and _near_tie(steps[first - new_from])):
        raise CheckFailed(
            f"generate gives other tokens with the cache than without, from position {first}: "
            f"{with_cache[:, first:].tolist()} vs {without[:, first:].tolist()}"
        )
    full = _full_forward_logits(case, inputs, with_cache, len(steps))
    if full is None:
        return
    atol, rtol = runners.tolerance("eager")
    scores = list(getattr(cached, "scores", None) or ())
    for i, step in enumerate(steps):
        expected = full[:, new_from - 1 + i]
        if step.shape != expected.shape:
            raise CheckSkipped(f"step logits {tuple(step.shape)} do not line up with the forward's")
        problems = compare({"logits": expected}, {"logits": step}, atol=atol, rtol=rtol)
        if problems:
            raise CheckFailed(
                f"cached decoding step {i} differs from a forward over the whole sequence: {problems[0]}"
            )
        unchanged = i < len(scores) and torch.equal(scores[i].argmax(-1), step.argmax(-1))
        token = with_cache[:, new_from + i]
        chosen = expected.argmax(-1).to(token.device)
        if unchanged and not torch.equal(chosen, token) and not _near_tie(expected):
            raise CheckFailed(f"greedy token {i} is {token.tolist()}, the forward's argmax {chosen.tolist()}")


def _near_tie(logits: Any) -> bool:
    """Whether some row's two best logits are within the float32 tolerance of each other."""
    atol, rtol = runners.tolerance("eager")
    top = logits.float().topk(2, dim=-1).values
    return bool(((top[..., 0] - top[..., 1]) <= atol + rtol * top[..., 0].abs()).any())


def _full_forward_logits(case: TinyCase, inputs: dict[str, Any], sequences: Any, steps: int) -> Any:
    """Logits of one uncached forward over the prompt and the generated tokens, or None where the
    generated sequence cannot be fed back (a prompt it does not start with, codebook rows)."""
    import torch

    if not steps or sequences.dim() != 2 or sequences.shape[0] != input_batch(case):
        return None
    fed = dict(inputs, use_cache=False) if "use_cache" in case.inputs else dict(inputs)
    if case.model.config.is_encoder_decoder:
        fed["decoder_input_ids"] = sequences
    else:
        prompt = _prompt_length(case, inputs, sequences)
        if not prompt:
            return None
        grown = sequences.shape[-1] - prompt
        for name, value in inputs.items():
            # Per-token inputs (mask, token types) grow with the text: new tokens are text tokens.
            if (
                isinstance(value, torch.Tensor)
                and value.dim() == 2
                and value.shape == inputs["input_ids"].shape
            ):
                fed[name] = torch.cat([value, value[:, -1:].expand(-1, grown)], dim=1)
        fed["input_ids"] = sequences
    try:
        with torch.inference_mode():
            logits = getattr(case.model(**fed), "logits", None)
    except Exception:
        # Inputs laid out for the prompt that do not grow by the rule above (a per-image mask
        # over another axis): the tokens have been compared, the logits cannot be.
        return None
    if not isinstance(logits, torch.Tensor) or logits.dim() != 3 or logits.shape[1] != sequences.shape[1]:
        return None
    return logits


def check_padding(case: TinyCase) -> None:
    """Padding and batching change nothing on the real positions.

    The second row is shortened and padded back to the batch's length with the pad token, its
    mask 0 there: on the right for every text model, and also on the left (with positions
    counted from the mask, as ``generate`` does) for a decoder that generates and takes position
    ids. Each row of the
    padded batch must equal that row run alone, unpadded: a mask that is ignored, padding that
    leaks into real positions, or rows of a batch that mix all show.
    """
    why = variants.text_batch(case.inputs)
    if why is not None:
        raise CheckSkipped(f"padding: {why}")
    atol, rtol = runners.tolerance("eager")
    for side in variants.padding_sides(case):
        batch = variants.padded(case, side)
        try:
            output, alone = variants.forward_rows(case, batch)
        except Exception as error:
            raise CheckSkipped(
                f"padding: the model takes no {side}-padded batch ({type(error).__name__})"
            ) from None
        together = batch.rows(output, alone[1])
        for index, single in enumerate(alone):
            # Outputs with a row per batch row (not a codebook's or a channel's) are compared.
            expected = {f"{n}[{index}]": t[0] for n, t in tensors(single) if f"{n}[{index}]" in together}
            if not expected:
                raise CheckSkipped("padding: no output has one row per batch row")
            problems = compare(expected, {k: together[k] for k in expected}, atol=atol, rtol=rtol)
            if problems:
                what = "the full row" if index == 0 else f"the {side}-padded row's real positions"
                raise CheckFailed(f"{what} in a batch differ from the row alone: " + "; ".join(problems[:5]))


def check_training(case: TinyCase) -> dict[str, Any]:
    """Where the head takes labels, one training step works.

    On a copy in train mode, seeded: the loss is finite and repeats from the seed, every
    gradient is finite, the loss reaches the parameters (and none it depends on gets a gradient
    of exact zeros), and one SGD step along the gradients lowers the loss on the same batch (the
    longest of ``training.STEP_SIZES`` that does). Returns what it measured.
    """
    model = training.trained_copy(case.model)
    try:
        inputs = training.labelled(model, case.record.head(case.head).mappings, case.inputs)
        step = training.gradients(model, inputs)
    except training.NoLabels as why:
        raise CheckSkipped(f"training: {why}") from None
    loss = float(step.loss)
    if not step.loss.isfinite():
        raise CheckFailed(f"training loss is {loss}")
    atol, rtol = runners.tolerance("eager")
    again = training.training_loss(model, inputs)
    if abs(again - loss) > atol + rtol * abs(loss):
        # Then no step can be judged by the loss it leaves: the next forward draws otherwise.
        raise CheckFailed(
            f"the training forward does not repeat from the seed: loss {loss:.6g}, then {again:.6g}"
        )
    reached = {n: g for n, g in step.grads.items() if g is not None}
    if not reached:
        raise CheckFailed("the loss reaches no parameter: no gradient anywhere")
    bad = [n for n, g in reached.items() if not g.isfinite().all()]
    if bad:
        raise CheckFailed(f"non-finite gradients in {len(bad)} parameters: {', '.join(bad[:5])}")
    zero = [n for n, g in reached.items() if g.numel() and not g.any()]
    wrong = []
    if zero and training.loss_depends_on(model, inputs, zero, loss):
        # Moved together they may cross a kink none crosses alone (ReLU6 after batch norm over
        # 1x1 maps): only a parameter the loss depends on by itself is a wrong gradient.
        wrong = [n for n in zero if training.loss_depends_on(model, inputs, [n], loss)]
    if wrong:
        raise CheckFailed(
            f"gradients of exact zeros for {len(wrong)} parameters the loss depends on: {', '.join(wrong[:5])}"
        )
    size, after = training.descent(model, inputs, step, loss)
    if not after < loss:
        raise CheckFailed(
            f"no SGD step along the gradients lowers the loss (down to {size:g} of the weights' norm): "
            f"{loss:.6g} -> {after:.6g}"
        )
    return {
        "loss": [loss, after],
        "step": size,
        "parameters": len(step.grads),
        "unreached": len(step.grads) - len(reached),
        "zero_gradients": len(zero),
    }


def check_pipeline(case: TinyCase) -> dict[str, Any]:
    """``transformers.pipeline`` serves the head's task with processors built offline.

    A checkpoint's case uses what the checkpoint saved (its tokenizer, image processor or feature
    extractor) in place of the built ones, and fails where its tokenizer makes ids its model
    cannot embed. Returns what it used, which the suite records for a checkpoint's case.
    """
    import warnings

    from transformers import pipeline

    head = case.record.head(case.head)
    try:
        task = pick_task(head.tasks, case.model, case.record.category)
        recipe = RECIPES[task]
        kwargs = recipe.kwargs(case)
    except NoRecipe as why:
        raise CheckSkipped(f"pipeline: {why}") from None
    facts: dict[str, Any] = {"task": task}
    if case.checkpoint is not None:
        try:
            own = checkpoint_processors(case.checkpoint)
        except Exception as error:
            raise CheckFailed(
                f"the checkpoint's processors do not load: {type(error).__name__}: {error}"
            ) from None
        kwargs.update({key: value for key, value in own.items() if key in kwargs})
        facts["processors"] = {key: "checkpoint" if key in own else "built offline" for key in kwargs}
        facts["inputs"] = case.inputs_from
        if "tokenizer" in own and "tokenizer" in kwargs:
            facts["tokenizer"] = _tokenizer_facts(own["tokenizer"], case.model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe = pipeline(task, model=case.model, **kwargs)
        result = recipe.call(pipe, case)
    problem = recipe.expect(pipe, result)
    if problem:
        raise CheckFailed(f"{task} pipeline: {problem}")
    return facts


# What a checkpoint's tokenizer is asked to encode before its pipeline runs, and recorded with.
PROBE_TEXT = "hello world, a checkpoint reads its own text"


def _tokenizer_facts(tokenizer: Any, model: Any) -> dict[str, Any]:
    """The tokenizer's class, size and ids of ``PROBE_TEXT``; a failure if they pass the vocabulary."""
    ids = [int(i) for i in tokenizer(PROBE_TEXT)["input_ids"]]
    vocab = getattr(model.config.get_text_config(decoder=True), "vocab_size", None)
    if isinstance(vocab, int) and ids and max(ids) >= vocab:
        raise CheckFailed(
            f"the checkpoint's tokenizer ({type(tokenizer).__name__}, {len(tokenizer)} tokens) gives id "
            f"{max(ids)} for {PROBE_TEXT!r}, past the model's vocabulary of {vocab}"
        )
    return {"class": type(tokenizer).__name__, "size": len(tokenizer), "probe": PROBE_TEXT, "ids": ids}


def check_parity(case: TinyCase, runner_name: str) -> None:
    """A runner's outputs agree with the eager float32 reference, within its dtype's tolerance.

    On the case's inputs, then where they apply on a right-padded batch (its real positions) and
    on one cached decoding step: a runner that ignores the mask or the cache differs there. A
    runner that trains (``runner.train``) is compared on one training step too: its loss and the
    gradient of every parameter eager's loss reaches.
    """
    runner = runners.load(runner_name)
    atol, rtol = runners.tolerance(runner_name)
    for variant in variants.parity_variants(case):
        reference = variant.compared(runners.eager(case.model, variant.inputs()))
        try:
            result = runners.outputs_of(runner_name, runner(case.model, variant.inputs()))
        except runners.RunnerSkip as why:
            if not variant.label:
                raise CheckSkipped(f"{runner_name}: {why}") from None
            continue  # the runner takes the case, but not this layout of its inputs
        except runners.RunnerError as error:
            raise CheckFailed(str(error)) from None
        problems = compare(reference, variant.compared(result), atol=atol, rtol=rtol)
        if problems:
            where = f" on {variant.label}" if variant.label else ""
            raise CheckFailed(f"{runner_name} differs from eager{where}: " + "; ".join(problems[:5]))
    _greedy_parity(case, runner_name, runner)
    train = getattr(runner, "train", None)
    if train is not None:
        _training_parity(case, runner_name, train)


def _greedy_parity(case: TinyCase, runner_name: str, runner: Any, steps: int = 3) -> None:
    """Greedy decoding driven by the runner's forward picks eager's tokens.

    Each step feeds the sequence so far, the runner's own picks included, so an error that
    compounds shows; a step where eager's two best logits are within the tolerance is a near-tie
    and ends the comparison, as either pick is right.
    """
    import torch

    if variants.decoding_step(case) is None:
        return  # no text decoder
    fed = {k: v for k, v in case.inputs.items() if k != "use_cache"}
    for step in range(steps):
        reference = getattr(runners.eager(case.model, fed), "logits", None)
        try:
            result = runners.outputs_of(runner_name, runner(case.model, fed))
        except runners.RunnerSkip:
            return
        logits = result.get("logits") if isinstance(result, dict) else getattr(result, "logits", None)
        if not isinstance(reference, torch.Tensor) or not isinstance(logits, torch.Tensor):
            return
        if reference.dim() != 3 or logits.shape != reference.shape or _near_tie(reference[:, -1]):
            return
        expected, picked = reference[:, -1].argmax(-1), logits[:, -1].argmax(-1).to(reference.device)
        if not torch.equal(expected, picked):
            raise CheckFailed(
                f"{runner_name} decodes greedy token {step} as {picked.tolist()}, eager as {expected.tolist()}"
            )
        fed = variants.extended(fed, picked)


# Training parity, from `python ci/measure_tolerance.py --training` over the whole catalog (torch
# 2.13 CPU): a gradient is judged on its largest magnitude, never on less than GRADIENT_FLOOR of
# the model's largest gradient; eager on one thread against two then differs by at most 3.2e-5,
# sdpa against eager by at most 4.2e-5, outside models whose rounding is amplified (batch norm
# over 1x1 maps: levit 8e-2; a nearly flat loss: modernbert's multiple choice 9e-3), which are
# judged on GRADIENT_MARGIN times their own rounding (float32 against float64) instead.
GRADIENT_FLOOR = 1e-2
GRADIENT_TOLERANCE = 2e-4
GRADIENT_MARGIN = 4


def _training_parity(case: TinyCase, runner_name: str, train: Any) -> None:
    """The runner's training step (loss and every gradient) agrees with eager's."""
    try:
        inputs = training.labelled(case.model, case.record.head(case.head).mappings, case.inputs)
        reference = runners.eager.train(case.model, inputs)  # type: ignore[attr-defined]
    except Exception:
        # No labels, or eager's own training fails: the training check says which.
        return
    try:
        step = train(case.model, inputs)
    except runners.RunnerSkip:
        return
    except training.NoLabels as why:
        raise CheckFailed(f"{runner_name} training: {why}") from None
    reached = {n for n, g in reference.grads.items() if g is not None}
    lost = sorted(n for n in reached if step.grads.get(n) is None)
    if lost:
        raise CheckFailed(
            f"{runner_name} training: no gradient for {len(lost)} parameters eager trains: {', '.join(lost[:5])}"
        )
    gap, where = training.gradient_gap(reference, step, GRADIENT_FLOOR)
    if gap <= GRADIENT_TOLERANCE:
        return
    # A model whose gradients rounding moves far (batch norm over 1x1 maps, a nearly flat
    # loss) is judged on its own rounding: eager's float32 step against the step in float64.
    noise = _rounding_noise(case, inputs, reference)
    if gap > max(GRADIENT_TOLERANCE, GRADIENT_MARGIN * noise):
        raise CheckFailed(
            f"{runner_name} training differs from eager: {where} by {gap:.3g} of its scale "
            f"(tolerance {GRADIENT_TOLERANCE:g}; eager's own rounding, against float64, {noise:.3g})"
        )


def _rounding_noise(case: TinyCase, inputs: dict[str, Any], reference: training.Step) -> float:
    """How far eager's float32 training step is from the same step in float64: the rounding
    this case's gradients carry (0 where the model does not run in float64)."""
    import torch

    model = training.trained_copy(case.model).double()
    exact = {k: v.double() if torch.is_tensor(v) and v.is_floating_point() else v for k, v in inputs.items()}
    try:
        truth = training.gradients(model, exact)
    except Exception:
        return 0.0
    return training.gradient_gap(truth, reference, GRADIENT_FLOOR)[0]


def check_device_parity(case: TinyCase, cpu_case: TinyCase, atol: float = 1e-3, rtol: float = 1e-3) -> None:
    """The same seeded model gives the same outputs on this device as on the CPU."""
    problems = compare(run_forward(cpu_case), run_forward(case), atol=atol, rtol=rtol)
    if problems:
        raise CheckFailed(f"{case.device} differs from cpu: " + "; ".join(problems[:5]))
