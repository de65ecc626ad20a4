"""Which file a record's video path means: the path itself, or the same stem in another container.

Some benchmark releases ship videos as ``.webm``, ``.mkv`` or ``.avi`` while the Video-R1 records
name ``.mp4`` files (Video-R1 asks users to convert them with ffmpeg first). decord reads those
containers directly, so a missing ``clip.mp4`` is read from ``clip.webm`` (or ``.mkv``, ``.avi``)
beside it. This module is the one place that rule lives: the task loader, the backend's reader and
``python -m lmms_vreason.data check`` all resolve paths through :func:`find_video`.
"""

from __future__ import annotations

import os
from pathlib import Path

VIDEO_CONTAINERS: tuple[str, ...] = (".mp4", ".webm", ".mkv", ".avi")
"""Containers tried, in this order, when a video's own path does not exist."""


def find_video(path: str | os.PathLike[str]) -> Path | None:
    """The file to read for ``path``: itself if it exists, else the first same-stem file in
    :data:`VIDEO_CONTAINERS` that exists, else ``None``."""
    video = Path(path)
    if video.is_file():
        return video
    if video.suffix.lower() not in VIDEO_CONTAINERS:
        return None
    for suffix in VIDEO_CONTAINERS:
        other = video.with_suffix(suffix)
        if other != video and other.is_file():
            return other
    return None


def resolve_video(path: str | os.PathLike[str]) -> Path:
    """:func:`find_video`, or ``path`` unchanged when nothing exists (the reader then reports it)."""
    found = find_video(path)
    return found if found is not None else Path(path)


def record_video(path: str, root: str | os.PathLike[str]) -> Path:
    """The file a Video-R1 record's ``path`` names under the data ``root``: absolute paths stay,
    relative ones (``./Evaluation/...``) join ``root``; then :func:`resolve_video`."""
    video = Path(path).expanduser()
    return resolve_video(video if video.is_absolute() else Path(root) / video)
