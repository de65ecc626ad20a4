"""The backend with ``batch_size > 1``: a batch whose videos give different token counts.

Real benchmarks mix aspect ratios and durations, so one batch holds samples with different numbers
of video tokens; pruning must keep each sample's own top set and pad the shorter ones with masked
slots, and the controller must keep each sample's own ΔV. Reference: the same backend running every
sample alone.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import random_video, tiny_backend, video_chat

from lmms_vreason.core.pruning import keep_count
from lmms_vreason.core.settings import GenerationSettings
from lmms_vreason.telemetry import read_traces


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> list[str]:
    root = tmp_path_factory.mktemp("videos")
    return [
        random_video(root / "square.mp4", 8, 112, 112, 1),
        random_video(root / "wide.mp4", 8, 112, 224, 2),
    ]


@pytest.mark.parametrize(
    "mode",
    [
        {"vreason": False, "lite": True, "prune_only": True},
        {"vreason": True, "lite": True, "step_size": 2, "lr": 0.05},
        {"vreason": True, "step_size": 2, "lr": 0.05},
    ],
    ids=["prune-only", "lite", "full"],
)
def test_ragged_batch_equals_each_sample_alone(tiny_model_dir, videos, tmp_path, mode):
    backend = tiny_backend(
        tiny_model_dir,
        batch_size=2,
        telemetry=True,  # also records the per-step entropy compared below
        telemetry_dir=str(tmp_path),
        **mode,
    )
    chats = [
        video_chat(videos[0], "What moves?"),
        video_chat(videos[1], "Which square is left of the others?"),
    ]
    settings = GenerationSettings(max_new_tokens=16)
    out, inputs, _ = backend._run_batch(chats, settings, [0, 1])
    counts = (inputs["input_ids"] == backend.adapter.video_token_id).sum(dim=1).tolist()
    assert counts[0] < counts[1]  # the wide video has more tokens: a ragged batch
    lite = mode.get("lite", False)
    assert out.stats.video_tokens_after.tolist() == [keep_count(n, 0.5) if lite else n for n in counts]
    results = backend._finish(out, inputs, settings, ["t", "t"], [0, 1], None)  # writes the batch's telemetry
    traces = {t.doc_id: t for t in read_traces(tmp_path)}
    for b, chat in enumerate(chats):
        alone, alone_inputs, _ = backend._run_batch([chat], settings, [b])
        assert out.sequences[b] == alone.sequences[0]
        assert out.stats.video_tokens_after[b] == alone.stats.video_tokens_after[0]
        n = len(alone.sequences[0])
        assert float(alone.stats.entropy[0, :n].min()) > 0
        assert out.stats.opt_steps[b] == alone.stats.opt_steps[0]
        torch.testing.assert_close(out.stats.entropy[b, :n], alone.stats.entropy[0, :n], rtol=0, atol=1e-5)
        # Each sample's telemetry row and token counts are its own, not its neighbour's or the padding's.
        trace = traces[b]
        assert (trace.output_tokens, trace.opt_steps) == (n, int(alone.stats.opt_steps[0]))
        assert trace.video_tokens_before == counts[b]
        assert trace.video_tokens_after == int(alone.stats.video_tokens_after[0])
        assert trace.entropy == pytest.approx(alone.stats.entropy[0, :n].tolist(), abs=1e-5)
        assert (
            trace.input_tokens == results[b].token_counts.input_tokens == alone_inputs["input_ids"].shape[1]
        )


def test_a_broken_video_fails_alone_and_every_video_is_opened_once(tiny_model_dir, tmp_path, monkeypatch):
    """A batch of 3 whose middle video is broken: the two others are decoded together, each file is
    opened by the decoder exactly once (no re-reading of the batch one by one)."""
    import decord
    from lmms_eval.api.instance import Instance

    from lmms_vreason.benchmarks import MEDIA_ERROR_PREFIX

    good_a = random_video(tmp_path / "a.mp4", 8, 56, 56, 1)
    good_b = random_video(tmp_path / "b.mp4", 8, 56, 84, 2)
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video")
    docs = [{"video": good_a}, {"video": str(bad)}, {"video": good_b}]

    opened: list[str] = []
    real_reader = decord.VideoReader

    def counting_reader(path, *args, **kwargs):
        opened.append(Path(path).name)
        return real_reader(path, *args, **kwargs)

    monkeypatch.setattr(decord, "VideoReader", counting_reader)
    backend = tiny_backend(
        tiny_model_dir,
        nframes=None,
        max_frames=4,
        max_pixels=16 * 28 * 28,
        min_pixels=4 * 28 * 28,
        batch_size=3,
        vreason=False,
    )
    backend.task_dict = {"t": {"test": docs}}
    batches: list[int] = []
    real_decode = backend._decode_inputs

    def counting_decode(inputs, settings, doc_ids):
        batches.append(len(doc_ids))
        return real_decode(inputs, settings, doc_ids)

    monkeypatch.setattr(backend, "_decode_inputs", counting_decode)

    def to_messages(doc):
        return [
            {
                "role": "user",
                "content": [{"type": "video", "url": doc["video"]}, {"type": "text", "text": "Q?"}],
            }
        ]

    gen_kwargs = {"max_new_tokens": 3, "do_sample": False, "temperature": 0}
    requests = [
        Instance(
            request_type="generate_until",
            arguments=("", to_messages, gen_kwargs, doc_id, "t", "test"),
            idx=0,
            metadata={"task": "t", "doc_id": doc_id, "repeats": 1},
        )
        for doc_id in range(3)
    ]
    results = backend.generate_until(requests)
    assert sorted(opened) == ["a.mp4", "b.mp4", "bad.mp4"]  # each file opened exactly once
    assert batches == [2]  # the two readable samples, decoded together
    assert results[1].text.startswith(MEDIA_ERROR_PREFIX) and "bad.mp4" in results[1].text
    assert "moov atom not found" in results[1].text
    assert backend.media_failures == 1
    for i in (0, 2):
        assert not results[i].text.startswith(MEDIA_ERROR_PREFIX)
        assert results[i].token_counts.output_tokens > 0
