"""Reading videos for a request: short clips use every frame they have; broken files fail clearly."""

from __future__ import annotations

import numpy as np
import pytest

from lmms_vreason.lmms.media import FrameSettings, MediaError, load_visuals
from lmms_vreason.testing.fixtures import write_video

SETTINGS = FrameSettings(nframes=8, fps=None, max_pixels=64 * 28 * 28, min_pixels=4 * 28 * 28)


def _messages(*paths: str) -> list[dict]:
    content = [{"type": "video", "video": p, **SETTINGS.video_kwargs()} for p in paths]
    return [{"role": "user", "content": [*content, {"type": "text", "text": "What moves?"}]}]


def _clip(path, frames: int) -> str:
    rng = np.random.default_rng(frames)
    write_video(path, rng.integers(0, 256, (frames, 56, 56, 3), dtype=np.uint8))
    return str(path)


@pytest.mark.parametrize(("frames", "used"), [(12, 8), (5, 4), (7, 6), (8, 8)])
def test_a_video_shorter_than_nframes_uses_all_its_frames(tmp_path, frames, used, caplog):
    from qwen_vl_utils import process_vision_info

    long_clip = _clip(tmp_path / "long.mp4", 12)
    short_clip = _clip(tmp_path / f"clip{frames}.mp4", frames)
    _, videos, metadata = load_visuals(_messages(long_clip, short_clip))
    assert [v.shape[0] for v in videos] == [8, used]
    assert len(metadata[1]["frames_indices"]) == used
    if frames < 8:
        # qwen-vl-utils alone refuses the short clip: the retry is what makes it readable.
        # (Its decord error may surface as the context of a failed torchvision fallback.)
        with pytest.raises(Exception) as info:
            process_vision_info(_messages(short_clip), return_video_kwargs=True, return_video_metadata=True)
        chain, exc = [], info.value
        while exc is not None:
            chain.append(str(exc))
            exc = exc.__cause__ or exc.__context__
        assert any("nframes" in message for message in chain), chain
    else:
        # Long enough: exactly what qwen-vl-utils reads on its own.
        _, ref, _ = process_vision_info(
            _messages(long_clip, short_clip), return_video_kwargs=True, return_video_metadata=True
        )
        assert all((a == b[0]).all() for a, b in zip(videos, ref, strict=True))


def test_missing_and_corrupt_videos_fail_with_the_file_named(tmp_path):
    with pytest.raises(MediaError, match="file not found: .*nowhere.mp4"):
        load_visuals(_messages(str(tmp_path / "nowhere.mp4")))
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all")
    with pytest.raises(MediaError, match="cannot read .*broken.mp4"):
        load_visuals(_messages(str(broken)))
