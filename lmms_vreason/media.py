"""Reading a request's videos and images for the Qwen2.5-VL processor, with per-sample errors.

Frames are read by qwen-vl-utils (decord backend) exactly as lmms-eval's own ``qwen2_5_vl`` backend
does, so both backends see the same pixels. A missing or undecodable file raises
:class:`~lmms_vreason.errors.MediaError` naming the file; the backend turns that into a failed
sample and carries on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from lmms_vreason.errors import MediaError


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


def _paths(hf_messages: list[dict[str, Any]]) -> list[str]:
    found = []
    for message in hf_messages:
        content = message.get("content")
        if isinstance(content, list):
            for item in content:
                for key in ("video", "image"):
                    value = item.get(key)
                    if isinstance(value, str) and "://" not in value:
                        found.append(value)
    return found


def load_visuals(hf_messages: list[dict[str, Any]]) -> tuple[list | None, list | None, list | None]:
    """``(images, videos, video_metadata)`` for one conversation, or :class:`MediaError`."""
    from qwen_vl_utils import process_vision_info

    for path in _paths(hf_messages):
        if not os.path.exists(path):
            raise MediaError(f"file not found: {path}")
    try:
        images, videos, _ = process_vision_info(
            hf_messages, return_video_kwargs=True, return_video_metadata=True
        )
    except Exception as exc:  # decoders raise many types; the sample fails, the run goes on
        raise MediaError(f"cannot read {', '.join(_paths(hf_messages)) or 'media'}: {exc}") from exc
    metadata = None
    if videos is not None:
        videos, metadata = (list(x) for x in zip(*videos))
    return images, videos, metadata
