"""``vreason bundle``: what goes in, the manifest check, refusals, provenance (no model, no lmms-eval).

Recomputing the metrics from a real run's samples, and each tampering, is tests/test_bundle_e2e.py.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
from pathlib import Path

import pytest

from lmms_vreason.experiments import bundle as B
from lmms_vreason.provenance import checkpoint_identity, source_commit, write_run_info

ROOT = Path(__file__).resolve().parents[1]
DATE = "20260101_120000"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fake_run(tmp_path: Path, *, samples: bool = True, run_info: bool = True) -> tuple[Path, Path, Path]:
    """An lmms-eval-shaped run folder (one mmvu results file + samples), its data root and model."""
    data, model, run = tmp_path / "data", tmp_path / "model", tmp_path / "run"
    data.mkdir(parents=True)
    (data / "eval_mmvu.json").write_text(json.dumps([{"problem_id": "1", "solution": "<answer>A</answer>"}]))
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"\x00weights" * 1000)
    out = run / "org__model"
    out.mkdir(parents=True)
    results = {
        "results": {"mmvu": {"alias": "mmvu", "accuracy,none": 0.0, "accuracy_stderr,none": 0.0}},
        "configs": {
            "mmvu": {"dataset_kwargs": {"eval_file": "eval_mmvu.json"}, "generation_kwargs": {"x": 1}}
        },
        "config": {"model": "qwen2_5_vl_vreason", "model_args": f"pretrained={model},seed=3", "limit": 1.0},
        "n-samples": {"mmvu": {"original": 1, "effective": 1}},
    }
    (out / f"{DATE}_results.json").write_text(json.dumps(results))
    if samples:
        row = {"doc_id": 0, "target": "A", "filtered_resps": "B", "accuracy": 0.0}
        (out / f"{DATE}_samples_mmvu.jsonl").write_text(json.dumps(row) + "\n")
    rows = [
        {"task": "mmvu", "doc_id": 0, "rank": 0, "input_tokens": 700, "output_tokens": 9, "prefill_s": 0.5}
        | {"decode_s": 1.5, "peak_mem_bytes": 2048, "opt_steps": 2},
    ]
    (run / "vreason_telemetry_rank0.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if run_info:
        write_run_info(
            run,
            {"rank": 0, "host": "gpu-a01", "env": {"VREASON_EVAL_ROOT": str(data)}}
            | {
                "model_args": {"pretrained": str(model), "seed": 3},
                "versions": {"torch": "x"},
                "device": {"gpu": "NVIDIA H200"},
            },
        )
    return run, data, model


def test_a_bundle_holds_the_run_files_the_data_and_a_manifest_of_everything(tmp_path: Path) -> None:
    run, data, model = fake_run(tmp_path)
    out = B.make_bundle(run, tmp_path / "b")
    names = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert names == [
        "MANIFEST.json",
        "data/eval_mmvu.json",
        "provenance.json",
        f"run/org__model/{DATE}_results.json",
        f"run/org__model/{DATE}_samples_mmvu.jsonl",
        "run/vreason_run_info_rank0.jsonl",
    ]  # telemetry goes in as its summary
    manifest = json.loads((out / "MANIFEST.json").read_text())["files"]
    assert sorted(manifest) == [n for n in names if n != "MANIFEST.json"]
    for name, entry in manifest.items():
        assert entry == {"size": (out / name).stat().st_size, "sha256": _sha(out / name)}
    assert B.check_manifest(out) == []

    prov = json.loads((out / "provenance.json").read_text())
    assert prov["data"]["root"] == str(data)  # where the run said it read the data
    assert prov["data"]["files"]["eval_mmvu.json"]["sha256"] == _sha(data / "eval_mmvu.json")
    files = prov["checkpoint"]["files"]
    assert prov["checkpoint"]["kind"] == "local"
    assert files["model.safetensors"]["sha256"] == _sha(model / "model.safetensors")
    [summary] = prov["runs"]
    assert summary["seeds"]["model_args_seed"] == "3" and summary["limit"] == 1.0
    assert summary["generation_kwargs"] == {"mmvu": {"x": 1}}
    assert prov["environment"]["host"] == "gpu-a01" and prov["environment"]["device"]["gpu"] == "NVIDIA H200"
    telemetry = prov["telemetry"]
    assert (telemetry["samples"], telemetry["output_tokens"], telemetry["peak_mem_bytes"]) == (1, 9, 2048)
    assert telemetry["decode_s"] == 1.5 and telemetry["per_benchmark"]["MMVU (mc)"]["n"] == 1
    assert prov["task_pack"]["mmvu.yaml"] == _sha(ROOT / "tasks" / "mmvu.yaml")


def test_without_run_info_the_bundling_environment_is_recorded_as_such(tmp_path: Path, monkeypatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))
    monkeypatch.delenv("VREASON_EVAL_ROOT", raising=False)
    run, data, _ = fake_run(tmp_path, run_info=False)
    with pytest.raises(B.BundleError, match="no data root recorded or given"):
        B.make_bundle(run, tmp_path / "b0")  # and no hub cache offline
    out = B.make_bundle(run, tmp_path / "b", data_root=data)
    env = json.loads((out / "provenance.json").read_text())["environment"]
    assert env["recorded"].startswith("at bundle time") and env["versions"]["torch"]


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        (lambda root: (root / "data" / "eval_mmvu.json").write_text("[]"), "data/eval_mmvu.json: its sha256"),
        (lambda root: (root / "provenance.json").unlink(), "provenance.json: missing"),
        (lambda root: (root / "run" / "extra.txt").write_text("x"), "run/extra.txt: not in the manifest"),
        (lambda root: (root / "MANIFEST.json").unlink(), "MANIFEST.json: missing"),
    ],
)
def test_the_manifest_check_names_each_changed_missing_or_added_file(tmp_path: Path, edit, named) -> None:
    run, _, _ = fake_run(tmp_path)
    out = B.make_bundle(run, tmp_path / "b")
    edit(out)
    problems = B.check_manifest(out)
    assert any(p.startswith(named) for p in problems), problems


def test_runs_that_cannot_be_verified_are_refused_before_anything_is_written(tmp_path: Path) -> None:
    run, _, _ = fake_run(tmp_path, samples=False)
    with pytest.raises(B.BundleError, match="no samples file for mmvu.*--log_samples"):
        B.make_bundle(run, tmp_path / "b.tar.gz")
    with pytest.raises(B.BundleError, match="no lmms-eval results"):
        B.make_bundle(tmp_path / "data", tmp_path / "b.tar.gz")
    assert not (tmp_path / "b.tar.gz").exists()
    run2, data, _ = fake_run(tmp_path / "second")
    (data / "eval_mmvu.json").unlink()
    with pytest.raises(B.BundleError, match="eval_mmvu.json: the evaluation file is missing"):
        B.make_bundle(run2, tmp_path / "b2")
    assert not (tmp_path / "b2").exists()


def test_an_archive_round_trips_and_a_hostile_one_is_refused(tmp_path: Path, capsys) -> None:
    run, _, _ = fake_run(tmp_path)
    assert B.main([str(run), "--out", str(tmp_path / "sub.tar.gz")]) == 0
    digest = _sha(tmp_path / "sub.tar.gz")
    assert digest in capsys.readouterr().out
    with B.opened_bundle(tmp_path / "sub.tar.gz") as root:
        assert root.name == "sub" and B.check_manifest(root) == []
    assert B.main([str(run), "--out", str(tmp_path / "sub.tar.gz")]) == 2  # never overwritten
    assert "exists" in capsys.readouterr().err
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as archive:
        info = tarfile.TarInfo("../outside.txt")
        info.size = 1
        archive.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(B.BundleError, match="refusing archive member"), B.opened_bundle(evil):
        pass
    assert not (tmp_path.parent / "outside.txt").exists()


def test_cli_errors_name_the_problem(tmp_path: Path, capsys) -> None:
    assert B.main([str(tmp_path / "nowhere")]) == 2
    assert "run directory not found" in capsys.readouterr().err
    assert B.main(["--verify", str(tmp_path / "x.tar.gz"), "--out", "y"]) == 2
    assert "--verify takes only the bundle" in capsys.readouterr().err
    (tmp_path / "folder").mkdir()
    assert B.main(["--verify", str(tmp_path / "folder")]) == 1
    assert "MANIFEST.json: missing" in capsys.readouterr().err


def test_checkpoint_identity_of_a_hub_snapshot_is_its_commit_and_blob_hashes(
    tmp_path: Path, monkeypatch
) -> None:
    from huggingface_hub import constants

    commit = "a" * 40
    repo = tmp_path / "hub" / "models--Org--Tiny"
    blobs, snapshot = repo / "blobs", repo / "snapshots" / commit
    blobs.mkdir(parents=True)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    weights = b"w" * 4096
    lfs = hashlib.sha256(weights).hexdigest()
    (blobs / lfs).write_bytes(weights)
    (blobs / ("c" * 40)).write_text('{"model_type": "qwen2_5_vl"}')  # a git (non-LFS) blob: sha1-named
    (snapshot / "model.safetensors").symlink_to(blobs / lfs)
    (snapshot / "config.json").symlink_to(blobs / ("c" * 40))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    quick = checkpoint_identity("Org/Tiny")
    assert quick["commit"] == commit and quick["files"]["model.safetensors"]["sha256"] == lfs
    assert "sha256" not in quick["files"]["config.json"]  # small files are hashed at bundle time
    full = checkpoint_identity("Org/Tiny", hash_files=True, revision=commit)
    assert full["files"]["config.json"]["sha256"] == _sha(snapshot / "config.json")
    missing = checkpoint_identity("Org/Absent")
    assert missing == {"kind": "hub", "pretrained": "Org/Absent", "repo_id": "Org/Absent", "commit": None}


def test_source_commit_is_this_checkout_s_and_none_elsewhere(tmp_path: Path) -> None:
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode != 0:
        pytest.skip("not a git checkout")
    assert source_commit(ROOT / "lmms_vreason")["commit"] == head.stdout.strip()
    assert source_commit(ROOT / "tests" / "nothing")["commit"] is None  # not the checkout's package
    assert source_commit(tmp_path)["commit"] is None
