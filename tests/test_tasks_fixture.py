"""The fixture benchmark generator and the task pack's data loading (``VREASON_EVAL_ROOT`` or hub)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import decord
import pytest
from lmms_vreason.tasks import utils

from lmms_vreason.benchmarks import DATA_ROOT_ENV, HUB_DATASET, TABLE1_COLUMNS

REPO = Path(__file__).resolve().parents[1]
EVAL_FILES = sorted({column.eval_file for column in TABLE1_COLUMNS})
FIELDS = {"problem_id", "problem", "problem_type", "options", "solution", "path", "data_type"}


from lmms_vreason.testing import fixtures as fixture_script  # noqa: E402


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fixture_script.make_fixture_bench(tmp_path_factory.mktemp("bench"), seed=0)


def records(root: Path, eval_file: str) -> list[dict]:
    return json.loads((root / eval_file).read_text(encoding="utf-8"))


# ------------------------------------------------------------------------------------------- generator


def test_writes_the_six_eval_files_in_the_video_r1_record_format(bench: Path) -> None:
    assert sorted(p.name for p in bench.glob("eval_*.json")) == EVAL_FILES
    for eval_file in EVAL_FILES:
        rows = records(bench, eval_file)
        assert rows, eval_file
        for row in rows:
            assert FIELDS <= row.keys()
            assert row["solution"].startswith("<answer>") and row["solution"].endswith("</answer>")
            assert (bench / row["path"]).is_file()  # relative paths resolve against the root
            if row["problem_type"] == "multiple choice":
                letters = [option.split(".")[0] for option in row["options"]]
                assert letters == [chr(ord("A") + i) for i in range(len(letters))]
                assert utils.extract_answer(row["solution"]) in letters
        assert len({row["problem_id"] for row in rows}) == len(rows)


def test_covers_every_problem_type_the_benchmarks_use(bench: Path) -> None:
    types = {f: {row["problem_type"] for row in records(bench, f)} for f in EVAL_FILES}
    assert types["eval_vsibench.json"] == {"multiple choice", "regression"}
    assert types["eval_videommmu.json"] == {"multiple choice", "numerical"}
    assert {row["duration"] for row in records(bench, "eval_videomme.json")} == {"short", "medium", "long"}


def test_videos_decode_with_decord(bench: Path) -> None:
    videos = sorted(bench.glob("Evaluation/*/*.mp4"))
    assert len(videos) == len(EVAL_FILES)
    for video in videos:
        reader = decord.VideoReader(str(video))
        assert len(reader) == fixture_script.FRAMES
        assert reader[0].shape == (fixture_script.SIZE, fixture_script.SIZE, 3)


def test_the_video_shows_what_the_records_say(bench: Path) -> None:
    """The direction question is answerable: the coloured square's centre moves that way."""
    row = next(
        r for r in records(bench, "eval_mvbench.json") if r["problem"].startswith("In which direction")
    )
    truth = next(o for o in row["options"] if o.startswith(utils.extract_answer(row["solution"]) + "."))
    frames = decord.VideoReader(str(bench / row["path"])).get_batch([0, fixture_script.FRAMES - 1]).asnumpy()

    def centre(frame) -> tuple[float, float]:
        saturated = (frame.max(axis=2).astype(int) - frame.min(axis=2)) > 80
        ys, xs = saturated.nonzero()
        return xs.mean(), ys.mean()

    (x0, y0), (x1, y1) = centre(frames[0]), centre(frames[1])
    moved = {"right": x1 - x0, "left": x0 - x1, "down": y1 - y0, "up": y0 - y1}
    assert max(moved, key=moved.get) == truth.split(". ", 1)[1]


def test_is_deterministic_for_a_seed(tmp_path: Path) -> None:
    a = fixture_script.make_fixture_bench(tmp_path / "a", seed=7)
    b = fixture_script.make_fixture_bench(tmp_path / "b", seed=7)
    c = fixture_script.make_fixture_bench(tmp_path / "c", seed=8)
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in EVAL_FILES)
    assert not all((a / f).read_bytes() == (c / f).read_bytes() for f in EVAL_FILES)
    for video in a.glob("Evaluation/*/*.mp4"):
        assert video.read_bytes() == (b / video.relative_to(a)).read_bytes()


def test_missing_video_option_references_exactly_one_absent_file(tmp_path: Path) -> None:
    root = fixture_script.make_fixture_bench(tmp_path, seed=0, missing_video=True)
    absent = [(f, r["path"]) for f in EVAL_FILES for r in records(root, f) if not (root / r["path"]).exists()]
    assert absent == [("eval_mmvu.json", fixture_script.MISSING_VIDEO)]


def test_command_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "lmms_vreason.cli", "fixtures", str(tmp_path / "out"), "--seed", "3"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert DATA_ROOT_ENV in done.stdout
    assert sorted(p.name for p in (tmp_path / "out").glob("eval_*.json")) == EVAL_FILES


# ---------------------------------------------------------------------------------------------- loading


def test_records_load_from_the_data_root_with_resolved_video_paths(
    bench: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(DATA_ROOT_ENV, str(bench))
    docs = utils.load_docs("eval_videomme.json")
    rows = records(bench, "eval_videomme.json")
    assert [d["problem_id"] for d in docs] == [str(r["problem_id"]) for r in rows]
    assert all(Path(d["video"]) == bench / r["path"] for d, r in zip(docs, rows, strict=True))
    assert [d["duration"] for d in docs] == [r["duration"] for r in rows]


def test_absolute_video_paths_are_kept(tmp_path: Path) -> None:
    assert utils.resolve_video_path("/videos/a.mp4", tmp_path) == "/videos/a.mp4"
    assert utils.resolve_video_path("./Evaluation/a.mp4", tmp_path) == str(tmp_path / "Evaluation" / "a.mp4")


def test_a_missing_data_root_fails_fast_and_says_what_to_download(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(DATA_ROOT_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError) as error:
        utils.load_docs("eval_mmvu.json")
    message = str(error.value)
    assert DATA_ROOT_ENV in message and "is not a directory" in message
    assert HUB_DATASET in message and all(f in message for f in EVAL_FILES)
    assert str(tmp_path / "nowhere") in message
    # The fix is the project's own command, ready to paste, and the check after it.
    assert f"`vreason data download --local-dir {tmp_path / 'nowhere'}`" in message
    assert f"`{DATA_ROOT_ENV}={tmp_path / 'nowhere'} vreason data check`" in message
    assert "hf download" not in message


def test_a_missing_eval_file_fails_fast(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DATA_ROOT_ENV, str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"eval_mmvu\.json is missing") as error:
        utils.load_docs("eval_mmvu.json")
    assert f"vreason data download --local-dir {tmp_path}" in str(error.value)


def test_without_the_variable_the_file_comes_from_the_hub(
    bench: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub

    calls = []

    def fake_download(repo_id: str, filename: str, repo_type: str) -> str:
        calls.append((repo_id, filename, repo_type))
        return str(bench / filename)

    monkeypatch.delenv(DATA_ROOT_ENV, raising=False)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    monkeypatch.chdir(tmp_path)
    docs = utils.load_docs("eval_mvbench.json")
    assert calls == [(HUB_DATASET, "eval_mvbench.json", "dataset")]
    assert Path(docs[0]["video"]) == tmp_path / "Evaluation" / "MVBench" / "clip.mp4"  # against the cwd


def test_an_unreachable_hub_fails_with_instructions(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    def offline(**_: str) -> str:
        raise ConnectionError("no network")

    monkeypatch.delenv(DATA_ROOT_ENV, raising=False)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    with pytest.raises(FileNotFoundError, match=f"set {DATA_ROOT_ENV}") as error:
        utils.load_docs("eval_mmvu.json")
    assert "no network" in str(error.value)
    assert "`vreason data download --local-dir DIR`" in str(error.value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"options": None}, "without options"),
        ({"problem_type": "numerical", "solution": "<answer>many</answer>"}, "not a number"),
    ],
)
def test_malformed_records_are_refused_when_loaded(change: dict, message: str, tmp_path: Path) -> None:
    # (A problem type Video-R1 does not score is not malformed: it loads and scores 0, see
    # test_tasks_protocol.test_records_of_unscored_or_unknown_types_load_score_zero_and_are_counted.)
    record = {
        "problem_id": 1,
        "problem": "Which?",
        "problem_type": "multiple choice",
        "options": ["A. x", "B. y"],
        "solution": "<answer>A</answer>",
        "path": "./a.mp4",
        "data_type": "video",
    }
    with pytest.raises(ValueError, match=message):
        utils.record_to_doc({**record, **change}, tmp_path)


# ------------------------------------------------------------------------- --count, --fixed-options, --corrupt


@pytest.fixture(scope="module")
def counted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fixture_script.make_fixture_bench(
        tmp_path_factory.mktemp("counted"), seed=3, count=3, fixed_options=True
    )


def test_count_writes_k_records_of_each_type_each_with_its_own_clip(counted: Path) -> None:
    layout = {eval_file: types for _, eval_file, types in fixture_script._LAYOUT}
    paths = []
    for eval_file in EVAL_FILES:
        rows = records(counted, eval_file)
        per_type: dict[str, int] = {}
        for row in rows:
            per_type[row["problem_type"]] = per_type.get(row["problem_type"], 0) + 1
            assert (counted / row["path"]).is_file()
        assert per_type == dict.fromkeys(layout[eval_file], 3), eval_file
        paths += [row["path"] for row in rows]
    assert len(set(paths)) == len(paths)  # one clip per record
    assert len(list(counted.glob("Evaluation/*/*.mp4"))) == len(paths)


def test_fixed_options_keep_one_order_per_question_kind(counted: Path) -> None:
    mc = [r for f in EVAL_FILES for r in records(counted, f) if r["problem_type"] == "multiple choice"]
    by_kind: dict[str, set[tuple[str, ...]]] = {}
    for row in mc:
        by_kind.setdefault(row["problem"], set()).add(tuple(row["options"]))
    assert by_kind == {
        "In which direction do the squares move?": {("A. down", "B. left", "C. right", "D. up")},
        "What colour are the moving squares?": {("A. blue", "B. green", "C. red", "D. yellow")},
        "How many squares are there?": {("A. 1", "B. 2", "C. 3", "D. 4")},
    }
    assert len({r["solution"] for r in mc}) > 1  # the answers still vary


def test_corruptions_keep_the_records_and_break_the_clips(tmp_path: Path) -> None:
    intact = fixture_script.make_fixture_bench(tmp_path / "intact", seed=5, count=1)
    broken = {
        c: fixture_script.make_fixture_bench(tmp_path / c, seed=5, count=1, corrupt=c)
        for c in ("reversed", "blank")
    }
    for root in broken.values():
        assert all((root / f).read_bytes() == (intact / f).read_bytes() for f in EVAL_FILES)
    video = records(intact, "eval_mmvu.json")[0]["path"]
    frames = {
        name: decord.VideoReader(str(root / video))
        .get_batch(list(range(fixture_script.FRAMES)))
        .asnumpy()
        .astype(int)
        for name, root in {"intact": intact, **broken}.items()
    }
    # reversed: frame t is the intact clip's frame T-1-t (up to the codec's error)
    flipped = abs(frames["reversed"] - frames["intact"][::-1]).mean()
    assert flipped < 2 and 4 * flipped < abs(frames["reversed"] - frames["intact"]).mean()
    saturation = {name: (f.max(axis=3) - f.min(axis=3) > 80).sum() for name, f in frames.items()}
    assert saturation["blank"] == 0 < saturation["intact"]  # no coloured square left


def test_bad_count_and_corruption_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="count must be at least 1"):
        fixture_script.make_fixture_bench(tmp_path, count=0)
    with pytest.raises(ValueError, match="reversed, blank"):
        fixture_script.make_fixture_bench(tmp_path, corrupt="shuffled")
