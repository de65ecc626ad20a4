"""A clip with fewer frames than the reading asks for is read as it is (Video-R1 does), but never
silently: the reader records asked and read counts, the backend warns once per such sample, writes
both counts to telemetry and counts the samples at the end of the run."""

from __future__ import annotations

import pickle

import pytest
from conftest import random_video, tiny_backend
from loguru import logger

from lmms_vreason.lmms.media import load_sample_media
from lmms_vreason.media.protocol import FrameSettings
from lmms_vreason.media.reader import FrameCount, read_video
from lmms_vreason.telemetry import read_traces


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("clips")
    # random_video writes 8 fps: 3 frames = 0.375 s, 1 frame, 24 frames = 3 s.
    return {
        "three": random_video(root / "three.mp4", 3, 56, 56, 1),
        "one": random_video(root / "one.mp4", 1, 56, 56, 2),
        "long": random_video(root / "long.mp4", 24, 56, 56, 3),
    }


@pytest.mark.parametrize(
    ("settings", "name", "asked", "read", "given"),
    [
        (FrameSettings(nframes=8), "three", 8, 2, 2),  # the case: 3 frames at nframes=8
        (FrameSettings(nframes=8), "long", 8, 8, 8),
        (FrameSettings(), "three", 4, 2, 2),  # Video-R1: at least min_frames = 4 asked
        (FrameSettings(), "one", 4, 1, 2),  # one frame read, repeated to a temporal patch
        (FrameSettings(), "long", 6, 6, 6),  # 3 s at 2 fps
    ],
)
def test_the_reader_records_frames_asked_and_read(clips, settings, name, asked, read, given) -> None:
    video = read_video(clips[name], settings)
    assert video.frame_count == FrameCount(
        path=clips[name], total_frames=video.total_num_frames, asked=asked, read=read
    )
    assert video.frames.shape[0] == given
    assert video.frame_count.short == (read < asked)
    assert pickle.loads(pickle.dumps(video.frame_count)) == video.frame_count  # plain data


def test_sample_media_carries_the_counts_in_prompt_order(clips) -> None:
    from conftest import video_chat
    from lmms_eval.protocol import ChatMessages

    chat = video_chat(clips["long"])
    two = ChatMessages(
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "video", "url": clips["long"]},
                    {"type": "video", "url": clips["three"]},
                    {"type": "text", "text": "Q?"},
                ],
            }
        ]
    )
    settings = FrameSettings(nframes=8)
    assert load_sample_media(chat, settings).short_videos == []
    media = load_sample_media(two, settings)
    assert [(c.asked, c.read) for c in media.frame_counts] == [(8, 8), (8, 2)]
    assert [c.path for c in media.short_videos] == [clips["three"]]
    restored = pickle.loads(pickle.dumps(media))  # a prefetch worker can hand it over
    assert restored.frame_counts == media.frame_counts


def test_backend_warns_once_per_short_sample_records_counts_and_sums_them_up(
    tiny_model_dir, clips, tmp_path
) -> None:
    from lmms_eval.api.instance import Instance

    backend = tiny_backend(
        tiny_model_dir, nframes=8, telemetry=True, telemetry_dir=str(tmp_path), vreason=False
    )
    docs = [{"video": clips["three"]}, {"video": clips["long"]}, {"video": clips["one"]}]
    backend.task_dict = {"t": {"test": docs}}

    def to_messages(doc):
        content = [{"type": "video", "url": doc["video"]}, {"type": "text", "text": "Q?"}]
        return [{"role": "user", "content": content}]

    gen_kwargs = {"max_new_tokens": 2, "do_sample": False, "temperature": 0}
    requests = [
        Instance(
            request_type="generate_until",
            arguments=("", to_messages, gen_kwargs, doc_id, "t", "test"),
            idx=0,
            metadata={"task": "t", "doc_id": doc_id, "repeats": 1},
        )
        for doc_id in range(3)
    ]
    messages: list[str] = []
    sink = logger.add(lambda m: messages.append(m.record["message"]), level="WARNING")
    try:
        results = backend.generate_until(requests)
    finally:
        logger.remove(sink)
    assert len(results) == 3 and all(r.token_counts.output_tokens for r in results)
    per_sample = [m for m in messages if m.startswith("[t doc ")]
    assert sorted(per_sample) == sorted(
        [
            f"[t doc 0] fewer video frames than asked: {clips['three']}: 2 frame(s) read of 8 asked "
            "(the clip has 3)",
            f"[t doc 2] fewer video frames than asked: {clips['one']}: 1 frame(s) read of 8 asked "
            "(the clip has 1)",
        ]
    )
    summary = [m for m in messages if "read fewer video frames than asked" in m]
    assert len(summary) == 1 and summary[0].startswith("2 sample(s) ")
    traces = {t.doc_id: t for t in read_traces(tmp_path)}
    assert {d: (t.frames_asked, t.frames_read) for d, t in traces.items()} == {
        0: ([8], [2]),
        1: ([8], [8]),
        2: ([8], [1]),
    }
    # The counts agree with what the model was given: 2 frames = 1 temporal patch of 2x2 tokens.
    assert traces[0].video_tokens_before == 4 and traces[1].video_tokens_before == 16
