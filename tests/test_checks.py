"""The checks on real torch modules that misbehave on purpose, and the pieces around them."""

from __future__ import annotations

import pytest
import torch
import transformers
from packaging.version import Version

from hfci import checks, outputs, processors
from hfci.case import TinyCase, build_case
from hfci.catalog import load_catalog
from hfci.results import Record, summary


class Noisy(torch.nn.Module):
    """Dropout left in training mode: every forward differs."""

    main_input_name = "input_ids"

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(10, 4)
        self.drop = torch.nn.Dropout(0.5)
        self.config = None  # the base-model head reads no config

    def forward(self, input_ids):
        return {"logits": self.drop(self.embed(input_ids))}


class Exploding(Noisy):
    def forward(self, input_ids):
        return {"logits": self.embed(input_ids) / 0.0}


def case_for(module: torch.nn.Module) -> TinyCase:
    record = load_catalog()["bert"]
    return TinyCase(record, "Model", "cpu", module, {"input_ids": torch.tensor([[1, 2, 3]])})


def test_determinism_catches_dropout_left_on_in_eval():
    case = case_for(Noisy().eval())
    checks.check_determinism(case, checks.check_forward(case))
    # The planted bug: a model whose dropout stays on after eval(). Each forward is seeded the
    # same, so only a forward the check does not re-seed shows it.
    case.model.train()
    with pytest.raises(checks.CheckFailed, match="an unseeded eval forward differs from the seeded one"):
        checks.check_determinism(case, checks.check_forward(case))


def test_two_builds_from_the_seed_have_identical_weights():
    record = load_catalog()["gpt2"]
    first, second = (build_case(record, "LMHeadModel").model.state_dict() for _ in range(2))
    assert first.keys() == second.keys()
    assert all(torch.equal(first[name], second[name]) for name in first)


def test_forward_rejects_non_finite_outputs():
    with pytest.raises(checks.CheckFailed, match="non-finite values in logits"):
        checks.check_forward(case_for(Exploding().eval()))


def test_compare_names_every_kind_of_difference():
    a = {
        "x": torch.zeros(2),
        "y": torch.zeros(3),
        "z": torch.tensor([1, 2]),
        "n": torch.tensor([float("nan")]),
    }
    b = {"x": torch.ones(2), "y": torch.zeros(4), "z": torch.tensor([1, 3]), "n": torch.tensor([0.0])}
    problems = outputs.compare(a, b)
    assert "x: max abs diff 1 (scale 0)" in problems
    assert "y: shape (3,) vs (4,)" in problems
    assert "z: values differ" in problems
    assert "n: NaN in 1 vs 0 elements" in problems
    assert outputs.compare({"only": torch.zeros(1)}, {"other": torch.zeros(1)}) == []
    assert outputs.compare({"a": torch.zeros(1), "b": torch.zeros(1)}, {"a": torch.zeros(1)}) == [
        "b: missing"
    ]


def test_forward_checks_logit_shapes_against_the_head():
    case = build_case(load_catalog()["bert"], "ForMaskedLM")
    checks.check_forward(case)
    case.inputs["input_ids"] = case.inputs["input_ids"][:1]
    case.inputs["attention_mask"] = case.inputs["attention_mask"][:1]
    assert checks.input_batch(case) == 1
    checks.check_forward(case)


def test_save_load_and_generate_on_a_real_tiny_model():
    case = build_case(load_catalog()["gpt2"], "LMHeadModel")
    reference = checks.check_forward(case)
    checks.check_save_load(case, reference)
    checks.check_generate(case)
    checks.check_pipeline(case)
    assert case.record.head("LMHeadModel").generative
    with pytest.raises(checks.CheckSkipped, match="not a generative head"):
        checks.check_generate(build_case(load_catalog()["gpt2"], "ForTokenClassification"))


def test_pipeline_recipes_need_what_the_model_reads():
    case = build_case(load_catalog()["vit"], "ForImageClassification")
    checks.check_pipeline(case)
    with pytest.raises(processors.NoRecipe, match="no offline recipe for depth-estimation"):
        processors.pick_task(("depth-estimation",), case.model)
    with pytest.raises(processors.NoRecipe, match="serves no pipeline task"):
        processors.pick_task((), case.model)
    with pytest.raises(processors.NoRecipe, match="too small"):
        processors.tokenizer_for(5)


def test_tokenizer_places_the_model_special_ids():
    tokenizer = processors.tokenizer_for(40, {"pad": 7, "eos": 9}, append_eos=True)
    assert tokenizer.pad_token_id == 7 and tokenizer.eos_token_id == 9
    ids = tokenizer("w20 w21")["input_ids"]
    assert ids[-1] == 9 and len(ids) == 3
    assert max(tokenizer.get_vocab().values()) == 39


def rec(case: str, check: str, outcome: str, reason: str = "", duration: float = 0.5, metrics=None) -> Record:
    model_type, head = case.split("/")
    return Record(case, model_type, head, "cpu", check, outcome, duration, reason, metrics=metrics)


def test_summary_puts_new_failures_and_regressions_first():
    regression = {"verdicts": [{"kind": "regression", "metric": "latency", "detail": "ratio 1 -> 2"}]}
    improvement = {"verdicts": [{"kind": "improvement", "metric": "memory", "detail": "peak 2 -> 1"}]}
    records = [
        rec("a/Model", "forward", "failed", "boom"),
        rec("b/Model", "benchmark", "failed", "slow", metrics=regression),
        rec("c/Model", "benchmark", "passed", metrics=improvement),
        rec("d/Model", "forward", "xpassed"),
        rec("e/Model", "pipeline", "skipped", "no recipe"),
    ]
    text = summary(records, new_failures=[records[0]], lost_coverage=[records[4]])
    lines = text.splitlines()
    assert lines[0].startswith("NEW FAILURES against the baseline (1)")
    assert (
        text.index("NEW FAILURES")
        < text.index("LOST COVERAGE against the baseline (1)")
        < text.index("REGRESSIONS")
    )
    assert "e/Model [cpu] pipeline: skipped: no recipe" in text
    assert text.index("REGRESSIONS (1)") < text.index("FAILED (2)") < text.index("FIXED known failures (1)")
    assert "improvements (1)" in text and "no recipe" in text
    assert "5 cases, 5 checks: 1 passed, 2 failed, 0 xfailed, 1 xpassed, 1 skipped" in text


def test_the_summary_says_where_a_slow_case_spent_its_time():
    records = [
        rec("slow/Model", "generate", "passed", duration=2.5),
        rec("slow/Model", "save_load", "passed", duration=0.4),
        rec("slow/Model", "determinism", "passed", duration=0.01),
        rec("fast/Model", "forward", "passed", duration=0.05),
    ]
    lines = summary(records, slowest=2).splitlines()[-2:]
    assert lines == [
        "     2.91s  slow/Model  (generate 2.50s, save_load 0.40s)",
        "     0.05s  fast/Model  (no check over 0.1 s)",
    ]


def test_known_failures_match_check_head_runner_and_version():
    from hfci.pytest.cases import CaseSpec, known_failure

    catalog = load_catalog()
    bark = CaseSpec(catalog["bark"], "Model", "cpu")
    assert "forward" in known_failure(bark, "forward")
    assert known_failure(CaseSpec(catalog["bert"], "Model", "cpu"), "forward") is None
    paligemma = catalog["paligemma"]
    # Its sdpa entry is scoped to transformers >=5.23,<5.24: it applies on the release installed
    # exactly when that release is in the range (pip may bring any 5.x).
    in_range = Version("5.23") <= Version(transformers.__version__) < Version("5.24")
    sdpa = known_failure(CaseSpec(paligemma, "Model", "cpu", "sdpa"), "parity")
    assert (sdpa is not None and "sdpa" in sdpa) is in_range
    assert known_failure(CaseSpec(paligemma, "Model", "cpu", "bf16"), "parity") is None
    bros = catalog["bros"]  # a list of heads, one check
    assert known_failure(CaseSpec(bros, "ForTokenClassification", "cpu"), "pipeline")
    assert known_failure(CaseSpec(bros, "ForTokenClassification", "cpu"), "forward") is None


def test_feature_extractors_fit_the_tiny_model():
    whisper = build_case(load_catalog()["whisper"], "ForConditionalGeneration")
    extractor = processors.feature_extractor_for(whisper.record, whisper.model)
    assert extractor.feature_size == whisper.model.config.num_mel_bins
    assert extractor.nb_max_frames == 2 * whisper.model.config.max_source_positions
    with pytest.raises(processors.NoRecipe, match="has no feature extractor"):
        processors.feature_extractor_for(load_catalog()["bert"])
    with pytest.raises(processors.NoRecipe, match="has no image processor"):
        processors.image_processor_for(load_catalog()["bert"], 32, 32)
    vit = processors.image_processor_for(load_catalog()["vit"], 24, 24)
    assert dict(vit.size) == {"height": 24, "width": 24}
    # SAM's is sized by its longest edge and pads every image to 1024 x 1024: both become tiny.
    sam = processors.image_processor_for(load_catalog()["sam"], 24, 24)
    assert {k: v for k, v in dict(sam.size).items() if v} == {"longest_edge": 24}
    assert (sam.pad_size.height, sam.pad_size.width) == (24, 24)
