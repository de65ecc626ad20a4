"""Video-R1's frame sampling and sizing rules (docs/method.md §3), against hand-computed values.

Expected frame counts come from the rule as Video-R1's ``vision_process.py`` states it, re-derived
here (``video_r1_count``) and pinned by a hand-computed table; sizes come from the table of the
earlier reading of Video-R1's code (its smart_resize run on each input); both are also checked
against qwen-vl-utils' own ``smart_nframes``/``smart_resize``, an independent implementation.
"""

from __future__ import annotations

import math

import pytest

from lmms_vreason.lmms.args import parse_model_args
from lmms_vreason.media.protocol import (
    FrameSettings,
    frame_indices,
    frame_max_pixels,
    resize_shape,
    sampled_frame_count,
    video_token_count,
)

P128, P256 = 128 * 28 * 28, 256 * 28 * 28
MAIN = FrameSettings()  # the paper's main setting: 32 frames, 128*28*28
SIXTEEN = FrameSettings(max_frames=16, max_pixels=P256)  # the 16-frame / 256*28*28 setting


def video_r1_count(total: int, video_fps: float, max_frames: int) -> int:
    """The rule as written: 2 fps, clamped to [4, max_frames], at most T, floored to even."""
    even_floor = lambda x: math.floor(x / 2) * 2  # noqa: E731
    wanted = total / video_fps * 2.0
    return even_floor(min(max(wanted, 4), even_floor(min(max_frames, total)), total))


# (seconds, video fps) -> T = round(seconds * fps); hand-computed counts for max 32 / max 16.
# 0.7 s: 2 fps gives 1.4 frames -> raised to 4 (every clip here has >= 6 frames).
# 1 s: 2 -> 4.  3 s: 6 (29.97 fps: T = 90, 90 / 29.97 * 2 = 6.006 -> 6).  10 s: 20 -> 20 / 16.
# 25 s and 40 s: 50 and 80 -> capped at 32 / 16 (29.97 fps, 25 s: T = 749, 49.98 -> 32 / 16).
DURATIONS = [
    (0.7, 8, 6, 4, 4),
    (0.7, 24, 17, 4, 4),
    (0.7, 25, 18, 4, 4),
    (0.7, 29.97, 21, 4, 4),
    (0.7, 30, 21, 4, 4),
    (0.7, 60, 42, 4, 4),
    (1, 8, 8, 4, 4),
    (1, 24, 24, 4, 4),
    (1, 29.97, 30, 4, 4),
    (1, 60, 60, 4, 4),
    (3, 8, 24, 6, 6),
    (3, 25, 75, 6, 6),
    (3, 29.97, 90, 6, 6),
    (3, 60, 180, 6, 6),
    (10, 8, 80, 20, 16),
    (10, 24, 240, 20, 16),
    (10, 29.97, 300, 20, 16),
    (10, 30, 300, 20, 16),
    (25, 8, 200, 32, 16),
    (25, 29.97, 749, 32, 16),
    (25, 60, 1500, 32, 16),
    (40, 24, 960, 32, 16),
    (40, 30, 1200, 32, 16),
    (40, 60, 2400, 32, 16),
]


@pytest.mark.parametrize(("seconds", "fps", "total", "n32", "n16"), DURATIONS)
def test_frame_counts_of_clips_by_duration(seconds, fps, total, n32, n16) -> None:
    assert round(seconds * fps) == total
    assert video_r1_count(total, fps, 32) == n32 and video_r1_count(total, fps, 16) == n16
    assert MAIN.frame_count(total, fps) == n32
    assert SIXTEEN.frame_count(total, fps) == n16


@pytest.mark.parametrize(
    ("total", "fps", "n32", "n16"),
    [
        (1, 30, 1, 1),  # Video-R1: 0 frames -> ValueError; read the one frame (padded to 2 below)
        (2, 30, 2, 2),
        (3, 30, 2, 2),  # at most T, floored to even
        (5, 30, 4, 4),
        (5, 8, 4, 4),
        (17, 1, 16, 16),  # 34 wanted, but floor_even(min(32, 17)) = 16
        (20, 1, 20, 16),
        (64, 1, 32, 16),
        (75, 30, 4, 4),  # 5.0 -> floored to 4
        (100, 29.97, 6, 6),  # 6.67 -> 6
        (1798, 29.97, 32, 16),
    ],
)
def test_frame_counts_of_tiny_and_low_fps_clips(total, fps, n32, n16) -> None:
    assert MAIN.frame_count(total, fps) == n32
    assert SIXTEEN.frame_count(total, fps) == n16
    if total >= 2:
        assert video_r1_count(total, fps, 32) == n32
    assert MAIN.padded_count(MAIN.frame_count(total, fps)) == max(n32, 2)


def test_frame_counts_equal_qwen_vl_utils_smart_nframes() -> None:
    from qwen_vl_utils.vision_process import smart_nframes

    for total in range(2, 800, 7):
        for fps in (1, 8, 10, 24, 25, 29.97, 30, 60):
            for max_frames in (16, 32, 64):
                ours = sampled_frame_count(total, fps, max_frames=max_frames)
                element = {"fps": 2.0, "min_frames": 4, "max_frames": max_frames}
                assert ours == smart_nframes(element, total_frames=total, video_fps=fps), (total, fps)
                assert ours == video_r1_count(total, fps, max_frames)


def test_asked_count_is_video_r1s_count_for_a_clip_with_frames_enough() -> None:
    """What the reading asks of a clip: qwen-vl-utils' count for the same duration at 64x the frame
    rate (so the clip's own frame count cannot bind; x64 keeps ``T / fps`` exact in binary floats).
    A clip reads fewer frames than asked exactly when it has fewer frames than asked."""
    from qwen_vl_utils.vision_process import smart_nframes

    for total in [*range(1, 40), *range(40, 400, 13)]:
        for fps in (0.5, 1, 1.5, 8, 24, 29.97, 30, 60):
            for max_frames in (16, 32):
                settings = FrameSettings(max_frames=max_frames)
                element = {"fps": 2.0, "min_frames": 4, "max_frames": max_frames}
                asked = settings.asked_count(total, fps)
                assert asked == smart_nframes(element, total_frames=total * 64, video_fps=fps * 64)
                read = settings.frame_count(total, fps)
                assert (read < asked) == (total < asked), (total, fps, max_frames)
    fixed = FrameSettings(nframes=8)
    assert [fixed.asked_count(t, 30) for t in (3, 8, 300)] == [8, 8, 8]
    assert [fixed.frame_count(t, 30) for t in (3, 8, 300)] == [2, 8, 8]
    assert MAIN.asked_count(3, 1.0) == 6 and MAIN.frame_count(3, 1.0) == 2  # 3 s at 1 fps: 6 wanted


@pytest.mark.parametrize(
    ("total", "count", "expected"),
    [
        (3, 2, [0, 2]),
        (5, 4, [0, 1, 3, 4]),
        (17, 16, [0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16]),
        (20, 16, [0, 1, 3, 4, 5, 6, 8, 9, 10, 11, 13, 14, 15, 16, 18, 19]),
        (300, 16, [0, 20, 40, 60, 80, 100, 120, 140, 159, 179, 199, 219, 239, 259, 279, 299]),
        (150, 10, [0, 17, 33, 50, 66, 83, 99, 116, 132, 149]),
        (100, 6, [0, 20, 40, 59, 79, 99]),
    ],
)
def test_frame_indices_are_video_r1s(total, count, expected) -> None:
    assert frame_indices(total, count) == expected


def test_fixed_count_is_explicit_and_shortens_to_the_clip() -> None:
    fixed = FrameSettings(nframes=8)
    assert fixed.frame_count(300, 30) == 8  # whatever the duration
    assert fixed.frame_count(7, 30) == 6  # a shorter clip: all its frames, floored to even
    assert fixed.frame_count(1, 30) == 1


def test_effective_per_frame_maximum() -> None:
    # max(min(P, 90316800 / n * 2), int(128*28*28 * 1.05)): the 1.05 floor wins at P = 128*28*28.
    assert int(P128 * 1.05) == 105369
    for count in (2, 16, 32, 900):
        assert frame_max_pixels(count, max_pixels=P128) == 105369
        assert frame_max_pixels(count, max_pixels=P256) == P256
    assert frame_max_pixels(1800, max_pixels=P256) == 105369  # the total budget: 100352 < 105369
    assert frame_max_pixels(1000, max_pixels=P256) == 90316800 / 1000 * 2


# input HxW -> resized at (min 128*28*28, max 105369) and (min 128*28*28, max 200704)
SIZES = [
    ((360, 640), (224, 420), (336, 588)),
    ((720, 1280), (224, 420), (336, 588)),
    ((1080, 1920), (224, 420), (336, 588)),
    ((480, 854), (224, 420), (308, 588)),
    ((480, 720), (252, 392), (364, 532)),  # a true 100352 cap would give 252x364
    ((360, 480), (280, 364), (364, 476)),
    ((240, 320), (280, 392), (280, 392)),  # small: upscaled to >= 100352 pixels
    ((144, 176), (308, 364), (308, 364)),
    ((256, 256), (336, 336), (336, 336)),
    ((1280, 720), (420, 224), (588, 336)),  # portrait
    ((1000, 1000), (308, 308), (448, 448)),
    ((240, 426), (224, 420), (252, 420)),  # odd width
]


@pytest.mark.parametrize(("size", "at128", "at256"), SIZES)
def test_resized_sizes_and_token_counts(size, at128, at256) -> None:
    height, width = size
    assert MAIN.frame_size(height, width, 32) == at128
    assert SIXTEEN.frame_size(height, width, 16) == at256
    for count, (h, w) in ((32, at128), (16, at256)):
        assert video_token_count(count, h, w) == count // 2 * (h // 28) * (w // 28)


def test_token_count_of_a_long_hd_clip_in_both_settings() -> None:
    # 40 s at 30 fps, 1280x720 landscape: 32 frames of 224x420 -> 16 * 8 * 15 = 1920 tokens;
    # 16 frames of 336x588 -> 8 * 12 * 21 = 2016 tokens.
    n = MAIN.frame_count(1200, 30)
    assert video_token_count(n, *MAIN.frame_size(720, 1280, n)) == 1920
    n = SIXTEEN.frame_count(1200, 30)
    assert video_token_count(n, *SIXTEEN.frame_size(720, 1280, n)) == 2016


def test_odd_and_tiny_frames() -> None:
    # 57x75 at min 100352: 56x84 < min -> beta = sqrt(100352 / 4275) = 4.845; ceil(276.2/28)=10 -> 280,
    # ceil(363.4/28) = 13 -> 364
    assert MAIN.frame_size(57, 75, 4) == (280, 364)
    # 1x1 -> 28x28 = 784 < min: beta = sqrt(100352) = 316.8 -> 12 * 28 = 336 each side
    assert MAIN.frame_size(1, 1, 2) == (336, 336)
    with pytest.raises(ValueError, match="aspect ratio"):
        MAIN.frame_size(10, 2100, 4)


def test_sizes_equal_qwen_vl_utils_smart_resize() -> None:
    from qwen_vl_utils.vision_process import smart_resize

    for height in range(20, 1200, 37):
        for width in range(20, 1700, 53):
            for limit in (105369, P256, 25088):
                low = min(P128, limit)
                ours = resize_shape(height, width, min_pixels=low, max_pixels=limit)
                theirs = smart_resize(height, width, factor=28, min_pixels=low, max_pixels=limit)
                # Extreme aspect ratios: theirs shrinks a side to 0 (the resize then fails); ours
                # keeps one patch row, the only departure.
                assert ours == tuple(max(28, side) for side in theirs), (height, width, limit)


def test_the_pixel_factor_is_a_parameter() -> None:
    # Qwen3-VL: patch 16 x merge 2 = 32. 360x640 at min = max = 128*32*32 -> cap int(131072 * 1.05).
    settings = FrameSettings(factor=32, min_pixels=128 * 32 * 32, max_pixels=128 * 32 * 32)
    height, width = settings.frame_size(360, 640, 32)
    assert height % 32 == 0 and width % 32 == 0
    assert (height, width) == (256, 480)  # beta = sqrt(230400 / 137625) = 1.2939 -> 278.2, 494.6


def test_default_arguments_are_the_papers_main_setting() -> None:
    assert parse_model_args({}).frame_settings() == MAIN
    assert parse_model_args({"max_frames": 16, "max_pixels": P256}).frame_settings() == SIXTEEN
    assert parse_model_args({"max_num_frames": 16, "max_pixels": P256}).frame_settings() == SIXTEEN
