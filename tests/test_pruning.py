"""V-Reason (Lite): pruning equals masking, positions continue from the unpruned length, kept set, rescale."""

from __future__ import annotations

import pytest
import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from lmms_vreason.core.controller import ValueController
from lmms_vreason.core.decode import decode
from lmms_vreason.core.pruning import keep_count, kv_layers, prune_video_tokens, video_token_scores
from lmms_vreason.core.settings import GenerationSettings, VReasonSettings
from lmms_vreason.models.qwen2_5_vl import Qwen2_5_VLAdapter

LITE_FAMILIES = ["qwen2_5_vl", "qwen3_vl", "qwen3_5", "qwen3_5_moe", "qwen3_vl_moe"]
"""Hybrid (Qwen3.5): pruning drops K/V of the full-attention layers only; the reference masks the
dropped positions in those layers (the model's 2D mask reaches only them in a one-token step)."""

STEPS = 16


def _prefill(dec, inputs):
    cache = dec.new_cache()
    pos = dec.prefill_positions(inputs)
    kwargs = dec.prefill_inputs(inputs)
    with torch.no_grad():
        logits = dec.forward(inputs["input_ids"], pos, cache, None, **kwargs)
    return cache, pos, logits


def _greedy(dec, cache, pos, logits, mask=None, steps=STEPS):
    """Greedy decode ``steps`` tokens; ``mask`` (2D, over the cache) is extended with ones."""
    out = [logits]
    with torch.no_grad():
        for _ in range(steps - 1):
            tok = logits.argmax(-1)[:, None]
            pos = pos[..., -1:] + 1
            if mask is not None:
                mask = torch.cat([mask, mask.new_ones(1, 1)], dim=1)
            logits = dec.forward(tok, pos, cache, mask)
            out.append(logits)
    return torch.stack(out)


def _fixed_delta(values_like: torch.Tensor) -> torch.Tensor:
    gen = torch.Generator().manual_seed(3)
    return 0.5 * torch.randn(values_like.shape, generator=gen)


@pytest.mark.parametrize("kit", LITE_FAMILIES, indirect=True)
@pytest.mark.parametrize("with_delta", [False, True])
@pytest.mark.parametrize("keep_ratio", [0.5, 0.3])
def test_pruned_decoding_equals_masked_attention(kit, with_delta, keep_ratio):
    """Qwen3-VL's video tokens are one run per temporal patch, with timestamp text between the runs."""
    dec, tiny_inputs = kit.adapter(), kit.inputs
    video = dec.video_positions(tiny_inputs["input_ids"])
    cfg = VReasonSettings(lite=True, keep_ratio=keep_ratio)

    # Pruned: drop from all layers' caches, controller on the kept positions with the Lite rescale.
    cache, pos, logits = _prefill(dec, tiny_inputs)
    pruned = prune_video_tokens(cache, video, keep_ratio)
    assert pruned.kept_video_positions.shape[1] == keep_count(video.shape[1], keep_ratio) < video.shape[1]
    if with_delta:
        layer = cache.layers[-1]
        kept = pruned.kept_video_positions
        idx = kept[:, None, :, None].expand(1, layer.values.shape[1], -1, layer.values.shape[3])
        ctrl = ValueController(layer.values.gather(2, idx), kept, cfg, reference_norm=pruned.reference_norm)
        ctrl.load_delta(_fixed_delta(ctrl.delta))
        ctrl.write_back(layer.values)
    got = _greedy(dec, cache, pos, logits)

    # Reference: full cache, dropped positions masked out of attention, same positions.
    cache_r, pos_r, logits_r = _prefill(dec, tiny_inputs)
    mask = torch.ones(1, kv_layers(cache_r)[0].keys.shape[2], dtype=torch.long)
    mask[0, pruned.dropped_positions[0]] = 0
    if with_delta:
        layer = cache_r.layers[-1]
        kept_orig = pruned.keep_index.gather(1, pruned.kept_video_positions)
        idx = kept_orig[:, None, :, None].expand(1, layer.values.shape[1], -1, layer.values.shape[3])
        vid_idx = video[:, None, :, None].expand(1, layer.values.shape[1], -1, layer.values.shape[3])
        all_norm = layer.values.gather(2, vid_idx).pow(2).sum().sqrt()  # block norm of the unpruned video
        ref_ctrl = ValueController(
            layer.values.gather(2, idx), kept_orig, cfg, reference_norm=all_norm.view(1, 1, 1, 1)
        )
        ref_ctrl.load_delta(_fixed_delta(ref_ctrl.delta))
        ref_ctrl.write_back(layer.values)
    want = _greedy(dec, cache_r, pos_r, logits_r, mask)

    assert (got - want).abs().max() < 1e-5
    # Sensitivity: the pruned cache must differ from the unpruned, unmasked one.
    cache_u, pos_u, logits_u = _prefill(dec, tiny_inputs)
    assert (_greedy(dec, cache_u, pos_u, logits_u) - want).abs().max() > 1e-4


@pytest.mark.parametrize("kit", ["qwen3_5", "qwen3_5_moe"], indirect=True)
def test_hybrid_scores_are_full_attention_value_norms_and_linear_states_stay(kit):
    """Scores: the mean over the full-attention layers (by ``config.layer_types``) and KV heads of each
    video token's value norm; the linear layers' states are not touched by pruning."""
    dec, tiny_inputs = kit.adapter(), kit.inputs
    video = dec.video_positions(tiny_inputs["input_ids"])
    cache, _, _ = _prefill(dec, tiny_inputs)
    types = kit.model.config.text_config.layer_types
    full = [cache.layers[i] for i, kind in enumerate(types) if kind == "full_attention"]
    linear = [cache.layers[i] for i, kind in enumerate(types) if kind == "linear_attention"]
    assert len(full) == 1 and len(linear) == 3  # the tiny layout: 3 linear layers, then full attention
    want = torch.stack([layer.values[0][:, video[0]].norm(dim=-1).mean(dim=0) for layer in full]).mean(dim=0)
    torch.testing.assert_close(video_token_scores(cache, video)[0], want, rtol=1e-6, atol=0)
    states = [(layer.conv_states[0].clone(), layer.recurrent_states[0].clone()) for layer in linear]
    length = full[0].keys.shape[2]
    kv_bytes = sum(2 * layer.keys.numel() * layer.keys.element_size() for layer in full)
    pruned = prune_video_tokens(cache, video, 0.5)
    assert full[0].keys.shape[2] == length - pruned.dropped_positions.shape[1] < length
    for layer, (conv, recurrent) in zip(linear, states, strict=True):
        assert torch.equal(layer.conv_states[0], conv) and torch.equal(layer.recurrent_states[0], recurrent)
    # Bytes: the full-attention layers' K/V only (linear states are not per token).
    assert pruned.kv_bytes_before == kv_bytes


@pytest.mark.parametrize("kit", LITE_FAMILIES, indirect=True)
def test_positions_continue_from_unpruned_length(kit):
    """Every decode step's M-RoPE position is ``original_len + step + rope_delta``, not cache-based."""
    tiny_model, tiny_inputs = kit.model, kit.inputs
    dec = kit.adapter()
    text_model = tiny_model.model.language_model
    seen: list[torch.Tensor] = []  # [4, B, L] per forward: the text row, then the three M-RoPE rows
    rows: list[torch.Tensor] = []

    def rope_rows(module, args, kwargs):
        rows.append(args[1].clone())

    def text_row(module, args, kwargs):
        seen.append(torch.cat([kwargs["position_ids"][None].clone(), rows[-1]]))

    hooks = [
        text_model.rotary_emb.register_forward_pre_hook(rope_rows, with_kwargs=True),
        text_model.layers[0].register_forward_pre_hook(text_row, with_kwargs=True),
    ]
    try:
        decode(
            dec,
            tiny_inputs,
            GenerationSettings(max_new_tokens=5),
            VReasonSettings(vreason=False, lite=True, prune_only=True),
        )
    finally:
        for hook in hooks:
            hook.remove()
    assert len(seen) == 5  # the prefill and four decode steps
    prefill = seen[0]
    timing = {"second_per_grid_ts": tiny_inputs["second_per_grid_ts"]} if kit.family == "qwen2_5_vl" else {}
    _, rope_delta = tiny_model.model.get_rope_index(
        tiny_inputs["input_ids"],
        mm_token_type_ids=tiny_inputs["mm_token_type_ids"],
        video_grid_thw=tiny_inputs["video_grid_thw"],
        **timing,
    )
    original_len = tiny_inputs["input_ids"].shape[1]
    for step, pos in enumerate(seen[1:], start=1):
        assert pos[1:, 0, 0].tolist() == [original_len + step - 1 + int(rope_delta[0, 0])] * 3
        assert int(pos[0, 0, 0]) == original_len + step - 1
    assert prefill.shape[-1] == original_len


def test_keep_ratio_one_equals_full_vreason(tiny_model, tiny_inputs):
    dec = Qwen2_5_VLAdapter(tiny_model)
    settings = GenerationSettings(max_new_tokens=12)
    full = decode(dec, tiny_inputs, settings, VReasonSettings(step_size=2, lr=0.05))
    lite = decode(
        dec, tiny_inputs, settings, VReasonSettings(step_size=2, lr=0.05, lite=True, keep_ratio=1.0)
    )
    assert lite.sequences == full.sequences
    torch.testing.assert_close(lite.stats.entropy, full.stats.entropy, rtol=0, atol=0)
    torch.testing.assert_close(lite.controller.delta, full.controller.delta, rtol=0, atol=0)


def _hand_cache(values_per_layer: list[torch.Tensor]) -> DynamicCache:
    cache = DynamicCache()
    cache.layers = []
    for v in values_per_layer:
        layer = DynamicLayer()
        layer.update(torch.zeros_like(v), v.clone())
        cache.layers.append(layer)
    return cache


def test_kept_set_is_top_scoring_half_and_rescale_keeps_block_norm():
    # 2 layers, 1 sample, 2 heads, 10 positions (video at 2..7), head_dim 3.
    torch.manual_seed(0)
    layers = [torch.randn(1, 2, 10, 3) * 0.01 for _ in range(2)]
    video = torch.arange(2, 8)[None]
    strength = {2: 1.0, 3: 5.0, 4: 2.0, 5: 4.0, 6: 0.5, 7: 3.0}  # position -> value scale
    for v in layers:
        for p, s in strength.items():
            v[0, :, p, :] = s
    cache = _hand_cache(layers)
    pruned = prune_video_tokens(cache, video, 0.5)
    kept_original = pruned.keep_index.gather(1, pruned.kept_video_positions)[0].tolist()
    assert kept_original == [3, 5, 7]  # the three strongest, in sequence order
    assert pruned.dropped_positions[0].tolist() == [2, 4, 6]
    assert pruned.keep_index[0].tolist() == [0, 1, 3, 5, 7, 8, 9]
    # Score of a token = mean over layers and heads of its value-vector norm = s * sqrt(3).
    torch.testing.assert_close(pruned.scores[0], torch.tensor([strength[p] for p in range(2, 8)]) * 3**0.5)
    # Rescale: the controlled kept block has the norm of the *unpruned* video block.
    unpruned_norm = layers[-1][0, :, 2:8, :].norm()
    last = cache.layers[-1].values
    kept = pruned.kept_video_positions
    idx = kept[:, None, :, None].expand(1, 2, -1, 3)
    ctrl = ValueController(
        last.gather(2, idx), kept, VReasonSettings(lite=True), reference_norm=pruned.reference_norm
    )
    ctrl.load_delta(torch.randn_like(ctrl.delta))
    torch.testing.assert_close(ctrl.controlled_values().norm(), unpruned_norm)
    assert ctrl.controlled_values().norm() > last.gather(2, idx).norm() * 1.01


def test_cache_really_shrinks(tiny_model, tiny_inputs):
    dec = Qwen2_5_VLAdapter(tiny_model)
    cache, _, _ = _prefill(dec, tiny_inputs)
    video = dec.video_positions(tiny_inputs["input_ids"])
    seq = cache.get_seq_length()
    pruned = prune_video_tokens(cache, video, 0.5)
    n_drop = video.shape[1] - keep_count(video.shape[1], 0.5)
    assert cache.get_seq_length() == seq - n_drop
    assert all(layer.keys.shape[2] == seq - n_drop == layer.values.shape[2] for layer in cache.layers)
    assert pruned.kv_bytes_after == pytest.approx(pruned.kv_bytes_before * (seq - n_drop) / seq)


def test_lite_decode_reports_video_tokens(tiny_model, tiny_inputs):
    out = decode(
        Qwen2_5_VLAdapter(tiny_model),
        tiny_inputs,
        GenerationSettings(max_new_tokens=4),
        VReasonSettings(lite=True, step_size=2),
    )
    n = int((tiny_inputs["input_ids"] == tiny_model.config.video_token_id).sum())
    assert out.stats.video_tokens_before.tolist() == [n]
    assert out.stats.video_tokens_after.tolist() == [keep_count(n, 0.5)]
    assert out.controller is not None and out.controller.delta.shape[2] == keep_count(n, 0.5)


def _hand_ragged_cache() -> tuple[DynamicCache, torch.Tensor, dict[tuple[int, int], float]]:
    """2 layers, 2 samples, 2 heads, 10 positions, head_dim 3; sample 0 has 6 video tokens, sample 1 has 3."""
    torch.manual_seed(1)
    layers = [torch.randn(2, 2, 10, 3) * 0.01 for _ in range(2)]
    strength = {(0, 2): 1.0, (0, 3): 5.0, (0, 4): 2.0, (0, 5): 4.0, (0, 6): 0.5, (0, 7): 3.0}
    strength |= {(1, 4): 2.0, (1, 6): 7.0, (1, 8): 1.0}
    for v in layers:
        for (b, p), s in strength.items():
            v[b, 0, p, :] = s
            v[b, 1, p, :] = 2 * s  # heads differ, so per-head quantities are distinguishable
    video = torch.tensor([[2, 3, 4, 5, 6, 7], [4, 6, 8, -1, -1, -1]])
    return _hand_cache(layers), video, strength


def test_ragged_batch_keeps_per_sample_sets_and_pads_with_masked_slots():
    cache, video, strength = _hand_ragged_cache()
    last_before = cache.layers[-1].values.clone()
    mask = torch.ones(2, 10, dtype=torch.long)
    mask[1, :2] = 0  # sample 1 is left-padded
    pruned = prune_video_tokens(cache, video, 0.5, attention_mask=mask)

    assert pruned.video_counts.tolist() == [6, 3]
    assert pruned.kept_counts.tolist() == [3, 2]  # 3 * 0.5 = 1.5 rounds half up to 2
    # Sample 0 keeps 7 positions, sample 1 keeps 9: sample 0 gets two masked padding slots in front.
    assert pruned.keep_index.tolist() == [[0, 0, 0, 1, 3, 5, 7, 8, 9], [0, 1, 2, 3, 4, 5, 6, 7, 9]]
    assert pruned.attention_mask.tolist() == [[0, 0, 1, 1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1, 1, 1, 1]]
    kept = pruned.kept_video_positions
    assert kept.tolist() == [[4, 5, 6], [4, 6, -1]]
    assert pruned.keep_index[0, kept[0]].tolist() == [3, 5, 7]  # the strongest, in sequence order
    assert pruned.keep_index[1, kept[1, :2]].tolist() == [4, 6]
    assert pruned.dropped_positions.tolist() == [[2, 4, 6], [8, -1, -1]]
    # Scores: mean over heads (s and 2s) of the norm, s * sqrt(3) * 1.5; NaN where a sample has no token.
    want = [[strength[(b, p)] * 1.5 * 3**0.5 for p in pos] for b, pos in enumerate([range(2, 8), [4, 6, 8]])]
    torch.testing.assert_close(pruned.scores[0], torch.tensor(want[0]))
    torch.testing.assert_close(pruned.scores[1, :3], torch.tensor(want[1]))
    assert torch.isnan(pruned.scores[1, 3:]).all()
    # Every layer shrank to the longest sample's kept length and holds the kept positions' entries.
    for layer in cache.layers:
        assert layer.values.shape == (2, 2, 9, 3)
    for b in range(2):
        real = pruned.attention_mask[b].bool()
        torch.testing.assert_close(
            cache.layers[-1].values[b][:, real], last_before[b][:, pruned.keep_index[b, real]]
        )
    # Block reference norm: each sample's own unpruned video block, padding excluded.
    for b, positions in enumerate([[2, 3, 4, 5, 6, 7], [4, 6, 8]]):
        torch.testing.assert_close(
            pruned.reference_norm[b].flatten(), last_before[b][:, positions].norm().view(1)
        )


def test_token_scope_reference_is_per_kept_token():
    cache, video, _ = _hand_ragged_cache()
    last_before = cache.layers[-1].values.clone()
    pruned = prune_video_tokens(cache, video, 0.5, scope="token")
    assert pruned.reference_norm.shape == (2, 1, 3, 1)  # token scope: one norm over heads and dims
    for b in range(2):
        n = int(pruned.kept_counts[b])
        original = pruned.keep_index[b, pruned.kept_video_positions[b, :n]]
        want = last_before[b][:, original].pow(2).sum(dim=(0, 2)).sqrt()
        torch.testing.assert_close(pruned.reference_norm[b, 0, :n, 0], want)


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("keep_ratio", [0.5, 0.3])
def test_ragged_batch_pruned_decoding_equals_each_sample_alone(
    tiny_model_dir, tiny_processor, attn, keep_ratio
):
    from conftest import LogitRecorder, load_model, make_batch_inputs, make_inputs

    dec = Qwen2_5_VLAdapter(load_model(tiny_model_dir, attn=attn))
    samples = [
        {"frames": 4, "size": 56, "seed": 1, "question": "What moves?"},
        {"frames": 8, "size": 84, "seed": 2, "question": "Which object is left of the red cube at the end?"},
    ]
    batch = make_batch_inputs(tiny_processor, samples)
    counts = (batch["input_ids"] == dec.video_token_id).sum(dim=1).tolist()
    assert counts[0] != counts[1]  # ragged video-token counts
    cfg = VReasonSettings(vreason=False, lite=True, prune_only=True, keep_ratio=keep_ratio)
    settings = GenerationSettings(max_new_tokens=STEPS)

    seen = LogitRecorder()
    out = decode(dec, batch, settings, cfg, probe=seen)
    got = torch.stack(seen.logits)  # [T, B, V]
    assert out.stats.video_tokens_before.tolist() == counts
    assert out.stats.video_tokens_after.tolist() == [keep_count(n, keep_ratio) for n in counts]
    assert out.pruned is not None and out.pruned.attention_mask is not None

    for b, spec in enumerate(samples):
        alone = LogitRecorder()
        single = decode(dec, make_inputs(tiny_processor, **spec), settings, cfg, probe=alone)
        want = torch.stack(alone.logits)[:, 0]
        assert got.shape[0] == want.shape[0] == STEPS
        assert (got[:, b] - want).abs().max() < 1e-5
        assert out.sequences[b] == single.sequences[0]


def test_packed_positions_round_trip_and_sample_without_video():
    from lmms_vreason.core.ragged import PAD, packed_positions, position_flags

    gen = torch.Generator().manual_seed(0)
    flags = torch.rand(4, 12, generator=gen) > 0.6
    flags[2] = False  # a sample with nothing flagged
    packed = packed_positions(flags)
    assert packed.shape == (4, int(flags.sum(dim=1).max()))
    for b in range(4):
        row = [p for p in packed[b].tolist() if p != PAD]
        assert row == torch.nonzero(flags[b]).flatten().tolist()
    assert torch.equal(position_flags(packed, 12), flags)

    # A text-only sample beside a video sample: it keeps its whole cache, the other prunes.
    cache, video, _ = _hand_ragged_cache()
    video[1] = PAD
    pruned = prune_video_tokens(cache, video, 0.5)
    assert pruned.video_counts.tolist() == [6, 0] and pruned.kept_counts.tolist() == [3, 0]
    assert pruned.keep_index[1].tolist() == list(range(10))
    assert pruned.attention_mask.tolist() == [[0, 0, 0] + [1] * 7, [1] * 10]
    assert pruned.dropped_positions.tolist() == [[2, 4, 6], [-1, -1, -1]]


def test_lite_decode_rescales_the_kept_block_to_the_unpruned_norm(tiny_model, tiny_inputs):
    """decode's own Lite wiring before any update (k beyond the run): the kept last-layer video values
    carry the unpruned block's norm from the first decoded token on. Reference: the full cache with
    the dropped positions masked and the kept values rescaled by hand."""
    from conftest import LogitRecorder

    dec = Qwen2_5_VLAdapter(tiny_model)
    seen = LogitRecorder()
    cfg = VReasonSettings(lite=True, step_size=10 * STEPS)
    out = decode(dec, tiny_inputs, GenerationSettings(max_new_tokens=STEPS), cfg, probe=seen)
    assert int(out.stats.opt_steps[0]) == 0 and out.pruned is not None

    cache, pos, logits = _prefill(dec, tiny_inputs)
    video = dec.video_positions(tiny_inputs["input_ids"])[0]
    kept = out.pruned.keep_index.gather(1, out.pruned.kept_video_positions)[0]
    mask = torch.ones(1, cache.get_seq_length(), dtype=torch.long)
    mask[0, out.pruned.dropped_positions[0]] = 0
    values = cache.layers[-1].values
    scale = values[:, :, video].norm() / values[:, :, kept].norm()
    assert scale > 1.05  # the rescale matters
    values[:, :, kept] = values[:, :, kept] * scale
    want = _greedy(dec, cache, pos, logits, mask)
    assert (torch.stack(seen.logits) - want).abs().max() < 1e-5


def test_scores_average_every_layer_not_just_the_last():
    # Token strengths per layer: layer 0 (1, 5, 1), layer 1 (2, 1, 3). Mean over layers: 1.5, 3, 2,
    # so the middle token wins; the last layer alone would pick the third.
    layers = [torch.zeros(1, 1, 4, 1) for _ in range(2)]
    layers[0][0, 0, 1:, 0] = torch.tensor([1.0, 5.0, 1.0])
    layers[1][0, 0, 1:, 0] = torch.tensor([2.0, 1.0, 3.0])
    pruned = prune_video_tokens(_hand_cache(layers), torch.tensor([[1, 2, 3]]), 0.34)
    torch.testing.assert_close(pruned.scores[0], torch.tensor([1.5, 3.0, 2.0]))
    assert pruned.keep_index.gather(1, pruned.kept_video_positions).tolist() == [[2]]
