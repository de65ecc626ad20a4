"""A request's videos and images, read once per sample, as a Qwen-VL processor takes them.

Frames are sampled and sized by Video-R1's rules (:mod:`lmms_vreason.media.protocol`) and decoded by
:mod:`lmms_vreason.media.reader`; the processor is then told not to sample or resize again (see
:data:`PROCESSOR_KWARGS`). A missing or undecodable file raises :class:`MediaError` naming the file
and its first real cause; the backend turns that into that sample's failed result and carries on.

:func:`prepare_chunk` is one chunk's whole media step (read every sample, then run the processor on
the samples that loaded): the backend runs it in-process or, for the next chunk, in the prefetch
worker (:mod:`lmms_vreason.lmms.prefetch`), so both paths give the same inputs and the same errors.
It takes :class:`MediaRequest`s, lmms-eval's chats in plain Python, so that the worker never imports
lmms-eval (whose protocol module alone takes seconds to import).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lmms_vreason.media.protocol import FrameSettings
from lmms_vreason.media.reader import FrameCount, MediaError, read_image, read_video

if TYPE_CHECKING:
    import torch
    from lmms_eval.protocol import ChatMessages

__all__ = [
    "PROCESSOR_KWARGS",
    "FrameCount",
    "FrameSettings",
    "MediaError",
    "MediaRequest",
    "PreparedChunk",
    "SampleMedia",
    "load_sample_media",
    "prepare_chunk",
    "processor_inputs",
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


@dataclass(frozen=True)
class Visual:
    """One image, video or audio item of a chat, in prompt order."""

    type: str
    url: Any
    start_time: float | None = None
    end_time: float | None = None


@dataclass(frozen=True)
class MediaRequest:
    """What the media step needs of one lmms-eval chat: its messages as the processor's chat template
    takes them, and its visuals. Plain data: it pickles without lmms-eval."""

    hf_messages: list[dict[str, Any]]
    visuals: list[Visual]
    template_kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra variables of the chat template (Qwen3.5: ``enable_thinking``)."""

    @classmethod
    def of(
        cls, chat: ChatMessages | MediaRequest, template_kwargs: dict[str, Any] | None = None
    ) -> MediaRequest:
        if isinstance(chat, MediaRequest):
            return chat
        visuals = [
            Visual(
                content.type,
                content.url,
                getattr(content, "start_time", None),
                getattr(content, "end_time", None),
            )
            for message in chat.messages
            for content in message.content
            if content.type != "text"
        ]
        return cls(
            hf_messages=chat.to_hf_messages(), visuals=visuals, template_kwargs=dict(template_kwargs or {})
        )

    def describe(self) -> str:
        """The files it names (for a message about the whole sample)."""
        return ", ".join(str(visual.url) for visual in self.visuals) or "no media"


def load_sample_media(chat: ChatMessages | MediaRequest, settings: FrameSettings) -> SampleMedia:
    """Read every image and video of one conversation; :class:`MediaError` if one cannot be read."""
    media = SampleMedia()
    for visual in MediaRequest.of(chat).visuals:
        if visual.type == "video":
            # Unsupported requests fail their own sample, named, like an unreadable file: a task
            # that needs them shows media_error_rate 100 and the run's other tasks are kept.
            if visual.start_time is not None or visual.end_time is not None:
                raise MediaError(
                    f"{visual.url}: video_start/video_end (part of a video) are not supported by the "
                    "V-Reason backends"
                )
            if not isinstance(visual.url, str):
                raise MediaError(f"a video must be given as a file path, got {type(visual.url).__name__}")
            video = read_video(visual.url.removeprefix("file://"), settings)
            media.videos.append(video.frames)
            media.metadata.append(video.metadata)
            media.frame_counts.append(video.frame_count)
        elif visual.type == "image":
            media.images.append(read_image(visual.url, settings))
        elif visual.type == "audio":
            raise MediaError("the V-Reason backends take no audio input")
    return media


def processor_inputs(
    processor: Any, requests: Sequence[MediaRequest], media: Sequence[SampleMedia]
) -> dict[str, torch.Tensor]:
    """The processor's model inputs for ``requests`` decoded together (left-padded when several)."""
    texts = [
        processor.apply_chat_template(
            request.hf_messages, tokenize=False, add_generation_prompt=True, **request.template_kwargs
        )
        for request in requests
    ]
    images = [image for sample in media for image in sample.images]
    videos = [video for sample in media for video in sample.videos]
    metadata = [meta for sample in media for meta in sample.metadata]
    inputs = processor(
        text=texts,
        images=images or None,
        videos=videos or None,
        video_metadata=metadata or None,
        padding=True,
        padding_side="left" if len(requests) > 1 else "right",
        return_tensors="pt",
        **PROCESSOR_KWARGS,
    )
    return dict(inputs)


@dataclass
class PreparedChunk:
    """One chunk of requests, ready to decode: the inputs of the samples whose media loaded, and the
    media error of each sample whose media did not."""

    loaded: list[int]
    """Positions (in the chunk) of the samples in ``inputs``, in order."""
    inputs: dict[str, torch.Tensor] | None
    """Processor outputs of the ``loaded`` samples batched together; ``None`` when none loaded."""
    failures: dict[int, MediaError] = field(default_factory=dict)
    """Position -> why that sample's media could not be read (the sample fails alone)."""
    frame_counts: dict[int, list[FrameCount]] = field(default_factory=dict)
    """Position -> frames asked and read per video of each loaded sample (short clips are reported)."""


def prepare_chunk(processor: Any, settings: FrameSettings, requests: Sequence[MediaRequest]) -> PreparedChunk:
    """Read each sample's media once, then batch the ones that loaded through the processor.

    A broken file fails its own sample (:class:`MediaError`), never its neighbours: they are not
    read again and are batched without it. Any other exception is a run error and propagates.
    """
    media: dict[int, SampleMedia] = {}
    failures: dict[int, MediaError] = {}
    for i, request in enumerate(requests):
        try:
            media[i] = load_sample_media(request, settings)
        except MediaError as exc:
            failures[i] = exc
    loaded = list(media)
    inputs = (
        processor_inputs(processor, [requests[i] for i in loaded], list(media.values())) if loaded else None
    )
    counts = {i: sample.frame_counts for i, sample in media.items()}
    return PreparedChunk(loaded=loaded, inputs=inputs, failures=failures, frame_counts=counts)
