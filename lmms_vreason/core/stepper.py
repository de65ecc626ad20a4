"""V-Reason's part of the decode loop: pruning, the controller's updates, the entropy record.

The loop (:mod:`lmms_vreason.core.decode`) calls a stepper at three points of every step:

* :meth:`Stepper.after_logits` with the step's raw logits: entropy, EMA and α, and on an
  optimising step the backward pass to ΔV and the per-sample gradient clipping. It returns the
  per-sample "finite" flags (device tensor) the loop copies to the host with the sampled tokens, so
  the step keeps its one host sync.
* :meth:`Stepper.after_sync` with those flags on the host: one AdamW step for every sample that is
  still generating and whose entropy and gradient are finite; the others keep ΔV and moments.
* :meth:`Stepper.forward` around the next step's forward: on an optimising step the last layer's
  values carry a graph to ΔV for exactly that forward (``docs/method.md`` §1.6-1.7).

:class:`Stepper` itself does nothing (the plain loop); :class:`VReasonStepper` is the method.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from contextlib import AbstractContextManager as ContextManager
from dataclasses import dataclass
from typing import Protocol

import torch
from transformers import DynamicCache

from lmms_vreason.core.controller import ValueController, controlled_layer
from lmms_vreason.core.objective import EntropyTracker, entropy, switch_loss
from lmms_vreason.core.pruning import PrunedCache, prune_video_tokens
from lmms_vreason.core.ragged import PAD, cache_index
from lmms_vreason.core.settings import VReasonSettings


class GradientProbe(Protocol):
    """Optional observer of each optimising step's gradient (tests and debugging only)."""

    def on_gradient(
        self, step: int, delta: torch.Tensor, grad: torch.Tensor, alpha: torch.Tensor, h: torch.Tensor
    ) -> None: ...


@dataclass
class StepRecord:
    """Per-sample dynamics of one decode call (host tensors, ``[B, T]`` or ``[B]``)."""

    entropy: torch.Tensor
    ema: torch.Tensor
    alpha: torch.Tensor
    optimized: torch.Tensor
    opt_steps: torch.Tensor
    skipped_steps: torch.Tensor
    video_tokens_before: torch.Tensor
    video_tokens_after: torch.Tensor


class Stepper:
    """The plain loop's stepper: no controller, nothing recorded (zeros in the record)."""

    controller: ValueController | None = None
    pruned: PrunedCache | None = None
    rows_per_request: int = 1
    """Rows the loop decodes per request: 1, or the size of the lr grid (every lr decoded side by side)."""

    def __init__(
        self, max_new_tokens: int, video_counts: torch.Tensor, attention_mask: torch.Tensor | None
    ) -> None:
        self.batch = batch = len(video_counts)
        self.video_counts = video_counts
        self.attention_mask = attention_mask
        """The 2D mask over the cache (``None``: unmasked); Lite gives the pruned cache's."""
        self.optimized = torch.zeros(batch, max_new_tokens, dtype=torch.bool)
        self.skipped = torch.zeros(batch, dtype=torch.long)

    def after_logits(self, step: int, logits: torch.Tensor) -> torch.Tensor | None:
        """Observe step ``step``'s raw logits; returns per-sample finite flags to sync, or ``None``."""
        return None

    def after_sync(self, step: int, finite: Sequence[bool], active: Sequence[bool]) -> None:
        """Update the samples that are ``active`` and ``finite`` at step ``step``."""

    def forward(self, step: int) -> ContextManager[None]:
        """The context of the forward that produces step ``step``'s logits."""
        return contextlib.nullcontext()

    def record(self, steps: int) -> StepRecord:
        """What happened over the first ``steps`` steps, on the host."""
        zeros = torch.zeros(self.batch, steps)
        kept = self.video_counts if self.pruned is None else self.pruned.kept_counts.cpu()
        return StepRecord(
            entropy=zeros,
            ema=zeros.clone(),
            alpha=zeros.clone(),
            optimized=self.optimized[:, :steps],
            opt_steps=self.optimized[:, :steps].sum(dim=1),
            skipped_steps=self.skipped,
            video_tokens_before=self.video_counts,
            video_tokens_after=kept,
        )


class VReasonStepper(Stepper):
    """V-Reason, V-Reason (Lite), Lite pruning alone, or entropy tracking alone (telemetry).

    Built right after the prefill: prunes the cache (Lite), copies every request's cache once per
    learning rate of an lr grid (so the grid costs one prefill and one pruning), puts the controller
    on the last layer's values at the (kept) video positions with each row's own lr, and keeps the
    entropy/EMA/α record on the device.
    """

    def __init__(
        self,
        settings: VReasonSettings,
        cache: DynamicCache,
        video_positions: torch.Tensor,
        attention_mask: torch.Tensor | None,
        *,
        max_new_tokens: int,
        track_entropy: bool,
        probe: GradientProbe | None = None,
    ) -> None:
        video_counts = (video_positions != PAD).sum(dim=1).cpu()
        has_video = video_positions.shape[1] > 0
        pruned = None
        if settings.prunes and has_video:
            pruned = prune_video_tokens(
                cache,
                video_positions,
                settings.keep_ratio,
                attention_mask=attention_mask,
                scope=settings.norm_scope,
            )
            attention_mask = pruned.attention_mask
        rows = len(settings.learning_rates) if settings.controls else 1
        if rows > 1:  # an lr grid: one copy of every request's (pruned) cache per learning rate
            cache.batch_repeat_interleave(rows)
            video_positions = video_positions.repeat_interleave(rows, dim=0)
            video_counts = video_counts.repeat_interleave(rows)
            attention_mask = None if attention_mask is None else attention_mask.repeat_interleave(rows, dim=0)
            pruned = None if pruned is None else pruned.repeat_rows(rows)
        super().__init__(max_new_tokens, video_counts, attention_mask)
        batch = self.batch
        self.rows_per_request = rows
        self.pruned = pruned
        self.settings = settings
        self.probe = probe
        self.layer = controlled_layer(cache)
        if settings.controls and has_video:
            self.controller = self._controller(video_positions)
        device = video_positions.device
        self.tracker = (
            EntropyTracker(batch, settings.ema_beta, settings.objective, device)
            if settings.controls or track_entropy
            else None
        )
        self.entropy = torch.zeros(batch, max_new_tokens, dtype=torch.float32, device=device)
        self.ema = torch.zeros_like(self.entropy)
        self.alpha = torch.zeros_like(self.entropy)

    def _controller(self, video_positions: torch.Tensor) -> ValueController:
        if self.pruned is not None:  # Lite: the kept tokens, rescaled to the unpruned block's norm
            positions, reference = self.pruned.kept_video_positions, self.pruned.reference_norm
        else:
            positions, reference = video_positions, None
        values = self.layer.values
        positions = positions.to(values.device)  # the last layer may sit on another GPU (device_map)
        controller = ValueController(
            values.gather(2, cache_index(positions, values)),
            positions,
            self.settings,
            reference_norm=reference,
            lrs=self.settings.learning_rates * (self.batch // self.rows_per_request),  # rows b * G + g
        )
        if reference is not None:
            controller.write_back(values)  # Lite rescales even before the first update
        return controller

    def optimises(self, step: int) -> bool:
        """Every k-th step, never the first (its logits come from the prefill, with no ΔV in them)."""
        return self.controller is not None and step > 1 and step % self.settings.step_size == 0

    def forward(self, step: int) -> ContextManager[None]:
        if self.controller is not None and self.optimises(step):
            return self.layer.differentiable(self.controller)
        return contextlib.nullcontext()

    def after_logits(self, step: int, logits: torch.Tensor) -> torch.Tensor | None:
        if self.tracker is None:
            return None
        optimising = self.optimises(step)
        with torch.set_grad_enabled(optimising):
            h = entropy(logits)
        ema, alpha = self.tracker.observe(h)
        self.entropy[:, step - 1] = h.detach()
        self.ema[:, step - 1] = ema
        if not optimising:
            return None
        assert self.controller is not None
        self.alpha[:, step - 1] = alpha
        with torch.enable_grad():
            switch_loss(h, alpha).backward()
        if self.probe is not None:
            self.probe.on_gradient(step, self.controller.delta, self.controller.grad, alpha, h)
        norms = self.controller.clip_and_measure()
        return torch.isfinite(h.detach()) & torch.isfinite(norms)

    def after_sync(self, step: int, finite: Sequence[bool], active: Sequence[bool]) -> None:
        if not self.optimises(step):
            return
        assert self.controller is not None
        update = [a and f for a, f in zip(active, finite, strict=True)]
        for b, on in enumerate(active):
            self.optimized[b, step - 1] = on
            self.skipped[b] += int(on and not finite[b])
        if any(update):
            self.controller.step(update)
            self.controller.write_back(self.layer.values)
        else:
            self.controller.skip()

    def record(self, steps: int) -> StepRecord:
        base = super().record(steps)
        base.entropy = self.entropy[:, :steps].cpu()
        base.ema = self.ema[:, :steps].cpu()
        base.alpha = self.alpha[:, :steps].cpu()
        return base
