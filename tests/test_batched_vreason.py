"""Batched V-Reason: every sample of a (ragged) batch behaves exactly as if it ran alone.

Each sample has its own ΔV, AdamW state, entropy EMA and (Lite) kept set. Reference: the same
decode loop on each sample alone. The batch is left-padded and its samples hold different numbers of
video tokens, so padded attention and padded controller entries are both exercised.
"""

from __future__ import annotations

import pytest
import torch
from conftest import (
    LogitRecorder,
    batched_delta_rtol,
    batched_logit_atol,
    make_batch_inputs,
    make_inputs,
    stop_when,
)

import lmms_vreason.core.decode as decode_module
import lmms_vreason.core.step as step_module
from lmms_vreason.core.decode import decode
from lmms_vreason.core.settings import GenerationSettings, VReasonSettings
from lmms_vreason.models.qwen2_5_vl import Qwen2_5_VLAdapter

STEPS = 16
# Sample 0 has fewer video tokens (padded controller entries) but the longer prompt, so its cache
# position 0 is a real, attended token: padding entries must neither move nor leak into it.
# Sample 1 is left-padded (padded attention).
LONG_QUESTION = "Which object moves first, and in which direction does it go before the red cube stops at the end of the clip?"
SAMPLES = [
    {"frames": 4, "size": 56, "seed": 1, "question": LONG_QUESTION},
    {"frames": 8, "size": 84, "seed": 2, "question": "What moves?"},
]


def _run(dec, inputs, cfg, **kwargs):
    probe = LogitRecorder()
    out = decode(dec, inputs, GenerationSettings(max_new_tokens=STEPS), cfg, probe=probe, **kwargs)
    return out, torch.stack(probe.logits, dim=1)  # [B, T, V]


@pytest.mark.parametrize(
    ("kit", "cfg"),
    [
        ("qwen2_5_vl", VReasonSettings(step_size=2, lr=0.05)),
        ("qwen2_5_vl", VReasonSettings(step_size=1, lr=0.05, norm_scope="token")),
        ("qwen2_5_vl", VReasonSettings(step_size=2, lr=0.05, lite=True, keep_ratio=0.5)),
        # Qwen3-VL: per-frame video runs between timestamps, left-padded token types, DeepStack.
        ("qwen3_vl", VReasonSettings(step_size=2, lr=0.05, lite=True, keep_ratio=0.5)),
        # Qwen3.5: left padding through the linear layers' prefill (their recurrent mask), Lite on
        # the full-attention layers only.
        ("qwen3_5", VReasonSettings(step_size=2, lr=0.05, lite=True, keep_ratio=0.5)),
        ("qwen3_vl_moe", VReasonSettings(step_size=2, lr=0.05)),
    ],
    ids=["full-k2", "full-k1-token", "lite-k2", "qwen3_vl-lite-k2", "qwen3_5-lite-k2", "qwen3_vl_moe-k2"],
    indirect=["kit"],
)
def test_batched_vreason_equals_each_sample_alone(kit, cfg):
    dec, tiny_processor = kit.adapter(), kit.processor
    batch = make_batch_inputs(tiny_processor, SAMPLES)
    counts = (batch["input_ids"] == dec.video_token_id).sum(dim=1)
    assert counts[0] < counts[1]
    assert batch["attention_mask"][:, 0].tolist() == [1, 0]
    out, logits = _run(dec, batch, cfg)
    assert out.controller is not None and out.controller.delta.shape[0] == 2
    assert out.stats.skipped_steps.tolist() == [0, 0]  # a silently skipped update would also "match"
    assert (out.stats.alpha[~out.stats.optimized] == 0).all()  # α is recorded only where it acted
    assert (out.stats.alpha[out.stats.optimized] != 0).all()
    for b, spec in enumerate(SAMPLES):
        alone, alone_logits = _run(dec, make_inputs(tiny_processor, **spec), cfg)
        assert out.sequences[b] == alone.sequences[0]
        assert (logits[b] - alone_logits[0]).abs().max() < batched_logit_atol(kit.family)
        torch.testing.assert_close(out.stats.entropy[b], alone.stats.entropy[0], rtol=0, atol=1e-5)
        assert out.stats.opt_steps[b] == alone.stats.opt_steps[0] > 0
        n = alone.controller.delta.shape[2]
        mine = out.controller.delta[b : b + 1]
        torch.testing.assert_close(
            mine[:, :, :n], alone.controller.delta, rtol=batched_delta_rtol(kit.family), atol=1e-4
        )
        assert int(torch.count_nonzero(mine[:, :, n:])) == 0  # padding entries never move
        # ΔV really moved, so the comparison above is not between two zeros.
        assert float(alone.controller.delta.abs().max()) > 1e-3


def test_non_finite_sample_skips_only_its_own_update(tiny_model, tiny_processor, monkeypatch):
    dec = Qwen2_5_VLAdapter(tiny_model)
    cfg = VReasonSettings(step_size=2, lr=0.05)
    alone, alone_logits = _run(dec, make_inputs(tiny_processor, **SAMPLES[0]), cfg)

    real_entropy = step_module.entropy
    poison = torch.tensor([1.0, float("nan")])
    for module in (step_module, decode_module):  # the step's entropy, and the prefill logits'
        monkeypatch.setattr(module, "entropy", lambda logits: real_entropy(logits) * poison)
    out, logits = _run(dec, make_batch_inputs(tiny_processor, SAMPLES), cfg)

    assert out.sequences[0] == alone.sequences[0]
    assert (logits[0] - alone_logits[0]).abs().max() < 1e-5
    assert out.stats.skipped_steps.tolist() == [0, int(out.stats.opt_steps[1])]
    ctrl = out.controller
    assert float(ctrl.delta[1].abs().max()) == 0.0
    assert int(ctrl.optimizer.steps[0]) == int(out.stats.opt_steps[0]) == STEPS // 2
    # never stepped: no moments, no step count
    assert int(ctrl.optimizer.steps[1]) == 0 and float(ctrl.optimizer.exp_avg_sq[1].abs().max()) == 0.0


def test_finished_sample_stops_optimising_while_the_other_goes_on(tiny_model, tiny_processor):
    dec = Qwen2_5_VLAdapter(tiny_model)
    cfg = VReasonSettings(step_size=2, lr=0.05)
    first, _ = _run(dec, make_inputs(tiny_processor, **SAMPLES[0]), cfg)
    second, second_logits = _run(dec, make_inputs(tiny_processor, **SAMPLES[1]), cfg)
    prefix = first.sequences[0][:5]
    assert second.sequences[0][:5] != prefix

    out, logits = _run(
        dec, make_batch_inputs(tiny_processor, SAMPLES), cfg, stopping=stop_when(lambda ids: ids == prefix)
    )
    assert out.sequences == [prefix, second.sequences[0]]
    assert out.stats.opt_steps.tolist() == [2, STEPS // 2]  # sample 0 optimised at t = 2, 4 only
    assert out.stats.optimized[0].nonzero().flatten().tolist() == [1, 3]
    assert int(out.controller.optimizer.steps[0]) == 2
    assert (logits[1] - second_logits[0]).abs().max() < 1e-5
