"""``vreason bundle`` on a fresh demo run, and ``--verify`` against each tampering.

The demo is the real lmms-eval command line on the tiny model and the fixture benchmark. The
bundle must verify as made; each edit (an answer in a samples file, with or without the manifest
re-hashed to hide it; a metric in the results; a removed file; an edited evaluation file) must fail,
naming the file. Verification rescores with lmms-eval's own evaluator, in this process.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lmms_vreason.experiments import bundle as B

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    proc = subprocess.run(
        [sys.executable, "-m", "lmms_vreason.cli", "demo", "--out", str(out), "--limit", "1"]
        + ["--max-new-tokens", "8"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0 and "demo OK" in proc.stdout, (proc.stdout + proc.stderr)[-3000:]
    return out


@pytest.fixture(scope="module")
def bundle_folder(demo_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    archive = B.make_bundle(demo_run / "results", tmp_path_factory.mktemp("bundle") / "demo.tar.gz")
    folder = tmp_path_factory.mktemp("unpacked") / "demo"
    with B.opened_bundle(archive) as root:
        shutil.copytree(root, folder)
    return folder


def _copy(bundle_folder: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(bundle_folder, tmp_path / "bundle"))


def _rehash(root: Path) -> None:
    """Hide an edit from the manifest, as a forger would."""
    manifest = json.loads((root / B.MANIFEST).read_text())
    for name, entry in manifest["files"].items():
        if (root / name).is_file():
            data = (root / name).read_bytes()
            entry.update(size=len(data), sha256=hashlib.sha256(data).hexdigest())
    (root / B.MANIFEST).write_text(json.dumps(manifest))


def _samples_file(root: Path, task: str) -> Path:
    [path] = sorted((root / B.RUN).rglob(f"*_samples_{task}.jsonl"))
    return path


def _flip_first_answer(root: Path, task: str = "mmvu") -> str:
    """Turn the first sample's answer from wrong to right (or right to wrong); returns its file name."""
    path = _samples_file(root, task)
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    right = rows[0]["accuracy"] > 0
    rows[0]["filtered_resps"] = "<answer>Z</answer>" if right else f"<answer>{rows[0]['target']}</answer>"
    rows[0].pop("resps", None)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path.relative_to(root).as_posix()


def test_a_fresh_demo_bundle_verifies_and_says_where_it_came_from(
    demo_run: Path, bundle_folder: Path, capsys
) -> None:
    assert B.main(["--verify", str(bundle_folder)]) == 0
    assert "bundle OK" in capsys.readouterr().out
    archive = B.make_bundle(demo_run / "results", demo_run / "again.tar.gz")
    assert B.main(["--verify", str(archive)]) == 0  # the archive itself, not only the unpacked folder

    prov = json.loads((bundle_folder / B.PROVENANCE).read_text())
    env = prov["environment"]
    assert env["recorded"].startswith("at run time")
    assert env["versions"]["torch"] and env["versions"]["transformers"] and env["versions"]["lmms-eval"]
    assert env["device"]["device"] == "cpu" and "torch_cuda" in env["device"]
    [run] = prov["runs"]
    pretrained = dict(kv.split("=", 1) for kv in run["model_args"].split(","))["pretrained"]
    assert prov["checkpoint"]["kind"] == "local" and prov["checkpoint"]["path"] == str(
        Path(pretrained).resolve()
    )
    weights = Path(pretrained) / "model.safetensors"
    entry = prov["checkpoint"]["files"]["model.safetensors"]
    assert entry["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert Path(prov["data"]["root"]).is_relative_to(demo_run)  # the VREASON_EVAL_ROOT the run recorded
    eval_mmvu = Path(prov["data"]["root"]) / "eval_mmvu.json"
    assert (
        prov["data"]["files"]["eval_mmvu.json"]["sha256"]
        == hashlib.sha256(eval_mmvu.read_bytes()).hexdigest()
    )
    assert len(prov["data"]["files"]) == 6  # the six benchmarks' evaluation files
    assert run["seeds"]["lmms_eval"]["random_seed"] == 0 and prov["model_args_resolved"]["seed"] == 0
    assert "pretrained=" in run["model_args"] and run["gen_kwargs"] == {"max_new_tokens": 8}
    samples = [
        json.loads(line)
        for path in (bundle_folder / B.RUN).rglob("*_samples_*.jsonl")
        for line in path.open()
    ]
    telemetry = prov["telemetry"]
    assert telemetry["samples"] == len(samples) == 7
    assert telemetry["output_tokens"] == sum(s["token_counts"][0]["output_tokens"] for s in samples)
    assert telemetry["decode_s"] > 0
    rows = [json.loads(line) for line in (demo_run / "results" / "vreason_telemetry_rank0.jsonl").open()]
    peaks = [row["peak_mem_bytes"] for row in rows if row["peak_mem_bytes"] is not None]
    assert telemetry["peak_mem_bytes"] == (max(peaks) if peaks else None)  # measured on CUDA devices only


def test_a_changed_answer_fails_by_manifest_and_by_rescoring(bundle_folder: Path, tmp_path: Path) -> None:
    root = _copy(bundle_folder, tmp_path)
    name = _flip_first_answer(root)
    result = B.verify_bundle(root)
    assert any(p.startswith(f"{name}: its sha256 differs") for p in result.problems), result.problems
    assert any(p.startswith(f"{name}: doc 0 accuracy") for p in result.problems), result.problems


def test_a_changed_answer_hidden_from_the_manifest_still_fails(
    bundle_folder: Path, tmp_path: Path, capsys
) -> None:
    root = _copy(bundle_folder, tmp_path)
    name = _flip_first_answer(root)
    _rehash(root)
    assert B.check_manifest(root) == []
    assert B.main(["--verify", str(root)]) == 1
    err = capsys.readouterr().err
    assert f"FAILED: {name}: doc 0 accuracy" in err
    assert "results.json: results.mmvu.accuracy,none is" in err  # the aggregate no longer matches either


def test_an_answer_and_its_sample_score_changed_together_still_fail_on_the_results(
    bundle_folder: Path, tmp_path: Path
) -> None:
    root = _copy(bundle_folder, tmp_path)
    path = _samples_file(root, "mmvu")
    _flip_first_answer(root)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows[0]["accuracy"] = 100.0 - rows[0]["accuracy"]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    _rehash(root)
    problems = B.verify_bundle(root).problems
    assert any("results.json: results.mmvu.accuracy,none" in p for p in problems), problems


def test_a_changed_metric_in_the_results_fails_naming_it(bundle_folder: Path, tmp_path: Path) -> None:
    root = _copy(bundle_folder, tmp_path)
    [path] = sorted((root / B.RUN).rglob("*_results.json"))
    data = json.loads(path.read_text())
    data["results"]["vreason_mvbench"]["accuracy,none"] += 50.0
    path.write_text(json.dumps(data))
    _rehash(root)
    problems = list(B.verify_bundle(root).problems)
    edited = data["results"]["vreason_mvbench"]["accuracy,none"]
    name = path.relative_to(root).as_posix()
    want = f"{name}: results.vreason_mvbench.accuracy,none is {edited!r}, recomputed from the samples: {edited - 50.0!r}"
    assert problems == [want]


def test_a_removed_file_fails_naming_it(bundle_folder: Path, tmp_path: Path) -> None:
    root = _copy(bundle_folder, tmp_path)
    path = _samples_file(root, "vreason_videomme")
    path.unlink()
    name = path.relative_to(root).as_posix()
    problems = B.verify_bundle(root).problems
    assert f"{name}: missing (listed in the manifest)" in problems
    assert any("the samples file of vreason_videomme is missing" in p for p in problems), problems


def test_an_edited_evaluation_file_fails_even_with_the_manifest_rehashed(
    bundle_folder: Path, tmp_path: Path
) -> None:
    root = _copy(bundle_folder, tmp_path)
    path = root / B.DATA / "eval_mmvu.json"
    records = json.loads(path.read_text())
    for record in records:  # every answer key moved to another letter
        letter = record["solution"].split("<answer>")[1][0]
        record["solution"] = f"<answer>{'B' if letter == 'A' else 'A'}</answer>"
    path.write_text(json.dumps(records))
    _rehash(root)
    problems = B.verify_bundle(root).problems
    assert "data/eval_mmvu.json: its sha256 differs from provenance.json's" in problems
    name = _samples_file(root, "mmvu").relative_to(root).as_posix()
    assert any(p.startswith(f"{name}: doc 0 target") for p in problems), problems
