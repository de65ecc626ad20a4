"""The decode loop: prefill, optional Lite pruning, then token-by-token decoding with the controller.

With V-Reason off this reproduces ``model.generate`` token for token and logit for logit (same
positions, same cache, same processors, same draw). With V-Reason on, every k-th step (never the
first) runs its forward with autograd enabled so the step's raw entropy can be differentiated with
respect to ΔV (SPEC §1.6-1.7); the next step's forward sees the updated ΔV.

Batches: every sample keeps its own ΔV, AdamW state, entropy EMA and Lite kept set, so a sample
decodes as it would alone (up to float rounding of padded attention). A sample that has stopped, or
whose entropy or gradient is non-finite, skips its own update only.

Host synchronisation: one small device-to-host copy per step (the sampled tokens, plus the finite
flags on optimising steps), which stopping needs anyway. Entropies, EMA and α stay on the device and
are copied once per sample.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from lmms_vreason.config import VReasonConfig
from lmms_vreason.controller import ValueController
from lmms_vreason.objective import EntropyTracker, entropy, switch_loss
from lmms_vreason.pruning import PrunedCache, prune_video_tokens
from lmms_vreason.qwen import PREFILL_ONLY_INPUTS, QwenVLDecoder
from lmms_vreason.ragged import PAD, cache_index
from lmms_vreason.sampling import GenerationSettings, TokenSampler


class DecodeProbe(Protocol):
    """Optional observer for tests and debugging; never used on the production path."""

    def on_logits(self, step: int, logits: torch.Tensor) -> None: ...

    def on_gradient(
        self, step: int, delta: torch.Tensor, grad: torch.Tensor, alpha: torch.Tensor, h: torch.Tensor
    ) -> None: ...


@dataclass
class DecodeStats:
    """Per-sample dynamics and costs of one decode call (host tensors, ``[B, T]`` or per sample ``[B]``)."""

    entropy: torch.Tensor
    ema: torch.Tensor
    alpha: torch.Tensor
    optimized: torch.Tensor
    opt_steps: torch.Tensor
    skipped_steps: torch.Tensor
    video_tokens_before: torch.Tensor
    video_tokens_after: torch.Tensor
    prefill_s: float = 0.0
    decode_s: float = 0.0


@dataclass
class DecodeOutput:
    """Generated token ids per sample (EOS included when produced) and the run's statistics."""

    sequences: list[list[int]]
    stats: DecodeStats
    pruned: PrunedCache | None = None
    controller: ValueController | None = field(default=None, repr=False)


StopCheck = Callable[[Sequence[int]], bool]


def _device_sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def decode(
    decoder: QwenVLDecoder,
    inputs: Mapping[str, Any],
    settings: GenerationSettings,
    vreason: VReasonConfig | None = None,
    *,
    eos_token_ids: Sequence[int] = (),
    pad_token_id: int = 0,
    stop: StopCheck | None = None,
    generator: torch.Generator | None = None,
    track_entropy: bool = False,
    probe: DecodeProbe | None = None,
) -> DecodeOutput:
    """Generate up to ``settings.max_new_tokens`` tokens for a batch of processed inputs.

    Args:
        decoder: the model adapter.
        inputs: processor output (``input_ids``, ``attention_mask``, pixel values, grids, ...).
        settings: sampler and stopping settings.
        vreason: controller/pruning settings; ``None`` or ``enabled=False`` without ``lite`` runs the
            plain loop.
        eos_token_ids: a sample stops after producing one of these.
        pad_token_id: filler for samples that already stopped (batch decoding).
        stop: extra per-sample stop test on the generated ids so far (e.g. ``until`` strings).
        generator: random generator of the multinomial draw (``None``: torch's global one).
        track_entropy: record entropy/EMA/α (for telemetry) even when the controller is off.
        probe: optional observer of raw logits and gradients.
    """
    device = decoder.device
    input_ids: torch.Tensor = inputs["input_ids"].to(device)
    batch = input_ids.shape[0]
    vr = vreason if vreason is not None else VReasonConfig(enabled=False)
    controls = vr.controls
    t_start = time.perf_counter()

    mask = inputs.get("attention_mask")
    mask = None if mask is None else mask.to(device)
    # generate() drops an all-ones mask so attention takes its unmasked path; so do we.
    padded = mask is not None and bool((mask == 0).any())
    position_ids = decoder.prefill_positions({**inputs, "input_ids": input_ids, "attention_mask": mask})
    cache = decoder.new_cache()
    prefill_kwargs = {k: inputs[k].to(device) for k in PREFILL_ONLY_INPUTS if inputs.get(k) is not None}
    if not padded:
        mask = None
    logits = decoder.forward(input_ids, position_ids, cache, mask, **prefill_kwargs)

    video_pos = decoder.video_positions(input_ids) if (controls or vr.prunes) else None
    n_video = 0 if video_pos is None else int(video_pos.shape[1])  # the largest count in the batch
    video_counts = (
        torch.zeros(batch, dtype=torch.long) if video_pos is None else (video_pos != PAD).sum(1).cpu()
    )
    pruned: PrunedCache | None = None
    controller: ValueController | None = None
    layer = decoder.controlled_layer(cache)
    if vr.prunes and n_video > 0:
        pruned = prune_video_tokens(cache, video_pos, vr.keep_ratio, attention_mask=mask, scope=vr.norm_scope)
        mask = pruned.attention_mask
    if controls and n_video > 0:
        values = layer.values
        if pruned is not None:
            ctrl_pos = pruned.kept_video_positions
            reference = pruned.reference_norm
        else:
            ctrl_pos, reference = video_pos, None
        ctrl_pos = ctrl_pos.to(values.device)  # the last layer may sit on another GPU (device_map)
        controller = ValueController(
            values.gather(2, cache_index(ctrl_pos, values)), ctrl_pos, vr, reference_norm=reference
        )
        layer.controller = controller
        if reference is not None:
            controller.write_back(layer.values)  # Lite rescales even before the first update

    max_new = settings.max_new_tokens
    ent = torch.zeros(batch, max_new, dtype=torch.float32, device=device)
    ema_buf = torch.zeros_like(ent)
    alpha_buf = torch.zeros_like(ent)
    optimized = torch.zeros(batch, max_new, dtype=torch.bool)
    skipped = torch.zeros(batch, dtype=torch.long)
    tracker = (
        EntropyTracker(batch, vr.ema_beta, vr.objective, device) if (controls or track_entropy) else None
    )
    sampler = TokenSampler(settings, generator)
    eos = set(int(e) for e in eos_token_ids)
    sequences: list[list[int]] = [[] for _ in range(batch)]
    unfinished = [True] * batch
    finished = torch.zeros(batch, dtype=torch.bool, device=device)  # device copy, written only on a stop
    all_ids = input_ids
    prefill_s = 0.0
    decode_start = t_start

    step = 1
    while True:
        if probe is not None:
            probe.on_logits(step, logits.detach().clone())
        opt_step = controller is not None and layer.differentiable
        if tracker is not None:
            with torch.set_grad_enabled(opt_step):
                h = entropy(logits)
            ema, alpha = tracker.observe(h)
            ent[:, step - 1] = h.detach()
            ema_buf[:, step - 1] = ema
            alpha_buf[:, step - 1] = alpha if opt_step else 0.0
        next_tokens = sampler(all_ids, logits.detach())
        if batch > 1:
            next_tokens = torch.where(finished, pad_token_id, next_tokens)
        finite_flag = None
        if opt_step:
            assert controller is not None
            with torch.enable_grad():
                switch_loss(h, alpha).backward()
            layer.differentiable = False
            if probe is not None:
                probe.on_gradient(step, controller.delta, controller.grad, alpha, h)
            norms = controller.clip_and_measure()
            finite_flag = torch.isfinite(h) & torch.isfinite(norms)
        # The one host sync of the step.
        if finite_flag is not None:
            host = torch.cat([next_tokens, finite_flag.long()]).tolist()
            tokens, finite = host[:batch], [bool(f) for f in host[batch:]]
        else:
            tokens, finite = next_tokens.tolist(), []
        if step == 1:
            prefill_s = time.perf_counter() - t_start
            decode_start = time.perf_counter()
        if opt_step:
            assert controller is not None
            # Samples that already stopped are left alone; a non-finite sample skips only its own update.
            update = [u and f for u, f in zip(unfinished, finite, strict=True)]
            for b, active in enumerate(unfinished):
                optimized[b, step - 1] = active
                skipped[b] += int(active and not finite[b])
            if any(update):
                controller.step(update)
                controller.write_back(layer.values)
            else:
                controller.skip()
        for b, tok in enumerate(tokens):
            if unfinished[b]:
                sequences[b].append(tok)
                if tok in eos or (stop is not None and stop(sequences[b])):
                    unfinished[b] = False
                    finished[b] = True
        if not any(unfinished) or step >= max_new:
            break

        all_ids = torch.cat([all_ids, next_tokens[:, None]], dim=-1)
        position_ids = position_ids[..., -1:] + 1
        if mask is not None:
            mask = torch.cat([mask, mask.new_ones(batch, 1)], dim=-1)
        step += 1
        optimise_now = controller is not None and step % vr.step_size == 0
        layer.differentiable = optimise_now
        with torch.set_grad_enabled(optimise_now):
            logits = decoder.forward(next_tokens[:, None], position_ids, cache, mask)

    _device_sync(device)
    decode_s = time.perf_counter() - decode_start
    n = step
    stats = DecodeStats(
        entropy=ent[:, :n].cpu(),
        ema=ema_buf[:, :n].cpu(),
        alpha=alpha_buf[:, :n].cpu(),
        optimized=optimized[:, :n],
        opt_steps=optimized[:, :n].sum(dim=1),
        skipped_steps=skipped,
        video_tokens_before=video_counts,
        video_tokens_after=video_counts if pruned is None else pruned.kept_counts.cpu(),
        prefill_s=prefill_s,
        decode_s=decode_s,
    )
    layer.controller = None
    return DecodeOutput(sequences=sequences, stats=stats, pruned=pruned, controller=controller)
