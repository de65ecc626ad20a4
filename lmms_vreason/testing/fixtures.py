"""Write a small local stand-in for the six Video-R1 evaluation files and their videos.

The real benchmarks cannot be downloaded offline (no hub access in development or CI), so tests and
the README demo run the task pack on this fixture instead: the six ``eval_*.json`` files in the
Video-R1 record format (``problem_id, problem, problem_type, options, solution, path, data_type``,
plus ``duration`` for Video-MME) with a few records of each problem type the real files use, and
one small synthetic mp4 per benchmark (coloured squares moving across a grey background, so every
question has a true answer). The layout is the one ``VREASON_EVAL_ROOT`` expects::

    OUT_DIR/eval_vsibench.json ... OUT_DIR/eval_videomme.json
    OUT_DIR/Evaluation/<Benchmark>/clip.mp4        (records say "./Evaluation/<Benchmark>/clip.mp4")

Usage: ``vreason fixtures OUT_DIR [--seed N] [--missing-video]``, or import
:func:`make_fixture_bench`. The output depends only on the seed. ``--missing-video`` makes the first
MMVU record point at a video that is not written, to exercise the backend's media-error path.
"""

from __future__ import annotations

import argparse
import json
import random
from fractions import Fraction
from pathlib import Path
from typing import Any, NamedTuple

import av
import numpy as np

from lmms_vreason.cli import HelpFormatter, prog

FRAMES = 48
SIZE = 64
FPS = 8
MISSING_VIDEO = "./Evaluation/MMVU/missing.mp4"
_MARGIN = 4

_DIRECTIONS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
_COLOURS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 80, 220), "yellow": (230, 210, 40)}

# benchmark folder, eval file, number of records of each problem type
_LAYOUT: tuple[tuple[str, str, dict[str, int]], ...] = (
    ("VSI-Bench", "eval_vsibench.json", {"multiple choice": 3, "regression": 3}),
    ("VideoMMMU", "eval_videommmu.json", {"multiple choice": 3, "numerical": 2}),
    ("MMVU", "eval_mmvu.json", {"multiple choice": 4}),
    ("MVBench", "eval_mvbench.json", {"multiple choice": 3}),
    ("TempCompass", "eval_tempcompass.json", {"multiple choice": 3}),
    ("Video-MME", "eval_videomme.json", {"multiple choice": 6}),
)
CORRUPTIONS = ("reversed", "blank")
"""Broken pipelines an accuracy gate must catch: ``reversed`` writes every clip's frames in reverse
time order (the direction answers flip, nothing else changes); ``blank`` writes the background
without the squares (the video carries no answer: every question falls to chance)."""
_DURATIONS = ("short", "short", "medium", "medium", "long", "long")


class Clip(NamedTuple):
    """What a synthetic clip shows: ``count`` squares of one colour and size, moving one way.

    (A ``NamedTuple`` so that the file also works when executed by path, outside ``sys.modules``.)
    """

    direction: str
    colour: str
    count: int
    side: int

    travel = FRAMES - 1
    """Pixels each square moves between the first and the last frame (one pixel per frame)."""


def _random_clip(rng: random.Random) -> Clip:
    return Clip(
        direction=rng.choice(sorted(_DIRECTIONS)),
        colour=rng.choice(sorted(_COLOURS)),
        count=rng.randint(1, 3),
        side=rng.randint(6, 10),
    )


def _frames(clip: Clip, rng: random.Random, corrupt: str | None = None) -> np.ndarray:
    """``FRAMES`` RGB frames of ``SIZE`` x ``SIZE``: the clip's squares moving over a grey ramp.

    The squares move one pixel per frame along parallel lanes, starting ``_MARGIN`` pixels from the
    edge they leave, so they stay inside the frame for the whole clip. ``corrupt`` (see
    :data:`CORRUPTIONS`) breaks the clip after the same draws from ``rng``, so the records and their
    answers are those of the intact clip.
    """
    shade = rng.randint(90, 150)
    ramp = np.linspace(-20, 20, SIZE).astype(np.int16)
    field = np.clip(shade + ramp[None, :, None] + np.zeros((SIZE, 1, 3), np.int16), 0, 255).astype(np.uint8)
    frames = np.repeat(field[None], FRAMES, axis=0)
    dx, dy = _DIRECTIONS[clip.direction]
    far = SIZE - _MARGIN - clip.side
    lanes = np.linspace(_MARGIN, far, clip.count).astype(int)
    for t in range(FRAMES):
        along = _MARGIN + t if dx + dy > 0 else far - t
        for lane in lanes:
            x, y = (along, lane) if dx else (lane, along)
            if corrupt != "blank":
                frames[t, y : y + clip.side, x : x + clip.side] = _COLOURS[clip.colour]
    return frames[::-1].copy() if corrupt == "reversed" else frames


def write_video(path: Path, frames: np.ndarray, fps: int | Fraction = FPS) -> None:
    """Encode ``frames`` (T, H, W, 3 uint8) as MPEG-4 Part 2 at ``fps``, a codec every ffmpeg build has.

    The container follows the file's suffix (``.mp4``, ``.mkv``, ``.avi``); odd sizes are allowed.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.height, stream.width = frames.shape[1], frames.shape[2]
        stream.pix_fmt = "yuv420p"
        stream.bit_rate = 1_000_000
        for array in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")))
        container.mux(stream.encode())


def _multiple_choice(
    rng: random.Random, question: str, truth: str, distractors: list[str], fixed: tuple[str, ...] | None
) -> dict[str, Any]:
    """A lettered multiple-choice record: the truth and three distractors in random order, or, with
    ``fixed``, those options in that order (the same for every record of the question kind)."""
    if fixed is None:
        choices = [truth, *rng.sample(distractors, k=min(3, len(distractors)))]
        rng.shuffle(choices)
    else:
        choices = list(fixed)
    letters = [chr(ord("A") + i) for i in range(len(choices))]
    return {
        "problem": question,
        "problem_type": "multiple choice",
        "options": [f"{letter}. {choice}" for letter, choice in zip(letters, choices, strict=True)],
        "solution": f"<answer>{letters[choices.index(truth)]}</answer>",
    }


MC_KINDS = ("direction", "colour", "count")
"""The multiple-choice question kinds, asked in turn (record ``i`` of a type asks kind ``i % 3``)."""
MC_QUESTIONS = {
    "direction": "In which direction do the squares move?",
    "colour": "What colour are the moving squares?",
    "count": "How many squares are there?",
}
"""Only the direction question needs the frames in order; reversing the clip flips its answer."""
FIXED_OPTIONS: dict[str, tuple[str, ...]] = {
    "direction": tuple(sorted(_DIRECTIONS)),
    "colour": tuple(sorted(_COLOURS)),
    "count": ("1", "2", "3", "4"),
}
"""The options of each multiple-choice kind with ``fixed_options`` (chance 25 %; 1-3 squares, so
"4" is never right). The trained tiny model is trained and evaluated with these: learning to read
shuffled options is a pointer task a minutes-long CPU training does not reach."""


def _question(
    rng: random.Random, clip: Clip, problem_type: str, index: int, fixed_options: bool = False
) -> dict[str, Any]:
    """A question about ``clip`` whose answer the clip shows (``index`` varies the question asked)."""
    if problem_type == "multiple choice":
        kind = MC_KINDS[index % 3]
        fixed = FIXED_OPTIONS[kind] if fixed_options else None
        if kind == "direction":
            others = [d for d in _DIRECTIONS if d != clip.direction]
            return _multiple_choice(rng, MC_QUESTIONS[kind], clip.direction, others, fixed)
        if kind == "colour":
            others = [c for c in _COLOURS if c != clip.colour]
            return _multiple_choice(rng, MC_QUESTIONS[kind], clip.colour, others, fixed)
        others = [str(n) for n in range(1, 6) if n != clip.count]
        return _multiple_choice(rng, MC_QUESTIONS[kind], str(clip.count), others, fixed)
    if problem_type == "numerical":
        question, answer = (
            ("How many squares are in the video?", str(clip.count))
            if index % 2 == 0
            else ("How many pixels wide is one square?", str(clip.side))
        )
        return {
            "problem": question,
            "problem_type": "numerical",
            "options": None,
            "solution": f"<answer>{answer}</answer>",
        }
    if problem_type == "regression":
        question, answer = (
            ("What is the side length of one square, in pixels?", f"{clip.side}"),
            ("How far does each square travel during the video, in pixels?", f"{clip.travel}"),
            ("How long is the video, in seconds?", f"{FRAMES / FPS:.1f}"),
        )[index % 3]
        return {
            "problem": question,
            "problem_type": "regression",
            "options": None,
            "solution": f"<answer>{answer}</answer>",
        }
    raise ValueError(f"no fixture questions of type {problem_type!r}")


def make_fixture_bench(
    out_dir: str | Path,
    seed: int = 0,
    missing_video: bool = False,
    count: int | None = None,
    fixed_options: bool = False,
    corrupt: str | None = None,
) -> Path:
    """Write the fixture benchmark into ``out_dir`` (created if needed) and return ``out_dir``.

    ``count=None`` (the default layout): one clip per benchmark and the few records of
    :data:`_LAYOUT` about it. ``count=K``: K records of each of the benchmark's problem types, each
    with its own clip (``Evaluation/<Benchmark>/clip_<problem_id>.mp4``), so that an accuracy over
    the fixture is an accuracy over clips. ``corrupt`` (one of :data:`CORRUPTIONS`) writes broken
    clips under the same records, answers and doc ids as the intact fixture of that seed.
    """
    if count is not None and count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    if corrupt is not None and corrupt not in CORRUPTIONS:
        raise ValueError(f"corrupt must be one of {', '.join(CORRUPTIONS)}, got {corrupt!r}")
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    for folder, eval_file, counts in _LAYOUT:
        shared = None
        if count is None:
            shared = _random_clip(rng)
            video = f"./Evaluation/{folder}/clip.mp4"
            write_video(root / video, _frames(shared, rng, corrupt))
        records = []
        for problem_type, legacy in counts.items():
            for index in range(legacy if count is None else count):
                record = {"problem_id": len(records) + 1, "data_type": "video"}
                clip = shared
                if clip is None:
                    clip = _random_clip(rng)
                    video = f"./Evaluation/{folder}/clip_{record['problem_id']}.mp4"
                    write_video(root / video, _frames(clip, rng, corrupt))
                record.update(_question(rng, clip, problem_type, index, fixed_options))
                record.update({"process": "", "path": video, "data_source": "synthetic fixture"})
                if eval_file == "eval_videomme.json":
                    record["duration"] = _DURATIONS[len(records) % len(_DURATIONS)]
                records.append(record)
        if missing_video and folder == "MMVU":
            records[0]["path"] = MISSING_VIDEO
        (root / eval_file).write_text(
            json.dumps(records, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
    return root


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog=prog("fixtures"), description=__doc__, formatter_class=HelpFormatter
    )
    parser.add_argument("out_dir", type=Path, help="folder to write (use it as VREASON_EVAL_ROOT)")
    parser.add_argument("--seed", type=int, default=0, help="the output depends only on this")
    parser.add_argument(
        "--missing-video", action="store_true", help=f"first MMVU record points at {MISSING_VIDEO}"
    )
    parser.add_argument(
        "--count",
        type=int,
        default=None,
        help="K records of each problem type per benchmark, each with its own clip "
        "(default: the small layout, one clip per benchmark)",
    )
    parser.add_argument(
        "--fixed-options",
        action="store_true",
        help="the same option order for every record of a multiple-choice kind (the trained tiny model's)",
    )
    parser.add_argument(
        "--corrupt", choices=CORRUPTIONS, default=None, help="write broken clips (to test an accuracy gate)"
    )
    args = parser.parse_args(argv)
    root = make_fixture_bench(
        args.out_dir,
        seed=args.seed,
        missing_video=args.missing_video,
        count=args.count,
        fixed_options=args.fixed_options,
        corrupt=args.corrupt,
    )
    print(f"wrote the fixture benchmark to {root}; run with VREASON_EVAL_ROOT={root.resolve()}")


if __name__ == "__main__":
    main()
