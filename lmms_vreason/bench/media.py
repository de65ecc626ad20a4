"""Media benchmarks (``vreason bench-media``): what reading videos costs the decode loop.

``vreason bench-media prefetch``: the fixture benchmark (``vreason fixtures``) through the backend's
``generate_until`` with the tiny random-weight Qwen2.5-VL, ``--samples`` requests, once with
``prefetch=false`` (every chunk's videos read, resized and processed in the decode loop's process)
and once with ``prefetch=true`` (the next chunk's in a worker process), alternating, in one process.
Prints the wall time of each run, ``speedup`` (median without / median with prefetch) and the share
of the run the decode loop spent waiting for media (``media_wait_share``). Videos are read as the
paper's main setting reads them (Video-R1: 2 fps within [4, 32] frames, 128*28*28 pixels per frame),
so each 64x64 fixture clip becomes 12 frames upscaled to 308x308.

``vreason bench-media readers``: decord (the reader Video-R1 and this package use) against torchcodec
on synthetic clips of several codecs and sizes, Video-R1's frame selection on each: whether they
give the same frame count, frame rate, indices and pixels, and the median milliseconds of a read.
torchcodec is not a dependency (it needs FFmpeg's shared libraries installed on the system); without
it the command says why and times decord alone.

Examples: ``vreason bench-media prefetch --samples 20 --json``,
``vreason bench-media prefetch --device cuda --batch-size 4``, ``vreason bench-media readers``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lmms_vreason.cli import HelpFormatter, prog
from lmms_vreason.media.protocol import FrameSettings, frame_indices

FIXTURE_FILES = (
    "eval_vsibench.json",
    "eval_videommmu.json",
    "eval_mmvu.json",
    "eval_mvbench.json",
    "eval_tempcompass.json",
    "eval_videomme.json",
)


# prefetch ---------------------------------------------------------------------------------------
def _fixture_docs(root: Path, samples: int) -> list[dict[str, str]]:
    """``samples`` fixture records (all six benchmarks in turn), as ``{"video", "question"}``."""
    from lmms_vreason.media.files import record_video

    records = [r for name in FIXTURE_FILES for r in json.loads((root / name).read_text(encoding="utf-8"))]
    docs = [{"video": str(record_video(r["path"], root)), "question": r["problem"]} for r in records]
    return [docs[i % len(docs)] for i in range(samples)]


def _requests(docs: list[dict[str, str]], max_new_tokens: int) -> list[Any]:
    from lmms_eval.api.instance import Instance

    def to_messages(doc: dict[str, str]) -> list[dict[str, Any]]:
        content = [{"type": "video", "url": doc["video"]}, {"type": "text", "text": doc["question"]}]
        return [{"role": "user", "content": content}]

    gen_kwargs = {"max_new_tokens": max_new_tokens, "do_sample": False, "temperature": 0}
    return [
        Instance(
            request_type="generate_until",
            arguments=("", to_messages, gen_kwargs, doc_id, "fixture", "test"),
            idx=0,
            metadata={"task": "fixture", "doc_id": doc_id, "repeats": 1},
        )
        for doc_id in range(len(docs))
    ]


def bench_prefetch(args: argparse.Namespace) -> dict[str, Any]:
    from lmms_vreason.lmms.backend import Qwen2_5_VL_VReason

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    from lmms_vreason.testing.fixtures import make_fixture_bench
    from lmms_vreason.testing.tiny import TinySpec, build_tiny_model

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_tiny_model(Path(tmp) / "tiny", TinySpec(vocab="small"))
        root = make_fixture_bench(Path(tmp) / "fixture")
        docs = _fixture_docs(root, args.samples)
        backends = {
            mode: Qwen2_5_VL_VReason(
                pretrained=str(model_dir),
                device=args.device,
                dtype="float32",
                batch_size=args.batch_size,
                prefetch=mode,
                vreason=not args.no_vreason,
            )
            for mode in ("false", "true")
        }
        runs: dict[str, list[dict[str, float]]] = {"false": [], "true": []}
        texts: dict[str, list[str]] = {}
        for _ in range(args.repeats):
            for mode, backend in backends.items():
                backend.task_dict = {"fixture": {"test": docs}}
                start = time.perf_counter()
                results = backend.generate_until(_requests(docs, args.max_new_tokens))
                wall = time.perf_counter() - start
                stats = backend.media_stats
                row = {"wall_s": round(wall, 3), "media_wait_s": round(stats.wait_s, 3)}
                if stats.worker_starts:
                    row["worker_start_s"] = round(stats.worker_start_s, 3)
                runs[mode].append(row)
                texts[mode] = [r.text for r in results]
    off, on = runs["false"], runs["true"]
    off_wall = statistics.median(r["wall_s"] for r in off)
    on_wall = statistics.median(r["wall_s"] for r in on)
    return {
        "benchmark": "media prefetch (fixture benchmark, tiny Qwen2.5-VL)",
        "samples": args.samples,
        "batch_size": args.batch_size,
        "max_new_tokens": args.max_new_tokens,
        "vreason": not args.no_vreason,
        "device": args.device,
        "torch_threads": torch.get_num_threads(),
        "runs_without_prefetch": off,
        "runs_with_prefetch": on,
        "wall_s_without_prefetch": off_wall,
        "wall_s_with_prefetch": on_wall,
        "speedup": round(off_wall / on_wall, 3),
        "media_wait_share_without_prefetch": round(
            statistics.median(r["media_wait_s"] / r["wall_s"] for r in off), 3
        ),
        "media_wait_share_with_prefetch": round(
            statistics.median(r["media_wait_s"] / r["wall_s"] for r in on), 3
        ),
        "same_responses": texts["false"] == texts["true"],
    }


# readers ----------------------------------------------------------------------------------------
CLIPS: tuple[tuple[str, str, int, int, int, int | Fraction], ...] = (
    ("mpeg4_64x64_8fps.mp4", "mpeg4", 64, 64, 48, 8),  # the fixture benchmark's format
    ("h264_640x360_30fps_10s.mp4", "libx264", 640, 360, 300, 30),
    ("h264_1280x720_30fps_20s.mp4", "libx264", 1280, 720, 600, 30),
    ("vp9_480x270_25fps_6s.webm", "libvpx-vp9", 480, 270, 150, 25),
    ("h264_322x242_29.97fps.mkv", "libx264", 322, 242, 97, Fraction(30000, 1001)),
)
"""name, encoder, width, height, frames, fps."""


def _write_clip(path: Path, codec: str, width: int, height: int, frames: int, fps: int | Fraction) -> None:
    """A clip with texture and motion (a scrolling block pattern and a moving square)."""
    import av

    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (height // 8 + 2, width // 8 + 2, 3), dtype=np.uint8)
    base = base.repeat(8, axis=0).repeat(8, axis=1)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for t in range(frames):
            frame = np.roll(base, t, axis=1)[:height, :width].copy()
            top = (3 * t) % (height - 16)
            frame[top : top + 16, 10:26] = 255
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def _read_decord(path: Path, settings: FrameSettings) -> tuple[int, float, list[int], torch.Tensor]:
    """Video-R1's reading with decord (what :func:`lmms_vreason.media.reader.read_video` does)."""
    import decord

    reader = decord.VideoReader(str(path))
    total, fps = len(reader), float(reader.get_avg_fps())
    indices = frame_indices(total, settings.frame_count(total, fps))
    return total, fps, indices, torch.from_numpy(reader.get_batch(indices).asnumpy()).permute(0, 3, 1, 2)


def _read_torchcodec(path: Path, settings: FrameSettings) -> tuple[int, float, list[int], torch.Tensor]:
    """The same reading with torchcodec: frames counted by a scan, the stream's own frame rate."""
    from torchcodec.decoders import VideoDecoder

    decoder = VideoDecoder(str(path), seek_mode="exact")
    meta = decoder.metadata
    total, fps = int(meta.num_frames), float(meta.average_fps_from_header)
    indices = frame_indices(total, settings.frame_count(total, fps))
    return total, fps, indices, decoder.get_frames_at(indices).data


def _median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return round(statistics.median(times) * 1e3, 2)


def bench_readers(args: argparse.Namespace) -> dict[str, Any]:
    settings = FrameSettings()
    try:
        import torchcodec.decoders  # noqa: F401  (loads FFmpeg's libraries; fails without them)

        torchcodec_error = None
    except Exception as exc:  # reported in the output, not hidden
        torchcodec_error = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    clips = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, codec, width, height, frames, fps in CLIPS:
            path = Path(tmp) / name
            _write_clip(path, codec, width, height, frames, fps)
            total, video_fps, indices, pixels = _read_decord(path, settings)
            row: dict[str, Any] = {
                "clip": name,
                "frames": total,
                "fps": video_fps,
                "frames_read": len(indices),
                "decord_ms": _median_ms(lambda p=path: _read_decord(p, settings), args.repeats),
            }
            if torchcodec_error is None:
                t_total, t_fps, t_indices, t_pixels = _read_torchcodec(path, settings)
                same_shape = t_pixels.shape == pixels.shape
                row.update(
                    {
                        "torchcodec_ms": _median_ms(
                            lambda p=path: _read_torchcodec(p, settings), args.repeats
                        ),
                        "same_frames": (t_total, t_fps, t_indices) == (total, video_fps, indices),
                        "same_pixels": same_shape and torch.equal(t_pixels, pixels),
                        "max_pixel_difference": int((t_pixels.int() - pixels.int()).abs().max())
                        if same_shape
                        else None,
                    }
                )
                row["torchcodec_over_decord"] = round(row["torchcodec_ms"] / row["decord_ms"], 3)
            clips.append(row)
    out: dict[str, Any] = {"benchmark": "video readers (Video-R1's frame selection)", "clips": clips}
    if torchcodec_error is not None:
        out["torchcodec"] = f"not measured: {torchcodec_error}"
    else:
        import torchcodec

        out["torchcodec"] = torchcodec.__version__
        out["bit_identical"] = all(c["same_frames"] and c["same_pixels"] for c in clips)
    import decord

    out["decord"] = decord.__version__
    return out


def _table(rows: list[dict[str, Any]]) -> str:
    keys = list(dict.fromkeys(k for row in rows for k in row))
    lines = [" | ".join(keys), " | ".join("---" for _ in keys)]
    lines += [" | ".join(str(row.get(k, "")) for k in keys) for row in rows]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog("bench-media"), description=__doc__, formatter_class=HelpFormatter
    )
    sub = parser.add_subparsers(dest="what", required=True, metavar="{prefetch,readers}")
    prefetch = sub.add_parser(
        "prefetch", help="wall time with and without the prefetch worker", formatter_class=HelpFormatter
    )
    prefetch.add_argument("--samples", type=int, default=20, help="requests per run")
    prefetch.add_argument("--batch-size", type=int, default=1, help="requests decoded together")
    prefetch.add_argument("--max-new-tokens", type=int, default=32, help="tokens per request")
    prefetch.add_argument("--repeats", type=int, default=1, help="runs of each mode, alternating")
    prefetch.add_argument("--device", default="cpu", help="torch device of the tiny model")
    prefetch.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads of the decode loop (the worker takes half, at least 1); default: torch's. "
        "1 on a 2-core machine leaves the worker a core, as a GPU run leaves the CPU idle",
    )
    prefetch.add_argument(
        "--no-vreason", action="store_true", help="the plain loop instead of V-Reason (k=4)"
    )
    prefetch.add_argument("--json", action="store_true", help="print one JSON object")
    readers = sub.add_parser("readers", help="decord against torchcodec", formatter_class=HelpFormatter)
    readers.add_argument("--repeats", type=int, default=5, help="timed reads per clip and reader (median)")
    readers.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result = bench_prefetch(args) if args.what == "prefetch" else bench_readers(args)
    if args.json:
        print(json.dumps(result, indent=2))
    elif args.what == "readers":
        print(_table(result["clips"]))
        print({k: v for k, v in result.items() if k != "clips"})
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
    return 0
