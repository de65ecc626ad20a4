"""Reading a request's videos and images for the Qwen2.5-VL processor, with per-sample errors.

Frames are read by qwen-vl-utils (decord backend) exactly as lmms-eval's own ``qwen2_5_vl`` backend
does, so both backends see the same pixels. A missing or undecodable file raises
:class:`~lmms_vreason.lmms.media.MediaError` naming the file; the backend turns that into a failed
sample and carries on.

One departure from the built-in backend: qwen-vl-utils refuses a video that has fewer frames than
``nframes`` (short clips exist in MVBench and TempCompass). Such a video is read with all the frames
it has (rounded down to an even count, as qwen-vl-utils rounds) and a warning names it, rather than
failing the sample.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from typing import Any

from loguru import logger


class MediaError(RuntimeError):
    """A sample's video (or image) is missing or cannot be decoded."""


# qwen-vl-utils' message when a video has fewer frames than ``nframes`` asks for.
_TOO_FEW_FRAMES = "nframes should in interval"
# qwen-vl-utils samples an even number of frames (two per temporal patch).
_FRAME_FACTOR = 2


@dataclass(frozen=True, kw_only=True)
class FrameSettings:
    """How frames are sampled and sized (paper: 32 frames/128*28*28 or 16 frames/256*28*28)."""

    nframes: int | None
    fps: float | None
    max_pixels: int
    min_pixels: int

    def video_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"max_pixels": self.max_pixels, "min_pixels": self.min_pixels}
        if self.fps is not None:
            kwargs["fps"] = self.fps
        else:
            kwargs["nframes"] = self.nframes
        return kwargs


def _content_items(hf_messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every dict content item of every message."""
    return [
        item
        for message in hf_messages
        if isinstance(message.get("content"), list)
        for item in message["content"]
        if isinstance(item, dict)
    ]


def _paths(hf_messages: list[dict[str, Any]]) -> list[str]:
    """Local files the messages read (videos and images)."""
    values = [item.get(key) for item in _content_items(hf_messages) for key in ("video", "image")]
    return [v for v in values if isinstance(v, str) and "://" not in v]


def _whole_videos(hf_messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The video items that read a whole local file with a fixed ``nframes``."""
    return [
        item
        for item in _content_items(hf_messages)
        if isinstance(item.get("video"), str)
        and "nframes" in item
        and "video_start" not in item
        and "video_end" not in item
    ]


def _fit_nframes(hf_messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """A copy of the messages where no whole video asks for more frames than it has, and what changed."""
    import decord

    fitted = copy.deepcopy(hf_messages)
    changes = []
    for item in _whole_videos(fitted):
        total = len(decord.VideoReader(item["video"]))
        usable = max(_FRAME_FACTOR, total - total % _FRAME_FACTOR)
        if int(item["nframes"]) > usable:
            changes.append(f"{item['video']} has {total} frames < nframes={item['nframes']}: using {usable}")
            item["nframes"] = usable
    return fitted, changes


def _mentions(exc: BaseException, text: str) -> bool:
    """Whether ``exc`` or an exception it was raised from/while handling says ``text``.

    qwen-vl-utils catches decord's error and retries with torchvision, whose own failure then hides
    the first one in ``__context__``.
    """
    seen: BaseException | None = exc
    while seen is not None:
        if text in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _process(hf_messages: list[dict[str, Any]]) -> tuple[Any, Any]:
    from qwen_vl_utils import process_vision_info

    images, videos, _ = process_vision_info(hf_messages, return_video_kwargs=True, return_video_metadata=True)
    return images, videos


def load_visuals(hf_messages: list[dict[str, Any]]) -> tuple[list | None, list | None, list | None]:
    """``(images, videos, video_metadata)`` for one conversation, or :class:`MediaError`."""
    paths = _paths(hf_messages)
    for path in paths:
        if not os.path.exists(path):
            raise MediaError(f"file not found: {path}")
    where = ", ".join(paths) or "media"
    try:
        try:
            images, videos = _process(hf_messages)
        except Exception as exc:
            if not _mentions(exc, _TOO_FEW_FRAMES):
                raise
            fitted, changes = _fit_nframes(hf_messages)
            if not changes:
                raise
            logger.warning("short video: " + "; ".join(changes))
            images, videos = _process(fitted)
    except Exception as exc:  # decoders raise many types; the sample fails, the run goes on
        raise MediaError(f"cannot read {where}: {exc}") from exc
    metadata = None
    if videos is not None:
        videos, metadata = (list(x) for x in zip(*videos))
    return images, videos, metadata
