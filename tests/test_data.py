"""``python -m lmms_vreason.data``: the preflight check and the download helper (no network)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lmms_vreason import data
from lmms_vreason.benchmarks import DATA_ROOT_ENV
from lmms_vreason.testing.fixtures import make_fixture_bench, write_video


@pytest.fixture
def bench(tmp_path: Path) -> Path:
    """The fixture benchmark, plus in MVBench: a missing video, a broken one and one stored as .mkv."""
    root = make_fixture_bench(tmp_path / "bench", missing_video=True)
    records = json.loads((root / "eval_mvbench.json").read_text())
    (root / "Evaluation/MVBench/broken.mp4").write_bytes(b"")
    write_video(root / "Evaluation/MVBench/other.mkv", np.zeros((6, 32, 32, 3), np.uint8))
    for record, name in zip(records, ["broken.mp4", "other.mp4", "gone.mp4"]):
        record["path"] = f"./Evaluation/MVBench/{name}"
    (root / "eval_mvbench.json").write_text(json.dumps(records))
    return root


def test_check_lists_records_missing_and_unreadable_per_benchmark(bench: Path) -> None:
    reports = {r.name: r for r in data.check(bench)}
    assert list(reports) == ["vsibench", "videommmu", "mmvu", "mvbench", "tempcompass", "videomme"]
    assert [(r.records, len(r.missing), len(r.unreadable)) for r in reports.values()] == [
        (6, 0, 0),
        (5, 0, 0),
        (4, 1, 0),  # the fixture's missing MMVU video
        (3, 1, 1),
        (3, 0, 0),
        (6, 0, 0),
    ]
    mvbench = reports["mvbench"]
    assert mvbench.missing == [str(bench / "Evaluation/MVBench/gone.mp4")]
    assert mvbench.unreadable == [
        (
            str(bench / "Evaluation/MVBench/broken.mp4"),
            f"cannot read video {bench}/Evaluation/MVBench/broken.mp4: empty file (0 bytes)",
        )
    ]
    assert mvbench.other_container == 1  # other.mp4 is read from other.mkv
    assert not mvbench.ok and reports["vsibench"].ok
    assert [r.name for r in data.check(bench, decode=False) if r.unreadable] == []


def test_check_command_exits_non_zero_and_names_what_is_missing(bench: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv(DATA_ROOT_ENV, str(bench))
    assert data.main(["check"]) == 1
    out, err = capsys.readouterr()
    assert "| mvbench | eval_mvbench.json (found) | 3 | 3 | 1 | 1 |" in out
    assert "mmvu: missing: " in out and "missing.mp4" in out
    assert "mvbench: unreadable: " in out and "empty file (0 bytes)" in out
    assert "found as .webm/.mkv/.avi" in out
    assert "not ready: mmvu, mvbench" in err


def test_check_passes_on_complete_data_and_reports_absent_eval_files(tmp_path: Path, capsys) -> None:
    root = make_fixture_bench(tmp_path / "ok")
    assert data.main(["check", str(root)]) == 0
    assert "ready: 27 records" in capsys.readouterr().out
    (root / "eval_videomme.json").unlink()
    assert data.main(["check", str(root), "--no-decode"]) == 1
    assert "eval_videomme.json (MISSING)" in capsys.readouterr().out


def test_check_of_an_empty_or_absent_root_names_the_download_command(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert data.main(["check", str(empty)]) == 1
    err = capsys.readouterr().err
    assert f"no evaluation file: fetch the dataset with: vreason data download --local-dir {empty}" in err
    assert data.main(["check", str(tmp_path / "absent")]) == 1
    err = capsys.readouterr().err
    assert (
        f"is not a directory; fetch the data with: vreason data download --local-dir {tmp_path / 'absent'}"
        in err
    )
    monkeypatch.delenv(DATA_ROOT_ENV, raising=False)
    with pytest.raises(SystemExit) as exit_:
        data.main(["check"])
    assert exit_.value.code == 2 and "vreason data download --local-dir DIR" in capsys.readouterr().err


def test_check_names_what_to_do_about_missing_videos_and_one_absent_file(bench: Path, capsys) -> None:
    (bench / "eval_videomme.json").unlink()
    assert data.main(["check", str(bench), "--no-decode"]) == 1
    err = capsys.readouterr().err
    assert (
        f"eval_videomme.json absent: fetch the dataset with: vreason data download --local-dir {bench}" in err
    )
    assert "missing videos: unpack the archives" in err


def test_download_is_refused_clearly_offline(tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run(
        [sys.executable, "-m", "lmms_vreason.data", "download", "--local-dir", str(tmp_path / "dl")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "offline mode (HF_HUB_OFFLINE=1)" in done.stderr
    assert "Video-R1/Video-R1-eval" in done.stderr


def test_download_prints_every_file_it_could_not_fetch(tmp_path: Path, monkeypatch, capsys) -> None:
    import huggingface_hub
    from huggingface_hub import constants

    calls = []

    def partial_snapshot(**kwargs):  # fetches one file of three, then the connection drops
        calls.append(kwargs)
        Path(kwargs["local_dir"], "eval_mmvu.json").write_text("[]")
        raise ConnectionError("connection reset")

    class Listing:
        def list_repo_files(self, repo_id, repo_type, revision):
            return ["eval_mmvu.json", "eval_mvbench.json", "videos/MVBench.zip"]

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", partial_snapshot)
    monkeypatch.setattr(huggingface_hub, "HfApi", Listing)
    assert data.main(["download", "--local-dir", str(tmp_path / "dl")]) == 1
    assert calls == [
        {
            "repo_id": "Video-R1/Video-R1-eval",
            "repo_type": "dataset",
            "revision": None,
            "local_dir": str(tmp_path / "dl"),
        }
    ]
    err = capsys.readouterr().err
    assert "not fetched: eval_mvbench.json" in err and "not fetched: videos/MVBench.zip" in err
    assert "not fetched: eval_mmvu.json" not in err
    assert "2 of 3 file(s)" in err and "connection reset" in err and "resume" in err

    def full_snapshot(**kwargs):
        for name in Listing().list_repo_files("", "", None):
            Path(kwargs["local_dir"], name).parent.mkdir(parents=True, exist_ok=True)
            Path(kwargs["local_dir"], name).write_text("x")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", full_snapshot)
    assert data.main(["download", "--local-dir", str(tmp_path / "dl")]) == 0
    out = capsys.readouterr().out
    assert "3 file(s)" in out and "1 archive(s) to unpack" in out and "videos/MVBench.zip" in out


def test_vreason_data_is_the_same_command(capsys) -> None:
    from lmms_vreason.cli import main as vreason

    with pytest.raises(SystemExit) as exit_:
        vreason(["data", "download", "--help"])
    assert exit_.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert out.startswith("usage: vreason data download ") and "(default: Video-R1/Video-R1-eval)" in out
