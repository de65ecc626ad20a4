"""An lr grid decoded in one pass: one prefill (and one pruning) per request, then one row per lr.

Reference: the same decode loop run once per learning rate. Greedy rows must produce the same
tokens, and the same logits, entropies and ΔV to float rounding of batched attention; a seeded
sampled row must draw what its single-lr run draws.
"""

from __future__ import annotations

import pytest
import torch
from conftest import LogitRecorder, batched_delta_rtol, batched_logit_atol, make_batch_inputs, make_inputs

import lmms_vreason.core.decode as decode_module
from lmms_vreason.core.decode import decode
from lmms_vreason.core.pruning import kv_layers
from lmms_vreason.core.settings import GenerationSettings, VReasonSettings
from lmms_vreason.models.qwen2_5_vl import Qwen2_5_VLAdapter

STEPS = 8
GRID = (0.02, 0.1)
SAMPLES = [
    {"frames": 4, "size": 56, "seed": 1, "question": "Which square moves first, and which one follows it?"},
    {"frames": 8, "size": 84, "seed": 2, "question": "What moves?"},
]


def _run(adapter, inputs, cfg, settings, generators=None):
    probe = LogitRecorder()
    out = decode(adapter, inputs, settings, cfg, probe=probe, generators=generators)
    return out, torch.stack(probe.logits, dim=1)  # [rows, T, V]


@pytest.mark.parametrize(
    ("kit", "mode"),
    [
        ("qwen2_5_vl", {"step_size": 2}),
        ("qwen2_5_vl", {"step_size": 2, "lite": True}),
        ("qwen2_5_vl", {"step_size": 1, "norm_scope": "token"}),
        ("qwen3_vl", {"step_size": 2, "lite": True}),  # [4, B, L] positions and the cache copied per lr
        # Hybrid: the linear layers' conv and recurrent states copied per lr too (and Lite on the
        # full-attention layers only); MoE: routed MLPs.
        ("qwen3_5", {"step_size": 2}),
        ("qwen3_5_moe", {"step_size": 2, "lite": True}),
        ("qwen3_vl_moe", {"step_size": 2}),
    ],
    indirect=["kit"],
)
def test_each_grid_row_equals_its_single_lr_run(kit, mode, monkeypatch):
    adapter, tiny_processor = kit.adapter(), kit.processor
    settings = GenerationSettings(max_new_tokens=STEPS)
    prunings: list[int] = []
    real_plan = decode_module.plan_pruning

    def counting_plan(cache, *args, **kwargs):
        prunings.append(kv_layers(cache)[0].keys.shape[0])
        return real_plan(cache, *args, **kwargs)

    monkeypatch.setattr(decode_module, "plan_pruning", counting_plan)
    batch = make_batch_inputs(tiny_processor, SAMPLES)  # ragged: 2 requests, different video lengths
    grid, logits = _run(adapter, batch, VReasonSettings(lr_grid=GRID, **mode), settings)
    assert len(grid.sequences) == len(SAMPLES) * len(GRID)
    assert prunings == ([len(SAMPLES)] if mode.get("lite") else [])  # pruned once, before the copies
    assert grid.controller is not None and grid.controller.lrs == GRID * len(SAMPLES)
    for b, spec in enumerate(SAMPLES):
        for g, lr in enumerate(GRID):
            row = b * len(GRID) + g
            alone, alone_logits = _run(
                adapter, make_inputs(tiny_processor, **spec), VReasonSettings(lr=lr, **mode), settings
            )
            assert grid.sequences[row] == alone.sequences[0]
            assert (logits[row] - alone_logits[0]).abs().max() < batched_logit_atol(kit.family)
            torch.testing.assert_close(grid.stats.entropy[row], alone.stats.entropy[0], rtol=0, atol=1e-5)
            assert (
                grid.stats.skipped_steps[row] == 0 and grid.stats.opt_steps[row] == alone.stats.opt_steps[0]
            )
            n = alone.controller.delta.shape[2]
            torch.testing.assert_close(
                grid.controller.delta[row : row + 1, :, :n],
                alone.controller.delta,
                rtol=batched_delta_rtol(kit.family),
                atol=1e-4,
            )
            assert grid.stats.video_tokens_after[row] == alone.stats.video_tokens_after[0]
    # The rows of one request really differ (the lr matters), so the comparison above is not vacuous.
    assert (logits[0] - logits[1]).abs().max() > 1e-3


def test_grid_runs_one_prefill(tiny_model, tiny_inputs):
    """Every forward's token ids: the prompt once, then one token for each of the grid's rows."""
    adapter = Qwen2_5_VLAdapter(tiny_model)
    widths: list[tuple[int, int]] = []
    embed = tiny_model.model.language_model.embed_tokens
    hook = embed.register_forward_pre_hook(lambda module, args: widths.append(tuple(args[0].shape)))
    try:
        decode(adapter, tiny_inputs, GenerationSettings(max_new_tokens=4), VReasonSettings(lr_grid=GRID))
    finally:
        hook.remove()
    prompt_len = tiny_inputs["input_ids"].shape[1]
    assert widths == [(1, prompt_len)] + [(len(GRID), 1)] * 3


def test_sampled_grid_rows_draw_as_their_single_runs(tiny_model, tiny_inputs):
    adapter = Qwen2_5_VLAdapter(tiny_model)
    settings = GenerationSettings(max_new_tokens=STEPS, do_sample=True, temperature=1.5)
    seed = 1234
    grid = decode(
        adapter,
        tiny_inputs,
        settings,
        VReasonSettings(lr_grid=GRID, step_size=2),
        generators=[torch.Generator().manual_seed(seed)],
    )
    for g, lr in enumerate(GRID):
        alone = decode(
            adapter,
            tiny_inputs,
            settings,
            VReasonSettings(lr=lr, step_size=2),
            generators=[torch.Generator().manual_seed(seed)],
        )
        assert grid.sequences[g] == alone.sequences[0]


def test_grid_settings_are_validated():
    from lmms_vreason.core.settings import PAPER_LR_GRID

    assert VReasonSettings(lr_grid="paper").learning_rates == PAPER_LR_GRID
    assert len(PAPER_LR_GRID) == 10 and PAPER_LR_GRID[0] == 5e-5 and PAPER_LR_GRID[-1] == 5e-4
    assert VReasonSettings(lr_grid="3e-4:1e-4").lr == 3e-4  # the first lr is the run's (scored) lr
    for bad, match in (
        ({"lr_grid": "1e-4:1e-4"}, "repeats"),
        ({"lr_grid": "fast"}, "joined by ':'"),
        ({"lr_grid": "paper", "lr": 1e-4}, "disagree"),
        ({"lr_grid": "paper", "vreason": False}, "needs vreason"),
    ):
        with pytest.raises(ValueError, match=match):
            VReasonSettings(**bad)


def test_backend_scores_the_first_lr_and_records_every_lr(tiny_model_dir, tmp_path):
    from conftest import random_video, tiny_backend, video_chat

    from lmms_vreason.telemetry import read_grid_responses

    chat = video_chat(random_video(tmp_path / "clip.mp4", 8, 112, 112), "Hm?")
    settings = GenerationSettings(max_new_tokens=8)
    grid = tiny_backend(tiny_model_dir, step_size=2, lr_grid="0.02:0.1", telemetry_dir=str(tmp_path / "grid"))
    out, inputs, peak = grid._run_batch([chat], settings, [5])
    [result] = grid._finish(out, inputs, settings, ["mmvu"], [5], peak)
    rows = read_grid_responses(tmp_path / "grid")
    assert [(r.task, r.doc_id, r.lr) for r in rows] == [("mmvu", 5, 0.02), ("mmvu", 5, 0.1)]
    for row in rows:
        single = tiny_backend(tiny_model_dir, step_size=2, lr=row.lr)
        alone, alone_inputs, _ = single._run_batch([chat], settings, [5])
        [expected] = single._finish(alone, alone_inputs, settings, ["mmvu"], [5], None)
        assert row.response == expected.text and row.output_tokens == len(alone.sequences[0])
        if row.lr == 0.02:  # lmms-eval scores the grid's first lr
            assert result.text == expected.text
