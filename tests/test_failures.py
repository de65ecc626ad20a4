"""Failures a user could not see before: NaN/inf logits, an unwritable output folder, and sampled
outputs that depended on a sample's batch neighbours."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from conftest import (
    LogitRecorder,
    load_model,
    make_batch_inputs,
    make_inputs,
    random_video,
    tiny_backend,
    video_chat,
)

from lmms_vreason.benchmarks import NUMERIC_ERROR_PREFIX
from lmms_vreason.core.decode import decode
from lmms_vreason.core.settings import GenerationSettings, VReasonSettings
from lmms_vreason.lmms.run_output import OutputPathError, check_writable, running_output_path
from lmms_vreason.models.qwen2_5_vl import Qwen2_5_VLAdapter
from lmms_vreason.telemetry import read_traces

SAMPLES = [
    {"frames": 4, "size": 56, "seed": 1, "question": "Which square moves first?"},
    {"frames": 4, "size": 56, "seed": 2, "question": "What moves?"},
]


def _poison_second_sample(batch: dict) -> dict:
    """NaN pixels for sample 1 only: its video embeddings, hence its logits, become NaN."""
    grid = batch["video_grid_thw"]
    first = int(grid[0].prod())
    pixels = batch["pixel_values_videos"].clone()
    pixels[first:] = float("nan")
    return {**batch, "pixel_values_videos": pixels}


@pytest.mark.parametrize("do_sample", [False, True])
def test_nonfinite_logits_stop_only_that_sample(tiny_model, tiny_processor, do_sample):
    settings = GenerationSettings(max_new_tokens=8, do_sample=do_sample, temperature=1.0)
    adapter = Qwen2_5_VLAdapter(tiny_model)
    cfg = VReasonSettings(step_size=2, lr=0.05)
    batch = _poison_second_sample(make_batch_inputs(tiny_processor, SAMPLES))

    def generators(*seeds: int) -> list[torch.Generator] | None:
        return [torch.Generator().manual_seed(s) for s in seeds] if do_sample else None

    probe = LogitRecorder()
    out = decode(adapter, batch, settings, cfg, generators=generators(11, 12), probe=probe)  # no raise
    assert not torch.isfinite(probe.logits[0][1]).all()  # the poison reached sample 1's logits
    assert out.stats.nonfinite_step.tolist() == [0, 1]
    assert out.sequences[1] == []  # nothing was sampled from NaN
    alone = decode(
        adapter,
        make_inputs(tiny_processor, **SAMPLES[0]),
        settings,
        cfg,
        generators=generators(11),
    )
    assert out.sequences[0] == alone.sequences[0] and len(out.sequences[0]) == 8
    assert int(out.stats.opt_steps[0]) == int(alone.stats.opt_steps[0]) == 4


@pytest.fixture(scope="module")
def nan_model_dir(tiny_model_dir: Path, tmp_path_factory) -> Path:
    """The tiny model with one NaN in its LM head (a corrupt checkpoint)."""
    out = tmp_path_factory.mktemp("nan_model")
    for item in tiny_model_dir.iterdir():
        if item.is_file():
            shutil.copy(item, out / item.name)
    model = load_model(tiny_model_dir)
    with torch.no_grad():
        model.lm_head.weight[7, 3] = float("nan")
    model.save_pretrained(out)
    return out


def _backend(model_dir: Path, tmp_path: Path, **kwargs):
    return tiny_backend(model_dir, telemetry_dir=str(tmp_path), **kwargs)


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> str:
    return random_video(tmp_path_factory.mktemp("videos") / "clip.mp4", 8, 112, 112)


def test_nan_weights_mark_the_sample_and_are_counted(nan_model_dir, video, tmp_path, caplog):
    backend = _backend(nan_model_dir, tmp_path, telemetry=True)
    settings = GenerationSettings(max_new_tokens=16)
    out, inputs, peak = backend._run_batch([video_chat(video, "What moves?")], settings, [0])
    assert out.stats.nonfinite_step.tolist() == [1] and out.sequences == [[]]
    [result] = backend._finish(out, inputs, settings, ["mmvu"], [0], peak)
    assert result.text.startswith(NUMERIC_ERROR_PREFIX) and "step 1" in result.text
    assert result.token_counts.output_tokens == 0
    assert backend.numeric_failures == 1
    [trace] = list(read_traces(tmp_path))
    assert trace.error is not None and "non-finite" in trace.error


def test_unwritable_output_path_is_refused_before_anything_runs(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(OutputPathError, match="not writable.*nothing was generated"):
        check_writable(blocker / "out")
    assert check_writable(tmp_path / "new" / "out").is_dir()
    assert list((tmp_path / "new" / "out").iterdir()) == []  # the probe file is gone


def test_output_path_is_read_from_the_running_evaluation(tmp_path):
    """Found in lmms-eval's ``simple_evaluate`` frame (covers --config files and argv abbreviations)."""

    class Tracker:
        output_path = str(tmp_path / "from_tracker")

    namespace: dict = {"running_output_path": running_output_path}
    source = "def simple_evaluate(evaluation_tracker, cli_args=None):\n    return running_output_path(['--output_path', 'argv'])\n"
    exec(compile(source, "/site-packages/lmms_eval/evaluator.py", "exec"), namespace)
    assert namespace["simple_evaluate"](Tracker()) == Tracker.output_path
    assert running_output_path(["x", "--output_path", "from_argv"]) == "from_argv"
    assert running_output_path(["x", "--output_path=eq"]) == "eq"
    assert running_output_path(["x"]) is None


def test_backend_refuses_an_unwritable_telemetry_dir(tiny_model_dir, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(OutputPathError, match="telemetry_dir"):
        _backend(tiny_model_dir, blocker / "telemetry", telemetry=True)


def test_sampled_outputs_do_not_depend_on_batch_neighbours(tiny_model_dir, video, tmp_path):
    """Each request draws from its own generator (seed, doc id): batch 2 equals batch 1 per sample."""
    backend = _backend(tiny_model_dir, tmp_path, batch_size=2, vreason=True, step_size=2, lr=0.05)
    settings = GenerationSettings(max_new_tokens=12, do_sample=True, temperature=1.5)
    chats = [video_chat(video, "What moves?"), video_chat(video, "Which square is left of the others?")]
    together, _, _ = backend._run_batch(chats, settings, [3, 8])
    for chat, doc_id, got in zip(chats, [3, 8], together.sequences, strict=True):
        alone, _, _ = backend._run_batch([chat], settings, [doc_id])
        assert got == alone.sequences[0]
    other_seed, _, _ = backend._run_batch(chats[:1], settings, [4])
    assert other_seed.sequences[0] != together.sequences[0]  # the draw really depends on the doc's seed
