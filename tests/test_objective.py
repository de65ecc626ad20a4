"""Entropy, EMA, α and the three objectives; optimiser reset and non-finite skipping."""

from __future__ import annotations

import math

import pytest
import torch

import lmms_vreason.core.step as step_module
from lmms_vreason.core.controller import ValueController
from lmms_vreason.core.decode import decode, make_controller
from lmms_vreason.core.kv import StaticKVCache
from lmms_vreason.core.objective import EntropyTracker, entropy, replay
from lmms_vreason.core.optim import RowAdamW, clip_rows
from lmms_vreason.core.rows import RowLayout
from lmms_vreason.core.settings import GenerationSettings, VReasonSettings
from lmms_vreason.models.qwen2_5_vl import Qwen2_5_VLAdapter


def test_entropy_matches_hand_computed_values():
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0], [math.log(3.0), 0.0, -1e9, -1e9]])
    # uniform over 4 -> log 4 ; p = (3/4, 1/4) -> -(3/4 log 3/4 + 1/4 log 1/4)
    expected = torch.tensor([math.log(4), -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))])
    torch.testing.assert_close(entropy(logits), expected)
    assert entropy(logits.bfloat16()).dtype == torch.float32


def _run(series, beta=0.5, objective="switch"):
    tracker = EntropyTracker(1, beta, objective, torch.device("cpu"))
    emas, alphas = [], []
    for h in series:
        ema, alpha = tracker.observe(torch.tensor([h]))
        emas.append(float(ema[0]))
        alphas.append(int(alpha[0]))
    return emas, alphas


def test_ema_and_switch_on_hand_made_series():
    # beta = 0.5: E1 = 1; E2 = .5*1+.5*3 = 2; E3 = .5*2+.5*0 = 1; E4 = .5*1+.5*4 = 2.5; E5 = 1.25 + 1 = 2.25
    emas, alphas = _run([1.0, 3.0, 0.0, 4.0, 2.0])
    assert emas == pytest.approx([1.0, 2.0, 1.0, 2.5, 2.25])
    # alpha_t = +1 iff E_t >= max(E_1..E_{t-1}); t = 1 has none
    assert alphas == [0, 1, -1, 1, -1]


def test_switch_ties_count_as_exploration_and_fixed_objectives():
    emas, alphas = _run([2.0, 2.0, 2.0], beta=0.9)
    assert alphas == [0, 1, 1]  # E_t == peak -> +1 (">=")
    assert _run([1.0, 3.0, 0.0], objective="min_entropy")[1] == [0, -1, -1]
    assert _run([1.0, 3.0, 0.0], objective="max_entropy")[1] == [0, 1, 1]


def test_switch_compares_the_ema_not_the_raw_entropy_and_keeps_a_peak_per_sample():
    # beta = 0.5: E = 1, 0.5, 0.85. H_3 = 1.2 tops the peak (1) but E_3 does not: exploitation.
    assert _run([1.0, 0.0, 1.2])[1] == [0, -1, -1]
    tracker = EntropyTracker(2, 0.5, "switch", torch.device("cpu"))
    tracker.observe(torch.tensor([5.0, 1.0]))
    _, alpha = tracker.observe(torch.tensor([5.0, 1.0]))
    assert alpha.tolist() == [1.0, 1.0]  # sample 1 is at its own peak, far below sample 0's


def test_non_finite_entropy_leaves_ema_unchanged():
    emas, alphas = _run([1.0, float("nan"), 3.0])
    assert emas == pytest.approx([1.0, 1.0, 2.0])
    assert alphas[2] == 1


def test_ema_starts_at_the_first_finite_entropy():
    """A NaN at t = 1 must not start the EMA at 0: E_2 = H_2, then the usual blend (hand-computed)."""
    emas, alphas = _run([float("nan"), 2.0, 4.0])
    assert emas[1:] == pytest.approx([2.0, 2.0 * 0.5 + 4.0 * 0.5])
    assert alphas[1:] == [1, 1]  # 2 >= -inf (no finite peak yet), then 3 >= 2


def test_replay_of_recorded_series_matches_the_tracker_fed_as_a_batch():
    # Two samples decoded together, one with a non-finite entropy; each replayed alone afterwards
    # (what the telemetry analysis does) must give the batch tracker's EMA and α exactly.
    series = torch.tensor([[1.0, 3.0, 0.0, 4.0, 2.0], [0.5, float("nan"), 0.2, 0.9, 0.1]])
    tracker = EntropyTracker(2, 0.7, "switch", torch.device("cpu"))
    steps = [tracker.observe(series[:, t]) for t in range(series.shape[1])]
    for b in range(2):
        ema, alpha = replay(series[b].tolist(), 0.7)
        assert torch.equal(ema, torch.stack([e[b] for e, _ in steps]))
        assert torch.equal(alpha, torch.stack([a[b] for _, a in steps]))
    assert replay([1.0, 3.0, 0.0], 0.5, "min_entropy")[1].tolist() == [0, -1, -1]
    assert [x.numel() for x in replay([], 0.5)] == [0, 0]


@pytest.mark.parametrize(("objective", "direction"), [("max_entropy", 1), ("min_entropy", -1)])
def test_each_objective_moves_entropy_in_its_direction(tiny_model, tiny_inputs, objective, direction):
    """One update on step 2's loss, then step 2 re-run with the new ΔV: H moves the way α says."""
    from lmms_vreason.core.objective import switch_loss

    dec = Qwen2_5_VLAdapter(tiny_model)
    cfg = VReasonSettings(objective=objective, step_size=1, lr=2e-2)
    ids = tiny_inputs["input_ids"]
    prefilled = dec.new_cache()
    pos = dec.prefill_positions(tiny_inputs)
    with torch.no_grad():
        logits = dec.forward(ids, pos, prefilled, None, **dec.prefill_inputs(tiny_inputs))
    step = dec.decoder_step()
    layout = RowLayout(1)
    cache = StaticKVCache.from_prefill(
        prefilled, layout, new_tokens=4, attention_mask=None, additive_mask=step.additive_mask
    )
    ctrl = make_controller(cache, dec.video_positions(ids), None, cfg, layout)
    token = logits.argmax(-1)
    delta = ctrl.delta.detach().requires_grad_(True)
    out = step.forward_with_grad(token, pos[..., -1:].clone(), cache, ctrl, delta)
    h_before = out.entropy  # eager: with its autograd graph to ΔV
    h_before_value = float(h_before.detach())
    alpha = torch.tensor([float(direction)])
    (grad,) = torch.autograd.grad(switch_loss(h_before, alpha), delta)
    stepped = ctrl.apply_gradient(grad, torch.tensor([True]), h_before.detach(), cache.layers[-1].values)
    assert stepped.tolist() == [True]
    cache.rewind(1)  # the same token at the same position again, now with the updated ΔV
    _, h_after, _ = step.forward(token, pos[..., -1:].clone(), cache, with_entropy=True)
    assert direction * (float(h_after) - h_before_value) > 0, (h_before_value, float(h_after))


def test_optimiser_state_is_reset_between_samples(tiny_model, tiny_processor):
    from conftest import make_inputs

    dec = Qwen2_5_VLAdapter(tiny_model)
    cfg = VReasonSettings(step_size=1, lr=5e-2)
    settings = GenerationSettings(max_new_tokens=8)
    a, b = make_inputs(tiny_processor, seed=1), make_inputs(tiny_processor, seed=2)
    first = decode(dec, a, settings, cfg)
    decode(dec, b, settings, cfg)
    again = decode(dec, a, settings, cfg)
    assert first.sequences == again.sequences
    torch.testing.assert_close(first.stats.entropy, again.stats.entropy, rtol=0, atol=0)
    torch.testing.assert_close(first.controller.delta, again.controller.delta, rtol=0, atol=0)
    assert first.controller.optimizer is not again.controller.optimizer
    assert int(first.controller.optimizer.steps[0]) == 7


def test_non_finite_loss_skips_update_and_is_counted(tiny_model, tiny_inputs, monkeypatch):
    real_loss = step_module.switch_loss
    monkeypatch.setattr(step_module, "switch_loss", lambda h, a: real_loss(h, a) * float("nan"))
    base = decode(Qwen2_5_VLAdapter(tiny_model), tiny_inputs, GenerationSettings(max_new_tokens=8), None)
    out = decode(
        Qwen2_5_VLAdapter(tiny_model),
        tiny_inputs,
        GenerationSettings(max_new_tokens=8),
        VReasonSettings(step_size=2),
    )
    assert int(out.stats.skipped_steps[0]) == 4 == int(out.stats.opt_steps[0])
    assert out.controller is not None and float(out.controller.delta.abs().max()) == 0.0
    assert out.sequences == base.sequences


def test_clipping_matches_clip_grad_norm():
    torch.manual_seed(0)
    grad = torch.randn(1, 2, 5, 8) * 3
    clipped, pre_clip_norm = clip_rows(grad, 0.5)
    ref = torch.zeros_like(grad, requires_grad=True)
    ref.grad = grad.clone()
    norm = torch.nn.utils.clip_grad_norm_([ref], 0.5)
    torch.testing.assert_close(clipped, ref.grad)
    torch.testing.assert_close(pre_clip_norm[0], norm)


def test_clipping_is_per_row_and_leaves_small_gradients_alone():
    torch.manual_seed(1)
    grads = [torch.randn(1, 2, 5, 8) * 5, torch.randn(1, 2, 5, 8) * 1e-3]  # above / below the clip
    clipped, _ = clip_rows(torch.cat(grads), 1.0)
    for row, g in enumerate(grads):
        ref = torch.zeros_like(g, requires_grad=True)
        ref.grad = g.clone()
        torch.nn.utils.clip_grad_norm_([ref], 1.0)
        torch.testing.assert_close(clipped[row : row + 1], ref.grad)
    torch.testing.assert_close(clipped[1:], grads[1])


def test_update_is_a_plain_adam_step_without_weight_decay():
    torch.manual_seed(2)
    values = torch.randn(1, 2, 5, 8)
    ctrl = ValueController(values, torch.arange(5)[None], VReasonSettings(lr=0.1, grad_clip=1e9))
    ref = torch.zeros_like(values, requires_grad=True)
    adam = torch.optim.Adam([ref], lr=0.1)  # the reference: Adam, no weight decay
    cache_values = values.clone()
    for _ in range(3):
        g = torch.randn_like(values)
        ref.grad = g.clone()
        ctrl.apply_gradient(g, torch.tensor([True]), torch.tensor([1.0]), cache_values)
        adam.step()
    torch.testing.assert_close(ctrl.delta, ref.detach())
    torch.testing.assert_close(cache_values, ctrl.controlled_values())  # V_new written back


def test_row_adamw_equals_torch_adamw_row_by_row():
    """Per-row lrs, weight decay and an update mask, against one torch.optim.AdamW per row."""
    torch.manual_seed(3)
    rows, lrs = 3, (0.1, 0.02, 0.3)
    param = torch.randn(rows, 2, 4, 5)
    opt = RowAdamW(param, lrs, weight_decay=0.01)
    refs = [param[r : r + 1].clone().requires_grad_(True) for r in range(rows)]
    ref_opts = [torch.optim.AdamW([p], lr=lr, weight_decay=0.01) for p, lr in zip(refs, lrs, strict=True)]
    masks = [[True, True, True], [True, False, True], [False, False, True], [True, True, False]]
    for mask in masks:
        grad = torch.randn_like(param)
        grad[1] = float("nan") if not mask[1] else grad[1]  # a skipped row's gradient may be anything
        opt.step(param, grad, torch.tensor(mask))
        for r, (p, ref_opt) in enumerate(zip(refs, ref_opts, strict=True)):
            if mask[r]:
                p.grad = grad[r : r + 1].clone()
                ref_opt.step()
    for r, p in enumerate(refs):
        torch.testing.assert_close(param[r : r + 1], p.detach(), rtol=1e-6, atol=1e-7)
        assert int(opt.steps[r]) == sum(m[r] for m in masks)
    assert torch.isfinite(param).all()
