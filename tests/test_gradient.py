"""The ΔV gradient of the cached, last-layer-only path equals autograd through a full uncached forward.

The reference recomputes the whole sequence (prompt + generated tokens) from scratch in float64, with
the last layer's video values replaced by Eq. 1 through a hook on ``v_proj`` (written here
independently of the package), and differentiates the last position's entropy with autograd. The
reference builds its own positions (the model's, from the full sequence), so it also checks each
family adapter's positions; for Qwen3-VL it also runs DeepStack over the whole sequence again, and
for Qwen3.5 its linear-attention layers over the whole sequence (chunked, not step by step).
"""

from __future__ import annotations

import pytest
import torch

from lmms_vreason.core.decode import decode
from lmms_vreason.core.settings import GenerationSettings, VReasonSettings
from lmms_vreason.models import adapter_for
from lmms_vreason.models.qwen2_5_vl import Qwen2_5_VLAdapter

VISION_INPUTS = ("pixel_values_videos", "video_grid_thw", "second_per_grid_ts")
HYBRID = ("qwen3_5", "qwen3_5_moe")
"""Qwen3.5's RMSNorms (``x.float()``) and Gated-DeltaNet (its decay gate and transformers' reference
delta-rule kernels) compute in float32 even in a float64 model, so the cached step-by-step path and
the full chunked forward, both exact, agree to float32 rounding there: relative 1e-6 on the gradient
(seen: 1.2e-7) and 1e-7 on the entropy, against 1e-8 and 1e-10 for the all-float64 families."""
"""What the processor gives a family's full forward besides ids and token types (Qwen2.5-VL: all)."""


class GradRecorder:
    def __init__(self) -> None:
        self.records: list[tuple[int, torch.Tensor, torch.Tensor, float, float]] = []

    def on_logits(self, step, logits) -> None:
        pass

    def on_gradient(self, step, delta, grad, alpha, h) -> None:
        self.records.append((step, delta, grad, float(alpha[0]), float(h[0])))


def _reference_grad(model, inputs, generated, step, delta, alpha, scope_dims):
    """d(-α H_step)/dΔV by a full forward over prompt + the first step-1 generated tokens."""
    ids = inputs["input_ids"]
    full = torch.cat([ids, torch.tensor([generated[: step - 1]])], dim=1)
    mm = torch.cat([inputs["mm_token_type_ids"], torch.zeros(1, step - 1, dtype=torch.long)], dim=1)
    video = (ids[0] == model.config.video_token_id).nonzero().flatten()
    attn = model.model.language_model.layers[-1].self_attn
    d_leaf = delta.clone().requires_grad_(True)

    def hook(module, args, out):
        b, length, _ = out.shape
        v = out.view(b, length, -1, attn.head_dim).transpose(1, 2)  # [B, H, L, D]
        orig = v[:, :, video, :]
        shifted = orig + d_leaf
        ref_norm = orig.pow(2).sum(dim=scope_dims, keepdim=True).sqrt()
        new = shifted * ref_norm / shifted.pow(2).sum(dim=scope_dims, keepdim=True).sqrt()
        v = v.clone()
        v[:, :, video, :] = new
        return v.transpose(1, 2).reshape(b, length, -1)

    handle = attn.v_proj.register_forward_hook(hook)
    try:
        model.model.rope_deltas = None
        with torch.enable_grad():
            vision = {k: inputs[k] for k in VISION_INPUTS if k in inputs}
            logits = model(input_ids=full, mm_token_type_ids=mm, **vision).logits[0, -1]
            logp = torch.log_softmax(logits, dim=-1)
            h = -(logp.exp() * logp).sum()
            (-alpha * h).backward()
    finally:
        handle.remove()
    return d_leaf.grad, float(h.detach())


SCOPES = [("block", (1, 2, 3)), ("head", (2, 3)), ("token", (1, 3))]


@pytest.mark.parametrize(
    ("kit", "scope", "dims"),
    [
        *[(family, scope, dims) for family in ("qwen2_5_vl", "qwen3_vl") for scope, dims in SCOPES],
        # Hybrid: the full-attention last layer after three linear layers (their recurrent states
        # carry the prompt); MoE: the gradient through the routed MLPs of the last layer.
        *[(family, "block", (1, 2, 3)) for family in ("qwen3_vl_moe", "qwen3_5", "qwen3_5_moe")],
    ],
    indirect=["kit"],
)
def test_delta_v_gradient_matches_full_autograd(kit, scope, dims):
    model = kit.model_f64
    rec = GradRecorder()
    out = decode(
        adapter_for(model),
        kit.inputs,
        GenerationSettings(max_new_tokens=9),
        VReasonSettings(step_size=2, lr=0.05, norm_scope=scope),
        probe=rec,
    )
    assert [r[0] for r in rec.records] == [2, 4, 6, 8]
    generated = out.sequences[0]
    for step, delta, grad, alpha, h in rec.records[1:]:  # from the 2nd opt step on, ΔV != 0
        assert delta.abs().max() > 0
        ref, ref_h = _reference_grad(model, kit.inputs, generated, step, delta, alpha, dims)
        h_tol, grad_tol = (1e-7, 1e-6) if kit.family in HYBRID else (1e-10, 1e-8)
        assert abs(ref_h - h) <= h_tol * abs(ref_h)
        rel = (grad - ref).norm() / ref.norm()
        assert rel < grad_tol, f"step {step}: relative gradient error {rel:.2e}"


def test_no_parameter_gradients_and_no_graph_left(tiny_model, tiny_inputs):
    out = decode(
        Qwen2_5_VLAdapter(tiny_model),
        tiny_inputs,
        GenerationSettings(max_new_tokens=6),
        VReasonSettings(step_size=1),
    )
    assert int(out.stats.opt_steps[0]) == 5
    assert all(not p.requires_grad and p.grad is None for p in tiny_model.parameters())
    assert out.controller is not None and not out.controller.delta.requires_grad
    assert out.controller.delta.grad is None and out.controller.delta.dtype == torch.float32


def test_controller_state_is_float32_for_a_bfloat16_model(tiny_model_dir, tiny_inputs):
    from conftest import load_model

    model = load_model(tiny_model_dir, torch.bfloat16)
    out = decode(
        Qwen2_5_VLAdapter(model),
        tiny_inputs,
        GenerationSettings(max_new_tokens=3),
        VReasonSettings(step_size=1),
    )
    ctrl = out.controller
    assert ctrl is not None and ctrl.delta.dtype == torch.float32
    opt = ctrl.optimizer
    assert all(t.dtype == torch.float32 for t in (opt.exp_avg, opt.exp_avg_sq, opt.lr, opt.steps))
    assert int(out.stats.opt_steps[0]) == 2
