"""Video-R1's rules for which frames of a video are read and at what size (docs/method.md §3).

Video-R1's ``src/eval_bench.py`` gives its loader (the vendored ``qwen_vl_utils/vision_process.py``)
only the video's path, so that module's constants decide everything. With ``T`` frames at
``video_fps`` in the file:

* **count**: ``n = floor2(min(max(T / video_fps * fps, ceil2(min_frames)), floor2(min(max_frames, T)), T))``
  with ``fps = 2``, ``min_frames = 4`` and ``max_frames`` = 32 (the paper's main setting) or 16;
  ``floor2``/``ceil2`` round to a multiple of the temporal patch (2). Short clips get fewer frames.
* **which**: ``linspace(0, T - 1, n)`` in float32, rounded half to even (``torch.round``).
* **size**: per frame, the effective maximum is
  ``max(min(max_pixels, total_pixels / n * 2), int(min_pixels * 1.05))`` with
  ``min_pixels = 128*28*28`` in both paper settings, ``max_pixels`` = 128*28*28 or 256*28*28 and
  ``total_pixels = 90316800``; then :func:`resize_shape` (Qwen's ``smart_resize``): round each side to
  a multiple of 28, shrink to fit the maximum, or grow to reach the minimum. So small frames are
  upscaled to about ``min_pixels`` and, at 128*28*28, the cap is 105369 pixels, not 100352.

(The issue text paraphrased the pixel rule as "min = max = P"; the source sets only the *maximum* to
256*28*28 in the 16-frame setting and keeps ``VIDEO_MIN_PIXELS = 128*28*28``. The source wins.)

Two departures, both only where Video-R1 itself fails: a 1-frame clip (Video-R1 raises) is read
with its one frame repeated to the temporal patch size, as qwen-vl-utils pads frame lists; and an
extreme aspect ratio that would shrink a side to 0 pixels keeps one patch row instead.

Pure arithmetic, no torch import at module level: no decoding here (:mod:`lmms_vreason.media.reader` does that).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

PIXEL_FACTOR = 28
"""Side multiple of a frame for Qwen2/2.5-VL: patch 14 x spatial merge 2 (Qwen3-VL: 16 x 2 = 32)."""
TEMPORAL_FACTOR = 2
"""Frames per temporal patch: counts are multiples of it."""
FPS = 2.0
MIN_FRAMES = 4
MAX_FRAMES = 32
VIDEO_MIN_PIXELS = 128 * 28 * 28
VIDEO_MAX_PIXELS = 128 * 28 * 28
VIDEO_TOTAL_PIXELS = 90_316_800
"""Video-R1's total budget: ``int(float(128000 * 28 * 28 * 0.9))``; binds only above 900 frames."""
IMAGE_MIN_PIXELS = 4 * 28 * 28
IMAGE_MAX_PIXELS = 256 * 28 * 28
"""Video-R1's limits for ``data_type: image`` records (``MIN_PIXELS``/``MAX_PIXELS`` of its loader)."""
MAX_ASPECT_RATIO = 200
PIXEL_CAP_FLOOR = 1.05
"""The effective per-frame maximum is never below ``int(min_pixels * 1.05)``."""


def floor_to(value: float, factor: int) -> int:
    return math.floor(value / factor) * factor


def ceil_to(value: float, factor: int) -> int:
    return math.ceil(value / factor) * factor


def round_to(value: float, factor: int) -> int:
    """Nearest multiple of ``factor``; Python's ``round``, so halves go to the even multiple."""
    return round(value / factor) * factor


def sampled_frame_count(
    total_frames: int,
    video_fps: float,
    *,
    fps: float = FPS,
    min_frames: int = MIN_FRAMES,
    max_frames: int = MAX_FRAMES,
    factor: int = TEMPORAL_FACTOR,
) -> int:
    """Video-R1's frame count for a clip of ``total_frames`` at ``video_fps`` (0 when ``T < factor``)."""
    lowest = ceil_to(min_frames, factor)
    highest = floor_to(min(max_frames, total_frames), factor)
    wanted = total_frames / video_fps * fps
    return floor_to(min(max(wanted, lowest), highest, total_frames), factor)


def fixed_frame_count(total_frames: int, nframes: int, *, factor: int = TEMPORAL_FACTOR) -> int:
    """The opt-in fixed count: ``nframes``, or every frame of a shorter clip (rounded down to ``factor``)."""
    return min(nframes, floor_to(total_frames, factor))


def frame_indices(total_frames: int, count: int) -> list[int]:
    """``count`` evenly spaced frame indices: ``torch.linspace(0, T - 1, n)`` in float32, rounded.

    Computed with torch itself, as Video-R1 does: float32 ``linspace`` and ``round`` (half to even)
    decide the ties, so no other arithmetic is substituted. (torch is imported here so that the
    argument schema, which uses this module's constants, loads without it.)
    """
    import torch

    return torch.linspace(0, total_frames - 1, count, dtype=torch.float32).round().long().tolist()


def frame_max_pixels(
    count: int,
    *,
    max_pixels: int = VIDEO_MAX_PIXELS,
    min_pixels: int = VIDEO_MIN_PIXELS,
    total_pixels: int = VIDEO_TOTAL_PIXELS,
    factor: int = TEMPORAL_FACTOR,
) -> float:
    """The effective per-frame maximum for a video of ``count`` frames (same operation order as
    Video-R1, so a binding total budget gives the same float)."""
    return max(min(max_pixels, total_pixels / count * factor), int(min_pixels * PIXEL_CAP_FLOOR))


def resize_shape(
    height: int, width: int, *, factor: int = PIXEL_FACTOR, min_pixels: float, max_pixels: float
) -> tuple[int, int]:
    """Qwen's ``smart_resize``: sides that are multiples of ``factor``, area within the limits.

    Each side is rounded to the nearest multiple (at least ``factor``). If that area is above
    ``max_pixels`` both sides shrink by ``sqrt(h*w / max_pixels)`` and round down; else if it is
    below ``min_pixels`` they grow by ``sqrt(min_pixels / (h*w))`` and round up. The branches scale
    the *original* sides and nothing is re-checked after them (e.g. 360x640 at 105369 gives 224x420 =
    94080 pixels, below ``min_pixels``), exactly as Video-R1's copy does.
    """
    if max(height, width) / min(height, width) > MAX_ASPECT_RATIO:
        raise ValueError(
            f"aspect ratio {max(height, width) / min(height, width):.1f} of a {height}x{width} frame is "
            f"above {MAX_ASPECT_RATIO}"
        )
    new_height = max(factor, round_to(height, factor))
    new_width = max(factor, round_to(width, factor))
    if new_height * new_width > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        new_height = max(factor, floor_to(height / beta, factor))
        new_width = max(factor, floor_to(width / beta, factor))
    elif new_height * new_width < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        new_height = ceil_to(height * beta, factor)
        new_width = ceil_to(width * beta, factor)
    return new_height, new_width


def video_token_count(frames: int, height: int, width: int, *, factor: int = PIXEL_FACTOR) -> int:
    """LLM tokens of a resized video: ``frames / 2 * (height / factor) * (width / factor)``."""
    return (frames // TEMPORAL_FACTOR) * (height // factor) * (width // factor)


@dataclass(frozen=True, kw_only=True)
class FrameSettings:
    """How a video is read: Video-R1's sampling (default) or a fixed count, and its pixel limits.

    The defaults are the paper's main setting (32 frames at 128*28*28); the 16-frame setting is
    ``max_frames=16, max_pixels=256*28*28``. ``nframes`` (an even count) switches to the old reading
    of a fixed number of evenly spaced frames, which is not Video-R1's protocol.
    """

    fps: float = FPS
    min_frames: int = MIN_FRAMES
    max_frames: int = MAX_FRAMES
    nframes: int | None = None
    max_pixels: int = VIDEO_MAX_PIXELS
    min_pixels: int = VIDEO_MIN_PIXELS
    total_pixels: int = VIDEO_TOTAL_PIXELS
    factor: int = PIXEL_FACTOR
    temporal_factor: int = TEMPORAL_FACTOR

    def frame_count(self, total_frames: int, video_fps: float) -> int:
        """Frames to read from a clip: Video-R1's count (or the fixed one); all frames of a clip too
        short for one temporal patch (they are then repeated up to :meth:`padded_count`)."""
        if self.nframes is not None:
            count = fixed_frame_count(total_frames, self.nframes, factor=self.temporal_factor)
        else:
            count = sampled_frame_count(
                total_frames,
                video_fps,
                fps=self.fps,
                min_frames=self.min_frames,
                max_frames=self.max_frames,
                factor=self.temporal_factor,
            )
        return count if count >= self.temporal_factor else total_frames

    def asked_count(self, total_frames: int, video_fps: float) -> int:
        """Frames the reading asks of a clip of this duration, before the clip's own length limits it.

        ``nframes`` when fixed; else Video-R1's count with every bound but the clip's frame count
        (``floor2(min(max(T / video_fps * fps, ceil2(min_frames)), max_frames))``). It exceeds
        :meth:`frame_count` only for a clip with fewer frames than that (fewer than ``min_frames``, or
        below ``fps`` frames per second): the backend reports such a shortfall instead of reading it
        silently (docs/method.md §3).
        """
        if self.nframes is not None:
            return self.nframes
        factor = self.temporal_factor
        wanted = total_frames / video_fps * self.fps
        return floor_to(min(max(wanted, ceil_to(self.min_frames, factor)), self.max_frames), factor)

    def padded_count(self, count: int) -> int:
        """``count`` rounded up to whole temporal patches (only a 1-frame clip is ever padded)."""
        return ceil_to(count, self.temporal_factor)

    def frame_size(self, height: int, width: int, count: int) -> tuple[int, int]:
        """The resized ``(height, width)`` of every frame of a ``count``-frame video."""
        limit = frame_max_pixels(
            count,
            max_pixels=self.max_pixels,
            min_pixels=self.min_pixels,
            total_pixels=self.total_pixels,
            factor=self.temporal_factor,
        )
        return resize_shape(height, width, factor=self.factor, min_pixels=self.min_pixels, max_pixels=limit)

    def image_size(self, height: int, width: int) -> tuple[int, int]:
        """The resized ``(height, width)`` of an image (Video-R1's image limits, 4 to 256 x 28 x 28)."""
        return resize_shape(
            height, width, factor=self.factor, min_pixels=IMAGE_MIN_PIXELS, max_pixels=IMAGE_MAX_PIXELS
        )

    def describe(self) -> str:
        """One line for the start-up log."""
        if self.nframes is not None:
            frames = f"fixed {self.nframes} evenly spaced frames"
        else:
            frames = f"{self.fps:g} fps in [{self.min_frames}, {self.max_frames}] frames (Video-R1)"
        return (
            f"{frames}; per frame {self.min_pixels}..{self.max_pixels} pixels "
            f"(total {self.total_pixels}), sides multiple of {self.factor}"
        )
