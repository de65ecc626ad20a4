"""A request's videos and images, read once per sample, as a Qwen-VL processor takes them.

Frames are sampled and sized by Video-R1's rules (:mod:`lmms_vreason.media.protocol`) and decoded by
:mod:`lmms_vreason.media.reader`; the processor is then told not to sample or resize again (see
:data:`PROCESSOR_KWARGS`). A missing or undecodable file raises :class:`MediaError` naming the file
and its first real cause; the backend turns that into that sample's failed result and carries on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lmms_vreason.media.protocol import FrameSettings
from lmms_vreason.media.reader import FrameCount, MediaError, read_image, read_video

if TYPE_CHECKING:
    from lmms_eval.protocol import ChatMessages

__all__ = [
    "PROCESSOR_KWARGS",
    "FrameCount",
    "FrameSettings",
    "MediaError",
    "SampleMedia",
    "load_sample_media",
]

PROCESSOR_KWARGS: dict[str, dict[str, Any]] = {
    "images_kwargs": {"do_resize": False},
    "videos_kwargs": {"do_resize": False, "do_sample_frames": False, "cap_pixels_per_frame": False},
}
"""The frames arrive sampled and sized by Video-R1's rules, so the processor must not resize them with
its own limits or sample frames again. ``cap_pixels_per_frame`` (transformers' optional copy of the
qwen-vl-utils per-frame cap) is set explicitly: the cap is already applied by our sizing, and with
``do_resize=False`` the processor has nothing to cap; setting it also silences its start-up warning."""


@dataclass
class SampleMedia:
    """One sample's visuals in prompt order: PIL images, uint8 videos, the videos' metadata (for the
    processor) and their frame counts (asked and read, for the log and telemetry)."""

    images: list[Any] = field(default_factory=list)
    videos: list[Any] = field(default_factory=list)
    metadata: list[dict[str, Any]] = field(default_factory=list)
    frame_counts: list[FrameCount] = field(default_factory=list)

    @property
    def short_videos(self) -> list[FrameCount]:
        """The videos whose clip gave fewer frames than the reading asked for."""
        return [count for count in self.frame_counts if count.short]


def load_sample_media(chat: ChatMessages, settings: FrameSettings) -> SampleMedia:
    """Read every image and video of one conversation; :class:`MediaError` if one cannot be read."""
    media = SampleMedia()
    for message in chat.messages:
        for content in message.content:
            if content.type == "video":
                # Unsupported requests fail their own sample, named, like an unreadable file: a task
                # that needs them shows media_error_rate 100 and the run's other tasks are kept.
                if content.start_time is not None or content.end_time is not None:
                    raise MediaError(
                        f"{content.url}: video_start/video_end (part of a video) are not supported by the "
                        "V-Reason backends"
                    )
                if not isinstance(content.url, str):
                    raise MediaError(
                        f"a video must be given as a file path, got {type(content.url).__name__}"
                    )
                video = read_video(content.url.removeprefix("file://"), settings)
                media.videos.append(video.frames)
                media.metadata.append(video.metadata)
                media.frame_counts.append(video.frame_count)
            elif content.type == "image":
                media.images.append(read_image(content.url, settings))
            elif content.type == "audio":
                raise MediaError("the V-Reason backends take no audio input")
    return media
