"""Reading a sample's videos: Video-R1's frames and pixels, broken files named by their real cause,
1-frame clips, and the same-stem fallback to other containers."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from lmms_eval.protocol import ChatMessages
from PIL import Image

from lmms_vreason.lmms.media import PROCESSOR_KWARGS, load_sample_media
from lmms_vreason.media.files import find_video, record_video
from lmms_vreason.media.protocol import FrameSettings, frame_max_pixels
from lmms_vreason.media.reader import MediaError, probe_video, read_video
from lmms_vreason.testing.fixtures import write_video

SMALL = FrameSettings(min_pixels=8 * 28 * 28, max_pixels=8 * 28 * 28, max_frames=8)
"""Video-R1's rules with small limits (fast): per frame 6272 pixels, cap int(6272 * 1.05) = 6585."""


def clip(path: Path, frames: int, height: int = 48, width: int = 64, fps=8, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    write_video(path, rng.integers(0, 256, (frames, height, width, 3), dtype=np.uint8), fps)
    return path


def chat(*items: dict) -> ChatMessages:
    return ChatMessages(messages=[{"role": "user", "content": [*items, {"type": "text", "text": "What?"}]}])


# ------------------------------------------------------------------------------- Video-R1's frames


@pytest.mark.parametrize(
    ("frames", "fps", "size", "count"),
    [
        (21, Fraction(30000, 1001), (57, 75), 4),  # 0.7 s: 1.4 -> raised to 4
        (24, 8, (48, 64), 6),  # 3 s: 6
        (80, 8, (30, 40), 8),  # 10 s: 20 -> capped at max_frames 8
        (5, 30, (100, 180), 4),  # 5 frames: at most T, floored to even
        (3, 30, (40, 40), 2),
    ],
)
def test_frames_and_pixels_equal_qwen_vl_utils_reading_with_video_r1s_settings(
    tmp_path, frames, fps, size, count
) -> None:
    """qwen-vl-utils (decord backend) given Video-R1's constants as per-video keys is the reference."""
    from qwen_vl_utils.vision_process import fetch_video

    path = clip(tmp_path / "clip.mp4", frames, *size, fps=fps)
    video = read_video(path, SMALL)
    element = {
        "video": str(path),
        "fps": 2.0,
        "min_frames": 4,
        "max_frames": SMALL.max_frames,
        "min_pixels": SMALL.min_pixels,
        "max_pixels": frame_max_pixels(count, max_pixels=SMALL.max_pixels, min_pixels=SMALL.min_pixels),
    }
    (theirs, metadata), sample_fps = fetch_video(
        element, return_video_sample_fps=True, return_video_metadata=True
    )
    assert video.frames.dtype == torch.uint8 and video.frames.shape[0] == count
    assert torch.equal(video.frames.float(), theirs)  # same frames, same bicubic antialiased resize
    assert video.frames_indices == list(metadata["frames_indices"])
    assert video.total_num_frames == metadata["total_num_frames"] == frames
    assert video.sample_fps == pytest.approx(sample_fps) == pytest.approx(count / frames * float(fps))
    assert video.frames.shape[2] % 28 == 0 and video.frames.shape[3] % 28 == 0


def test_processor_gets_video_r1s_frames_and_time_step(tmp_path, tiny_processor) -> None:
    """No second resize, no resampling; ``second_per_grid_ts`` = 2 / sample_fps as Video-R1 passes it."""
    path = clip(tmp_path / "clip.mp4", 80, 30, 40, fps=8)  # 10 s -> 8 frames of 84x112 (upscaled)
    media = load_sample_media(chat({"type": "video", "url": str(path)}), SMALL)
    (video,), (metadata,) = media.videos, media.metadata
    assert video.shape == (8, 3, 84, 112)
    text = tiny_processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "What?"}]}],
        tokenize=False,
        add_generation_prompt=True,
    )
    out = tiny_processor(
        text=[text], videos=[video], video_metadata=[metadata], return_tensors="pt", **PROCESSOR_KWARGS
    )
    assert out["video_grid_thw"].tolist() == [[4, 84 // 14, 112 // 14]]
    sample_fps = 8 / 80 * 8.0
    assert out["second_per_grid_ts"].tolist() == pytest.approx([2 / sample_fps])
    video_pad = tiny_processor.tokenizer.convert_tokens_to_ids("<|video_pad|>")
    assert int((out["input_ids"] == video_pad).sum()) == 8 // 2 * (84 // 28) * (112 // 28)


# ------------------------------------------------------------------------------------ broken files


def audio_only(path: Path) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        for i in range(8):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def broken(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f"{kind}.mp4"
    if kind == "zero-byte":
        path.write_bytes(b"")
    elif kind == "truncated":
        whole = clip(tmp_path / "whole.mp4", 12).read_bytes()
        path.write_bytes(whole[: len(whole) // 2])  # the index (moov atom) is written last: cut off
    elif kind == "text":
        path.write_text("this is not a video\n")
    elif kind == "audio-only":
        audio_only(path)
    return path


@pytest.mark.parametrize(
    ("kind", "cause"),
    [
        ("zero-byte", "empty file (0 bytes)"),
        ("truncated", "moov atom not found (Invalid data found when processing input)"),
        ("text", "moov atom not found (Invalid data found when processing input)"),
        ("audio-only", "no video stream (the file holds: audio)"),
    ],
)
def test_broken_videos_report_their_first_real_cause(tmp_path, kind, cause) -> None:
    path = broken(tmp_path, kind)
    for read in (lambda: read_video(path, SMALL), lambda: probe_video(path)):
        with pytest.raises(MediaError) as info:
            read()
        message = str(info.value)
        assert message == f"cannot read video {path}: {cause}"
        assert "torchvision" not in message and "read_video" not in message


def test_missing_file_is_named(tmp_path) -> None:
    with pytest.raises(MediaError, match=r"^file not found: .*nowhere\.mp4$"):
        read_video(tmp_path / "nowhere.mp4", SMALL)


# ---------------------------------------------------------------------------------- 1-frame clips


def test_a_one_frame_clip_is_its_frame_twice(tmp_path, tiny_processor) -> None:
    path = clip(tmp_path / "still.mp4", 1, 40, 40, fps=30)
    video = read_video(path, SMALL)
    assert video.frames.shape == (2, 3, 84, 84)  # 40x40 -> upscaled to >= 6272 pixels: 84x84
    assert torch.equal(video.frames[0], video.frames[1])
    assert video.frames_indices == [0, 0] and video.total_num_frames == 1
    out = tiny_processor(
        text=["<|vision_start|><|video_pad|><|vision_end|>What?"],
        videos=[video.frames],
        video_metadata=[video.metadata],
        return_tensors="pt",
        **PROCESSOR_KWARGS,
    )
    assert out["video_grid_thw"].tolist() == [[1, 6, 6]]


# ------------------------------------------------------------------------------ other containers


@pytest.mark.parametrize("suffix", [".mkv", ".avi"])
def test_a_missing_mp4_is_read_from_its_same_stem_file(tmp_path, suffix) -> None:
    other = clip(tmp_path / f"clip{suffix}", 24, 48, 64)
    named = tmp_path / "clip.mp4"
    assert find_video(named) == other
    assert record_video("./clip.mp4", tmp_path) == other
    video = read_video(named, SMALL)
    assert video.path == other and video.frames.shape[0] == 6
    assert probe_video(named) == (24, 8.0)


def test_the_mp4_itself_wins_and_nothing_is_guessed_for_other_files(tmp_path) -> None:
    mp4 = clip(tmp_path / "clip.mp4", 8)
    clip(tmp_path / "clip.mkv", 8)
    assert find_video(mp4) == mp4
    (tmp_path / "notes.webm").write_bytes(b"x")
    assert find_video(tmp_path / "notes.txt") is None
    assert find_video(tmp_path / "other.mp4") is None


# ------------------------------------------------------------------------------- a sample's media


def test_sample_media_in_prompt_order_with_images_at_video_r1s_image_limits(tmp_path) -> None:
    first, second = clip(tmp_path / "a.mp4", 24), clip(tmp_path / "b.mp4", 5, seed=1)
    image = tmp_path / "still.png"
    Image.fromarray(np.full((10, 20, 4), 200, np.uint8), "RGBA").save(image)
    media = load_sample_media(
        chat(
            {"type": "video", "url": str(first)},
            {"type": "image", "url": str(image)},
            {"type": "video", "url": f"file://{second}"},
        ),
        SMALL,
    )
    assert [v.shape[0] for v in media.videos] == [6, 4]
    assert [m["total_num_frames"] for m in media.metadata] == [24, 5]
    (picture,) = media.images
    # 10x20 -> 28x28 < 4*28*28: beta = sqrt(3136 / 200) = 3.96 -> ceil(39.6/28) = 2 -> 56, ceil(79.2/28) = 3 -> 84
    assert picture.mode == "RGB" and picture.size == (84, 56)


def test_sample_media_refuses_what_it_cannot_honour(tmp_path) -> None:
    path = clip(tmp_path / "a.mp4", 8)
    with pytest.raises(MediaError, match="video_start"):  # fails that sample only, named
        load_sample_media(chat({"type": "video", "url": str(path), "start_time": 1.0}), SMALL)
    with pytest.raises(MediaError, match="file not found"):
        load_sample_media(chat({"type": "image", "url": str(tmp_path / "none.png")}), SMALL)
