"""Decoding a sample's video or image the way Video-R1 does, with a clear error when a file is broken.

Videos are decoded with decord (Video-R1's reader: its frame count ``len(reader)`` and
``get_avg_fps()`` feed the sampling rule), the chosen frames are resized with torchvision's bicubic,
antialiased ``resize`` on uint8 (round and clamp, as Video-R1 does before ``.float()``), and handed on
as a ``(n, 3, H, W)`` uint8 tensor with the metadata the transformers processor needs
(``fps`` of the file, ``frames_indices``, ``total_num_frames``: the processor's sampled fps
``n / T * fps`` then gives ``second_per_grid_ts = 2 / sample_fps`` exactly as Video-R1 passes it).

There is no fallback reader: qwen-vl-utils retries a failed decord read with torchvision, whose
``io.read_video`` no longer exists, so the error a user saw blamed torchvision. Here a failed read
is diagnosed once (empty file, FFmpeg's own reason such as "moov atom not found", no video stream)
and reported as :class:`MediaError` naming the file; the backend fails only that sample.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lmms_vreason.media.files import find_video
from lmms_vreason.media.protocol import FrameSettings, frame_indices


class MediaError(RuntimeError):
    """A sample's video (or image) is missing or cannot be decoded."""


@dataclass(frozen=True)
class FrameCount:
    """How many frames a video's reading asked for and how many the file gave (plain data: it
    travels with a sample's media, e.g. to telemetry and the run's log)."""

    path: str
    total_frames: int
    """Frames in the file (decord's ``len``)."""
    asked: int
    """Frames the reading asked for (:meth:`FrameSettings.asked_count`)."""
    read: int
    """Distinct frames decoded; below ``asked`` only when the clip has too few frames. (A 1-frame clip
    is then repeated up to a temporal patch, so the model is given more frames than were read.)"""

    @property
    def short(self) -> bool:
        """The clip gave fewer frames than the reading asked for."""
        return self.read < self.asked

    def describe(self) -> str:
        return (
            f"{self.path}: {self.read} frame(s) read of {self.asked} asked (the clip has {self.total_frames})"
        )


@dataclass(frozen=True)
class LoadedVideo:
    """A video as the processor takes it: resized uint8 frames and how they were sampled."""

    frames: torch.Tensor
    """``(n, 3, H, W)`` uint8, H and W multiples of the pixel factor, ``n`` even."""
    video_fps: float
    frames_indices: list[int]
    total_num_frames: int
    path: Path
    frame_count: FrameCount
    metadata: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self,
            "metadata",
            {
                "fps": self.video_fps,
                "frames_indices": list(self.frames_indices),
                "total_num_frames": self.total_num_frames,
            },
        )

    @property
    def sample_fps(self) -> float:
        """Video-R1's ``nframes / total_frames * video_fps`` (the rate the model is told)."""
        return len(self.frames_indices) / self.total_num_frames * self.video_fps


_DECORD_LOG_PREFIX = re.compile(r"^\[[\d:]+\] \S+:\d+: (?:Check failed: [^E]*)?")


def _decord_reason(exc: BaseException) -> str:
    """decord's message without its timestamp and source location (its last non-empty line)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return _DECORD_LOG_PREFIX.sub("", lines[-1]) if lines else type(exc).__name__


def _ffmpeg_reason(path: Path) -> str | None:
    """Why FFmpeg (through PyAV) cannot give a first video frame of ``path``, or ``None`` if it can.

    PyAV attaches FFmpeg's last error log line (e.g. "moov atom not found") to its exception only
    while its log level is set, so the level is raised for this call and restored afterwards.
    """
    import av
    import av.logging

    previous = av.logging.get_level()
    av.logging.set_level(av.logging.ERROR)
    try:
        try:
            container = av.open(str(path))
        except av.FFmpegError as exc:
            log = getattr(exc, "log", None)
            detail = log[2].strip() if log and len(log) > 2 and log[2] else ""
            return f"{detail} ({exc.strerror})" if detail else str(exc.strerror or exc)
        with container:
            if not container.streams.video:
                kinds = sorted({stream.type for stream in container.streams})
                holds = f" (the file holds: {', '.join(kinds)})" if kinds else " (the file holds no stream)"
                return f"no video stream{holds}"
            try:
                for _ in container.decode(video=0):
                    return None
            except av.FFmpegError as exc:
                return f"cannot decode its first frame: {exc.strerror or exc}"
            return "its video stream has no frames"
    finally:
        av.logging.set_level(previous)


def failure_reason(path: Path, exc: BaseException | None = None) -> str:
    """The first real cause of a failed read of an existing ``path``, in words."""
    try:
        size = path.stat().st_size
    except OSError as err:
        return f"cannot stat the file ({err.strerror})"
    if size == 0:
        return "empty file (0 bytes)"
    try:
        reason = _ffmpeg_reason(path)
    except Exception as err:  # a diagnosis must not hide the decoder's own message
        reason = f"{type(err).__name__}: {err}"
    if reason is not None:
        return reason
    return _decord_reason(exc) if exc is not None else "decord finds no frames in it"


def _existing(path: str | os.PathLike[str]) -> Path:
    found = find_video(path)
    if found is None:
        raise MediaError(f"file not found: {path}")
    return found


def open_video(path: str | os.PathLike[str]) -> tuple[Any, Path]:
    """A decord ``VideoReader`` for ``path`` (or its same-stem file in another container), and the
    file it reads."""
    import decord

    video = _existing(path)
    try:
        return decord.VideoReader(str(video)), video
    except Exception as exc:  # decord raises RuntimeError or DECORDError; the cause is diagnosed
        raise MediaError(f"cannot read video {video}: {failure_reason(video, exc)}") from exc


def _resize(frames: torch.Tensor, height: int, width: int) -> torch.Tensor:
    from torchvision.transforms.functional import InterpolationMode, resize

    if frames.shape[-2:] == (height, width):
        return frames
    return resize(frames, [height, width], interpolation=InterpolationMode.BICUBIC, antialias=True)


def read_video(path: str | os.PathLike[str], settings: FrameSettings) -> LoadedVideo:
    """The frames of ``path`` that Video-R1 would read, resized; :class:`MediaError` if it cannot."""
    reader, video = open_video(path)
    try:
        total = len(reader)
        video_fps = float(reader.get_avg_fps())
    except Exception as exc:
        raise MediaError(f"cannot read video {video}: {failure_reason(video, exc)}") from exc
    if total < 1:
        raise MediaError(f"cannot read video {video}: {failure_reason(video)}")
    if not (math.isfinite(video_fps) and video_fps > 0):
        raise MediaError(f"cannot read video {video}: the file reports a frame rate of {video_fps}")
    count = settings.frame_count(total, video_fps)
    indices = frame_indices(total, count)
    try:
        frames = torch.from_numpy(reader.get_batch(indices).asnumpy()).permute(0, 3, 1, 2)
    except Exception as exc:
        raise MediaError(f"cannot decode video {video}: {failure_reason(video, exc)}") from exc
    padded = settings.padded_count(count)
    if padded > count:  # a 1-frame clip: repeat the last frame up to a whole temporal patch
        frames = torch.cat([frames, frames[-1:].expand(padded - count, -1, -1, -1)])
        indices = indices + [indices[-1]] * (padded - count)
    try:
        height, width = settings.frame_size(frames.shape[2], frames.shape[3], padded)
    except ValueError as exc:
        raise MediaError(f"cannot use video {video}: {exc}") from exc
    return LoadedVideo(
        frames=_resize(frames.contiguous(), height, width),
        video_fps=video_fps,
        frames_indices=indices,
        total_num_frames=total,
        path=video,
        frame_count=FrameCount(
            path=str(video), total_frames=total, asked=settings.asked_count(total, video_fps), read=count
        ),
    )


def read_image(source: Any, settings: FrameSettings) -> Any:
    """An image (path or PIL image) as RGB, resized to Video-R1's image limits; PIL in, PIL out.

    Transparent images are put on white, as Video-R1's loader does.
    """
    from PIL import Image

    if isinstance(source, Image.Image):
        image, where = source, "image"
    else:
        where = str(source).removeprefix("file://")
        if not Path(where).is_file():
            raise MediaError(f"file not found: {where}")
        try:
            with Image.open(where) as opened:
                image = opened.copy()
        except Exception as exc:  # PIL raises several types for broken files
            raise MediaError(f"cannot read image {where}: {exc}") from exc
    if image.mode == "RGBA":
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image, mask=image.split()[3])
        image = background
    else:
        image = image.convert("RGB")
    try:
        height, width = settings.image_size(image.height, image.width)
    except ValueError as exc:
        raise MediaError(f"cannot use {where}: {exc}") from exc
    return image.resize((width, height), Image.Resampling.BICUBIC)


def probe_video(path: str | os.PathLike[str]) -> tuple[int, float]:
    """``(frames, fps)`` of a video after decoding its first frame; :class:`MediaError` if it cannot."""
    reader, video = open_video(path)
    try:
        total, video_fps = len(reader), float(reader.get_avg_fps())
        if total < 1:
            raise MediaError(f"cannot read video {video}: {failure_reason(video)}")
        reader.get_batch([0]).asnumpy()
    except MediaError:
        raise
    except Exception as exc:
        raise MediaError(f"cannot decode video {video}: {failure_reason(video, exc)}") from exc
    return total, video_fps
