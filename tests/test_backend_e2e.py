"""The plugin through the real ``lmms-eval`` command line, on the tiny model and the fixture benchmark.

lmms-eval exits 0 even when a run fails, so every assertion is on the files it writes.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lmms_vreason.benchmarks import DATA_ROOT_ENV, MEDIA_ERROR_PREFIX
from lmms_vreason.core.objective import replay
from lmms_vreason.models.families import QWEN3_VL
from lmms_vreason.telemetry import read_traces
from lmms_vreason.testing.fixtures import make_fixture_bench, write_video

pytestmark = pytest.mark.slow

PIXELS = f"max_pixels={32 * 28 * 28},min_pixels={4 * 28 * 28}"
PIXELS_QWEN3 = f"max_pixels={32 * 32 * 32},min_pixels={4 * 32 * 32}"  # Qwen3-VL: 32 x 32 px per token
GREEDY = "do_sample=false,temperature=0,max_new_tokens=12"


@pytest.fixture(scope="module")
def fixture_data(tmp_path_factory) -> Path:
    return make_fixture_bench(tmp_path_factory.mktemp("fixture"))


def run_lmms_eval(
    out: Path,
    model: str,
    model_args: str,
    data: Path,
    *,
    task: str = "mmvu",
    limit: int = 3,
    gen_kwargs: str = GREEDY,
    batch_size: int = 1,
) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "lmms_eval",
        "--model",
        model,
        "--model_args",
        model_args,
        "--tasks",
        task,
        "--limit",
        str(limit),
        "--batch_size",
        str(batch_size),
        "--gen_kwargs",
        gen_kwargs,
        "--output_path",
        str(out),
        "--log_samples",
    ]
    env = {**os.environ, DATA_ROOT_ENV: str(data), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, cwd=out.parent)


def read_samples(out: Path, task: str = "mmvu") -> dict[int, dict]:
    files = sorted(out.rglob(f"*_samples_{task}.jsonl"))
    assert files, f"lmms-eval wrote no samples under {out}"
    rows = [json.loads(line) for line in files[-1].read_text().splitlines() if line.strip()]
    return {row["doc_id"]: row for row in rows}


def response(row: dict) -> str:
    resp = row["filtered_resps"] if "filtered_resps" in row else row["resps"]
    while isinstance(resp, list):
        resp = resp[0]
    return resp


def test_plugin_with_vreason_off_equals_builtin_qwen2_5_vl(tmp_path, tiny_model_dir, fixture_data):
    # The built-in backend reads a fixed count of evenly spaced frames: ours does so with the explicit
    # nframes option. With these pixel limits both size the 64x64 fixture frames to 56x56 (ours:
    # Video-R1's cap max(min(25088, 90316800/8*2), int(3136*1.05)) = 25088, the built-in's 25088),
    # so both models see identical pixels.
    common = f"pretrained={tiny_model_dir},device=cpu,{PIXELS}"
    ours = run_lmms_eval(
        tmp_path / "ours",
        "qwen2_5_vl_vreason",
        f"{common},dtype=bfloat16,nframes=8,vreason=false",
        fixture_data,
    )
    builtin = run_lmms_eval(
        tmp_path / "builtin", "qwen2_5_vl", f"{common},device_map=cpu,max_num_frames=8", fixture_data
    )
    a, b = read_samples(tmp_path / "ours"), read_samples(tmp_path / "builtin")
    assert sorted(a) == sorted(b) == [0, 1, 2], (ours.stderr[-2000:], builtin.stderr[-2000:])
    for doc_id in a:
        assert response(a[doc_id]) == response(b[doc_id])
        assert len(response(a[doc_id])) > 0


def test_stop_tokens_tokenizer_stops_as_builtin_qwen2_5_vl_where_the_default_does_not(
    tmp_path, tiny_model_dir, fixture_data
):
    """A tiny model that emits ``<|endoftext|>`` early (in place of "'", its most frequent token on
    the fixture prompts): lmms-eval's ``qwen2_5_vl`` stops only at the tokenizer's ``<|im_end|>`` and
    so does ours with ``stop_tokens=tokenizer``; by default ours also stops at ``<|endoftext|>``
    (the generation config's, as transformers and Video-R1 do) and answers differently."""
    from conftest import with_token_as_endoftext
    from transformers import AutoTokenizer

    [quote] = AutoTokenizer.from_pretrained(tiny_model_dir).encode("'", add_special_tokens=False)
    model_dir = with_token_as_endoftext(tiny_model_dir, tmp_path / "eot_model", quote)
    common = f"pretrained={model_dir},device=cpu,{PIXELS}"
    ours_args = f"{common},dtype=bfloat16,nframes=8,vreason=false"
    builtin = run_lmms_eval(
        tmp_path / "builtin", "qwen2_5_vl", f"{common},device_map=cpu,max_num_frames=8", fixture_data
    )
    like_builtin = run_lmms_eval(
        tmp_path / "tokenizer", "qwen2_5_vl_vreason", f"{ours_args},stop_tokens=tokenizer", fixture_data
    )
    default = run_lmms_eval(tmp_path / "default", "qwen2_5_vl_vreason", ours_args, fixture_data)
    a, b, c = (read_samples(tmp_path / name) for name in ("tokenizer", "builtin", "default"))
    logs = [run.stderr[-2000:] for run in (like_builtin, builtin, default)]
    assert sorted(a) == sorted(b) == sorted(c) == [0, 1, 2], logs
    for doc_id in a:
        assert response(a[doc_id]) == response(b[doc_id])
        assert response(b[doc_id]).startswith(response(c[doc_id]))  # the default stops earlier, if at all
    assert any(response(c[d]) != response(b[d]) for d in a)  # ... and here it does


def test_plugin_with_vreason_off_equals_builtin_qwen3_vl(tmp_path, tiny3_sensitive_model_dir, fixture_data):
    """Same tiny Qwen3-VL, same frames and timestamps, greedy.

    The built-in backend reads a fixed count of evenly spaced frames through qwen-vl-utils
    (``image_patch_size=16``): ours does so with ``nframes``, and both keep the 64x64 fixture frames
    at 64x64 (multiples of 32; ours: Video-R1's cap max(min(32768, 90316800/8*2), int(4096*1.05)) =
    32768, qwen-vl-utils' 32768). lmms-eval's ``qwen3_vl`` always adds the system prompt "You are a
    helpful assistant.", which Qwen3-VL's chat template does not: ours is given it explicitly. The
    model's answers depend on the question and the frames (checked below), so equal answers mean
    equal inputs.
    """
    common = f"pretrained={tiny3_sensitive_model_dir},device=cpu,{PIXELS_QWEN3}"
    ours = run_lmms_eval(
        tmp_path / "ours",
        "qwen3_vl_vreason",
        f"{common},dtype=bfloat16,nframes=8,vreason=false,system_prompt=You are a helpful assistant.",
        fixture_data,
    )
    builtin = run_lmms_eval(
        tmp_path / "builtin",
        QWEN3_VL.builtin_backend,
        f"{common},device_map=cpu,max_num_frames=8",
        fixture_data,
    )
    a, b = read_samples(tmp_path / "ours"), read_samples(tmp_path / "builtin")
    assert sorted(a) == sorted(b) == [0, 1, 2], (ours.stderr[-2000:], builtin.stderr[-2000:])
    for doc_id in a:
        assert response(a[doc_id]) == response(b[doc_id])
        assert len(response(a[doc_id])) > 0
    assert len({response(row) for row in a.values()}) > 1  # the answer depends on the question
    run_lmms_eval(
        tmp_path / "fewer_frames",
        "qwen3_vl_vreason",
        f"{common},dtype=bfloat16,nframes=4,vreason=false,system_prompt=You are a helpful assistant.",
        fixture_data,
    )
    fewer = read_samples(tmp_path / "fewer_frames")
    assert any(response(fewer[d]) != response(a[d]) for d in a)  # ... and on the frames


@pytest.mark.parametrize(
    ("model", "model_dir", "pixels"),
    [("qwen2_5_vl_vreason", "tiny_model_dir", PIXELS), ("qwen3_vl_vreason", "tiny3_model_dir", PIXELS_QWEN3)],
)
def test_vreason_run_writes_results_samples_and_matching_telemetry(
    tmp_path, fixture_data, request, model, model_dir, pixels
):
    args = (
        f"pretrained={request.getfixturevalue(model_dir)},device=cpu,dtype=float32,max_frames=8,{pixels},"
        "step_size=2,telemetry=true,ema_beta=0.9"
    )
    proc = run_lmms_eval(tmp_path / "run", model, args, fixture_data, gen_kwargs="max_new_tokens=10")
    results = sorted((tmp_path / "run").rglob("*_results.json"))
    assert results, proc.stderr[-3000:]
    data = json.loads(results[-1].read_text())
    assert 0.0 <= data["results"]["mmvu"]["accuracy,none"] <= 100.0
    samples = read_samples(tmp_path / "run")
    traces = {t.doc_id: t for t in read_traces(tmp_path / "run")}
    assert sorted(traces) == sorted(samples) == [0, 1, 2]
    for trace in traces.values():
        assert trace.vreason and trace.task == "mmvu"
        assert trace.output_tokens == len(trace.entropy) == len(trace.ema) <= 10
        assert trace.opt_steps == sum(trace.optimized) == trace.output_tokens // 2  # k = 2: t = 2, 4, ...
        assert trace.video_tokens_before > 0 and trace.decode_s > 0
        # The row records the settings its EMA and α were made with; replaying the recorded
        # entropies through the tracker with them gives back the recorded EMA and α.
        assert trace.ema_beta == 0.9 and trace.objective == "switch"
        ema, alpha = replay(trace.entropy, trace.ema_beta, trace.objective)
        assert ema.tolist() == pytest.approx(trace.ema, abs=1e-6)
        steps = [t for t, on in enumerate(trace.optimized) if on]
        assert [trace.alpha[t] for t in steps] == [int(alpha[t]) for t in steps]


def test_missing_video_fails_that_sample_and_the_run_goes_on(tmp_path, tiny_model_dir):
    data = make_fixture_bench(tmp_path / "data", missing_video=True)
    records = json.loads((data / "eval_mmvu.json").read_text())
    missing = [i for i, r in enumerate(records) if not (data / r["path"]).exists()]
    assert missing, "fixture should reference a missing video"
    args = f"pretrained={tiny_model_dir},device=cpu,dtype=float32,nframes=8,{PIXELS}"
    proc = run_lmms_eval(
        tmp_path / "run", "qwen2_5_vl_vreason", args, data, limit=len(records), gen_kwargs="max_new_tokens=4"
    )
    samples = read_samples(tmp_path / "run")
    assert len(samples) == len(records), proc.stderr[-3000:]
    for doc_id, row in samples.items():
        failed = response(row).startswith(MEDIA_ERROR_PREFIX)
        assert failed == (doc_id in missing)
        if failed:
            assert records[doc_id]["path"].split("/")[-1] in response(row)
    assert "file not found" in proc.stdout + proc.stderr


def test_unknown_model_argument_fails_at_startup_naming_valid_ones(tmp_path, tiny_model_dir, fixture_data):
    proc = run_lmms_eval(
        tmp_path / "run", "qwen2_5_vl_vreason", f"pretrained={tiny_model_dir},stepsize=4", fixture_data
    )
    assert "unknown model argument(s) stepsize" in proc.stderr + proc.stdout
    assert "step_size" in proc.stderr + proc.stdout
    assert not list((tmp_path / "run").rglob("*_results.json"))


def test_batched_lite_run_through_lmms_eval_prunes_and_reports_it(tmp_path, tiny_model_dir, fixture_data):
    from lmms_vreason.core.pruning import keep_count

    # batch_size=2: both requests are decoded together, each with its own kept set and ΔV.
    args = f"pretrained={tiny_model_dir},device=cpu,dtype=float32,nframes=8,{PIXELS},lite=true,keep_ratio=0.5,telemetry=true"
    proc = run_lmms_eval(
        tmp_path / "run",
        "qwen2_5_vl_vreason",
        args,
        fixture_data,
        limit=2,
        gen_kwargs="max_new_tokens=6",
        batch_size=2,
    )
    assert sorted((tmp_path / "run").rglob("*_results.json")), proc.stdout[-3000:]
    traces = list(read_traces(tmp_path / "run"))
    assert len(traces) == 2
    for trace in traces:
        assert trace.lite and trace.vreason
        assert (
            trace.video_tokens_after == keep_count(trace.video_tokens_before, 0.5) < trace.video_tokens_before
        )


def video_r1_tokens(total: int, fps: float, height: int, width: int, *, max_frames: int, low: int, high: int):
    """LLM video tokens of a clip under Video-R1's rules, re-derived here from their statement:
    2 fps clamped to [4, max_frames], at most T, floored to even (a 1-frame clip: its frame twice);
    sides rounded to 28, shrunk to max(min(high, 90316800/n*2), int(1.05*low)) or grown to low."""
    even = lambda x: math.floor(x / 2) * 2  # noqa: E731
    n = even(min(max(total / fps * 2, 4), even(min(max_frames, total)), total))
    n = max(n, 2)
    cap = max(min(high, 90316800 / n * 2), int(low * 1.05))
    h, w = max(28, round(height / 28) * 28), max(28, round(width / 28) * 28)
    if h * w > cap:
        beta = math.sqrt(height * width / cap)
        h, w = math.floor(height / beta / 28) * 28, math.floor(width / beta / 28) * 28
    elif h * w < low:
        beta = math.sqrt(low / (height * width))
        h, w = math.ceil(height * beta / 28) * 28, math.ceil(width * beta / 28) * 28
    return n // 2 * (h // 28) * (w // 28)


def test_video_tokens_follow_video_r1s_rules_for_clips_of_any_duration_and_size(tmp_path, tiny_model_dir):
    # (frames, fps, height, width) -> tokens, by hand (max 8 frames, 3136..6272 pixels per frame):
    #   1 frame 40x40: 2 frames (repeated) of 56x56 (upscaled: 28x28 < 3136) -> 1 * 2 * 2 = 4
    #   12 frames @ 8 fps (1.5 s -> 3 -> 4 frames) 50x90 -> 56x84 (4704 pixels, in range) -> 2 * 2 * 3 = 12
    #   40 frames @ 8 fps (5 s -> 10 -> 8) 120x200 -> shrunk by sqrt(24000/6272): 56x84 -> 4 * 6 = 24
    #   3 frames @ 30 fps -> 2 frames, odd 33x47 -> 28x56 < 3136 -> grown: 56x84 -> 1 * 6 = 6
    clips = [(1, 8, 40, 40, 4), (12, 8, 50, 90, 12), (40, 8, 120, 200, 24), (3, 30, 33, 47, 6)]
    root = tmp_path / "data"
    rng = np.random.default_rng(0)
    records = []
    for i, (frames, fps, height, width, tokens) in enumerate(clips):
        assert video_r1_tokens(frames, fps, height, width, max_frames=8, low=3136, high=6272) == tokens
        name = f"./Evaluation/MMVU/clip{i}.mp4"
        write_video(root / name, rng.integers(0, 256, (frames, height, width, 3), dtype=np.uint8), fps)
        records.append(
            {
                "problem_id": i,
                "problem": "What moves?",
                "problem_type": "multiple choice",
                "options": ["A. a square", "B. a circle"],
                "solution": "<answer>A</answer>",
                "path": name,
                "data_type": "video",
            }
        )
    (root / "eval_mmvu.json").write_text(json.dumps(records))
    args = (
        f"pretrained={tiny_model_dir},device=cpu,dtype=float32,vreason=false,telemetry=true,"
        f"max_frames=8,min_pixels={4 * 28 * 28},max_pixels={8 * 28 * 28}"
    )
    proc = run_lmms_eval(
        tmp_path / "run", "qwen2_5_vl_vreason", args, root, limit=len(clips), gen_kwargs="max_new_tokens=2"
    )
    traces = {t.doc_id: t for t in read_traces(tmp_path / "run")}
    assert sorted(traces) == list(range(len(clips))), proc.stderr[-3000:]
    assert [traces[i].video_tokens_before for i in range(len(clips))] == [c[-1] for c in clips]
    assert "cap_pixels_per_frame" not in proc.stdout + proc.stderr  # set explicitly: no warning


@pytest.fixture(scope="module")
def sensitive_new_family_dirs(tmp_path_factory) -> dict[str, Path]:
    """Tiny Qwen3.5 and Qwen3-VL-MoE at weight std 0.2 (answers that depend on the input; see
    ``tiny3_sensitive_model_dir``). The MoE directory's name carries ``A3B``: lmms-eval's ``qwen3_vl``
    picks its MoE class by that pattern in the checkpoint's name, as in the released ids.

    Qwen3.5's linear layers get a slow decay (``A_log = log 1e-3``; transformers draws ``A`` from
    [0.01, 16]): with the drawn ones their states forget all but the prompt's last tokens, which the
    chat template makes the same for every question, and the random model answers every question alike.
    """
    import math

    from conftest import load_model

    from lmms_vreason.testing.tiny import TinySpec, build_tiny_model

    root = tmp_path_factory.mktemp("sensitive_new")
    dirs = {
        family: build_tiny_model(root / name, TinySpec(family=family, head_dim=32, init_std=0.2))
        for family, name in (("qwen3_5", "tiny-Qwen3.5"), ("qwen3_vl_moe", "tiny-Qwen3-VL-30B-A3B"))
    }
    model = load_model(dirs["qwen3_5"])
    for layer in model.model.language_model.layers:
        if layer.block_type == "linear_attention":
            layer.linear_attn.A_log.data.fill_(math.log(1e-3))
    model.save_pretrained(dirs["qwen3_5"])
    return dirs


@pytest.mark.parametrize(
    ("family", "ours_model", "builtin", "builtin_args"),
    [
        # lmms-eval's qwen3_5 thinks by default: thinking off on both sides (ours: the default).
        ("qwen3_5", "qwen3_5_vreason", "qwen3_5", ",enable_thinking=false"),
        ("qwen3_vl_moe", "qwen3_vl_moe_vreason", "qwen3_vl", ""),
    ],
)
def test_plugin_with_vreason_off_equals_builtin_on_the_new_families(
    tmp_path, sensitive_new_family_dirs, fixture_data, family, ours_model, builtin, builtin_args
):
    """As for Qwen3-VL: same frames (``nframes``; 64x64 fixture frames kept at 64x64), lmms-eval's
    system prompt given to ours, the tokenizer's stop token as the built-ins stop, greedy."""
    common = f"pretrained={sensitive_new_family_dirs[family]},device=cpu,{PIXELS_QWEN3}"
    system = "system_prompt=You are a helpful assistant."
    ours = run_lmms_eval(
        tmp_path / "ours",
        ours_model,
        f"{common},dtype=bfloat16,nframes=8,vreason=false,stop_tokens=tokenizer,{system}",
        fixture_data,
    )
    theirs = run_lmms_eval(
        tmp_path / "builtin", builtin, f"{common},device_map=cpu,max_num_frames=8{builtin_args}", fixture_data
    )
    a, b = read_samples(tmp_path / "ours"), read_samples(tmp_path / "builtin")
    assert sorted(a) == sorted(b) == [0, 1, 2], (ours.stderr[-2000:], theirs.stderr[-2000:])
    for doc_id in a:
        assert response(a[doc_id]) == response(b[doc_id])
        assert len(response(a[doc_id])) > 0
    assert len({response(row) for row in a.values()}) > 1  # the answer depends on the question
