"""The decode loop: prefill → prune → expand rows → controller, then one token at a time.

With V-Reason off this reproduces ``model.generate`` token for token and logit for logit (same
positions, attention extent, processors, stopping and draw); compiled, to float rounding. The
phases, in order:

1. **prefill**: the whole prompt through the model into a ``DynamicCache`` (as ``generate``);
2. **prune** (Lite): which cache positions each request keeps (:func:`plan_pruning`);
3. **expand rows**: an lr grid decodes every request once per lr (:class:`RowLayout`); the prefilled
   cache is copied once into preallocated buffers, pruned and expanded in that one copy
   (:class:`StaticKVCache`);
4. **controller**: ΔV on the last layer's values at the (kept) video slots, one lr per row.

Then every step: entropy, EMA and α from the step's raw logits; on an optimising step the gradient to
ΔV and its masked per-row AdamW update, on the device; the token drawn outside the model's graphs;
stop flags on the device; the next step (:class:`DecoderStep`, eager or compiled). Nothing per step
needs the host but one flag, "has every row stopped?", which on CUDA is read one step late, while the
next step runs (so the GPU never waits for the host). Tokens stay in a preallocated buffer until the end.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from transformers import StoppingCriteriaList

from lmms_vreason.core.adapter import ModelAdapter
from lmms_vreason.core.controller import ValueController
from lmms_vreason.core.kv import StaticKVCache, round_up
from lmms_vreason.core.objective import EntropyTracker, entropy
from lmms_vreason.core.pruning import PrunedCache, plan_pruning
from lmms_vreason.core.ragged import PAD, cache_index
from lmms_vreason.core.rows import RowLayout
from lmms_vreason.core.sampling import TokenSampler
from lmms_vreason.core.settings import GenerationSettings, VReasonSettings
from lmms_vreason.core.step import DecoderStep, OptimisingStep

PLAIN = VReasonSettings(vreason=False)


class DecodeProbe(Protocol):
    """Optional observer of raw logits and gradients, for tests and debugging."""

    def on_logits(self, step: int, logits: torch.Tensor) -> None: ...

    def on_gradient(
        self, step: int, delta: torch.Tensor, grad: torch.Tensor, alpha: torch.Tensor, h: torch.Tensor
    ) -> None: ...


@dataclass
class DecodeStats:
    """Per-row dynamics of one decode call (host tensors, ``[rows, T]`` or ``[rows]``).

    ``entropy``/``ema`` are zero where nothing was tracked; ``alpha`` is recorded only at optimising
    steps (0 elsewhere). ``skipped_steps``: optimising steps a row was still generating but skipped
    (non-finite entropy or gradient). ``nonfinite_step``: the first step whose logits held NaN/inf
    (0: none); such a row stops there (nothing can be sampled from NaN) and keeps the tokens it
    produced before. ``prefill_s``: time to the first token; ``decode_s``: the rest.
    """

    entropy: torch.Tensor
    ema: torch.Tensor
    alpha: torch.Tensor
    optimized: torch.Tensor
    opt_steps: torch.Tensor
    skipped_steps: torch.Tensor
    video_tokens_before: torch.Tensor
    video_tokens_after: torch.Tensor
    nonfinite_step: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    prefill_s: float = 0.0
    decode_s: float = 0.0


@dataclass
class DecodeOutput:
    """Generated token ids per row (EOS included when produced), the rows' layout and statistics."""

    sequences: list[list[int]]
    stats: DecodeStats
    layout: RowLayout
    pruned: PrunedCache | None = None
    controller: ValueController | None = field(default=None, repr=False)


@dataclass
class Prompt:
    """The processed prompt on the model's device, with its prefill positions."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor | None
    positions: torch.Tensor
    prefill_inputs: dict[str, torch.Tensor]


def prepare(adapter: ModelAdapter, inputs: Mapping[str, Any]) -> Prompt:
    """Move the processor outputs to the device and build the prefill positions.

    ``generate`` drops an all-ones attention mask so attention takes its unmasked path; so do we.
    """
    device = adapter.device
    input_ids = inputs["input_ids"].to(device)
    mask = inputs.get("attention_mask")
    mask = None if mask is None else mask.to(device)
    positions = adapter.prefill_positions({**inputs, "input_ids": input_ids, "attention_mask": mask})
    if mask is not None and not bool((mask == 0).any()):
        mask = None
    return Prompt(input_ids, mask, positions, adapter.prefill_inputs(inputs))


def prefill(adapter: ModelAdapter, prompt: Prompt, cache: Any) -> torch.Tensor:
    """Run the whole prompt through the model; the logits of the first new token, ``[B, V]``."""
    return adapter.forward(
        prompt.input_ids, prompt.positions, cache, prompt.attention_mask, **prompt.prefill_inputs
    )


def make_controller(
    cache: StaticKVCache,
    video_positions: torch.Tensor,
    pruned: PrunedCache | None,
    settings: VReasonSettings,
    layout: RowLayout,
    *,
    bucket: int = 1,
) -> ValueController:
    """ΔV on the last layer's values at every row's (kept) video slots; Lite rescales them at once.

    ``video_positions`` and ``pruned`` are per row. The slot lists are padded with :data:`PAD` to a
    multiple of ``bucket`` (a compiled step then serves videos of similar lengths with one graph).
    """
    if pruned is not None:  # Lite: the kept tokens, rescaled to the unpruned block's norm
        positions, reference = pruned.kept_video_positions, pruned.reference_norm
    else:
        positions, reference = video_positions, None
    values = cache.layers[-1].values
    width = round_up(positions.shape[1], bucket)
    if width > positions.shape[1]:
        positions = torch.nn.functional.pad(positions, (0, width - positions.shape[1]), value=PAD)
        if reference is not None and reference.shape[2] > 1:  # token scope: one norm per token
            reference = torch.nn.functional.pad(reference, (0, 0, 0, width - reference.shape[2]), value=1.0)
    positions = positions.to(values.device)  # the last layer may sit on another GPU (device_map)
    controller = ValueController(
        values.gather(2, cache_index(positions, values)),
        positions,
        settings,
        reference_norm=reference,
        lrs=layout.row_lrs(settings.lr),
    )
    if reference is not None:
        controller.write_back(values)  # Lite rescales even before the first update
    return controller


def _copy(generator: torch.Generator) -> torch.Generator:
    """An independent generator in the same state (every row of an lr grid draws as its run would)."""
    copy = torch.Generator(device=generator.device)
    copy.set_state(generator.get_state())
    return copy


class _AllStopped:
    """Whether every row has stopped, read on the host; on CUDA one step late (no wait for the GPU)."""

    def __init__(self, device: torch.device) -> None:
        self.deferred = device.type == "cuda"
        self._host = torch.zeros((), dtype=torch.bool, pin_memory=self.deferred)
        self._event = torch.cuda.Event() if self.deferred else None

    def post(self, finished: torch.Tensor) -> None:
        """Start reading this step's flag (CPU: read now)."""
        if self._event is None:
            self._host.copy_(finished.all())
            return
        self._host.copy_(finished.all(), non_blocking=True)
        self._event.record()

    def read(self) -> bool:
        """The flag posted last (on CUDA: waits for that copy only, not for later work)."""
        if self._event is not None:
            self._event.synchronize()
        return bool(self._host)


def decode(
    adapter: ModelAdapter,
    inputs: Mapping[str, Any],
    settings: GenerationSettings,
    vreason: VReasonSettings | None = None,
    *,
    stopping: StoppingCriteriaList | None = None,
    pad_token_id: int = 0,
    generators: Sequence[torch.Generator] | None = None,
    track_entropy: bool = False,
    probe: DecodeProbe | None = None,
    compile: bool = False,
) -> DecodeOutput:
    """Generate up to ``settings.max_new_tokens`` tokens for a batch of processed inputs.

    Args:
        adapter: the model family's adapter.
        inputs: processor output (``input_ids``, ``attention_mask``, pixel values, grids, ...).
        settings: sampler settings and the token budget.
        vreason: controller/pruning settings; ``None`` runs the plain loop. With an ``lr_grid``, every
            request is decoded once per learning rate (rows: ``DecodeOutput.layout``), after one prefill.
        stopping: per-row stop criteria (EOS, stop strings), applied to the generated ids.
        pad_token_id: filler for rows that already stopped (batch decoding).
        generators: one random generator per request for sampled decoding (``None``: torch's global one).
        track_entropy: record entropy/EMA (for telemetry) even when the controller is off.
        probe: optional observer of raw logits and gradients.
        compile: run the step compiled (:class:`DecoderStep`); same results to float rounding.
    """
    started = time.perf_counter()
    vreason = vreason if vreason is not None else PLAIN
    if vreason.controls:
        adapter.check_controllable()
    step_fn = adapter.decoder_step(compile=compile)
    max_new = settings.max_new_tokens
    with torch.no_grad():
        prompt = prepare(adapter, inputs)
        prefilled = adapter.new_cache()
        logits = prefill(adapter, prompt, prefilled)  # 1. prefill
        video = adapter.video_positions(prompt.input_ids)
        has_video = video.shape[1] > 0
        pruned = None
        if vreason.prunes and has_video:  # 2. prune
            pruned = plan_pruning(
                prefilled,
                video,
                vreason.keep_ratio,
                attention_mask=prompt.attention_mask,
                scope=vreason.norm_scope,
            )
        grid = vreason.lr_grid if vreason.controls else None
        layout = RowLayout(prompt.input_ids.shape[0], grid)  # 3. expand rows
        cache = StaticKVCache.from_prefill(
            prefilled,
            layout,
            new_tokens=max_new,
            attention_mask=prompt.attention_mask,
            pruned=pruned,
            additive_mask=step_fn.additive_mask,
            bucket=step_fn.bucket,
            exact_length=step_fn.exact_length,
        )
        del prefilled
        video_counts = layout.expand((video != PAD).sum(dim=1))
        if pruned is not None and layout.per_request > 1:
            pruned = pruned.for_rows(layout)
        controller = None
        if vreason.controls and has_video:  # 4. controller
            controller = make_controller(
                cache, layout.expand(video), pruned, vreason, layout, bucket=step_fn.video_bucket
            )
        logits = layout.expand(logits)
        positions = layout.expand(prompt.positions[..., -1:], dim=1).clone()
        if generators is not None:
            generators = [_copy(g) for g in layout.expand_list(generators)]
    loop = _Loop(
        step_fn,
        cache,
        controller,
        vreason,
        layout.expand(prompt.input_ids),
        max_new,
        track=vreason.controls or track_entropy,
    )
    steps, prefill_s, decode_started = loop.run(
        logits, positions, settings, stopping, pad_token_id, generators, probe, started
    )
    if loop.ids.device.type == "cuda":
        torch.cuda.synchronize(loop.ids.device)
    decode_s = time.perf_counter() - decode_started
    kept = video_counts if pruned is None else pruned.kept_counts
    stats = loop.stats(steps, video_counts.cpu(), kept.cpu())
    stats.prefill_s, stats.decode_s = prefill_s, decode_s
    return DecodeOutput(loop.sequences(), stats, layout, pruned=pruned, controller=controller)


class _Loop:
    """The per-step state of one decode call, preallocated on the device."""

    def __init__(
        self,
        step_fn: DecoderStep,
        cache: StaticKVCache,
        controller: ValueController | None,
        vreason: VReasonSettings,
        prompt_ids: torch.Tensor,
        max_new: int,
        *,
        track: bool,
    ) -> None:
        rows, self.prompt_len = prompt_ids.shape
        device = prompt_ids.device
        self.step_fn, self.cache, self.controller, self.vreason = step_fn, cache, controller, vreason
        self.max_new = max_new
        self.ids = torch.cat([prompt_ids, prompt_ids.new_zeros(rows, max_new)], dim=1)
        self.finished = torch.zeros(rows, dtype=torch.bool, device=device)
        self.lengths = torch.zeros(rows, dtype=torch.long, device=device)
        self.nonfinite_step = torch.zeros(rows, dtype=torch.long, device=device)
        self.tracker = EntropyTracker(rows, vreason.ema_beta, vreason.objective, device) if track else None
        self.entropy = torch.zeros(rows, max_new, dtype=torch.float32, device=device)
        self.ema = torch.zeros_like(self.entropy)
        self.alpha = torch.zeros_like(self.entropy)
        self.optimized = torch.zeros(rows, max_new, dtype=torch.bool, device=device)
        self.skipped = torch.zeros(rows, dtype=torch.long, device=device)

    def optimises(self, step: int) -> bool:
        """Every k-th step, never the first (its logits come from the prefill, with no ΔV in them)."""
        return self.controller is not None and step > 1 and step % self.vreason.step_size == 0

    def run(
        self,
        logits: torch.Tensor,
        positions: torch.Tensor,
        settings: GenerationSettings,
        stopping: StoppingCriteriaList | None,
        pad_token_id: int,
        generators: Sequence[torch.Generator] | None,
        probe: DecodeProbe | None,
        started: float,
    ) -> tuple[int, float, float]:
        """Steps 1.. until every row stopped or the budget is spent; returns (steps, prefill_s, decode start)."""
        sampler = TokenSampler(settings, generators)
        stopping = stopping if stopping is not None else StoppingCriteriaList()
        stopped = _AllStopped(self.ids.device)
        p = self.prompt_len
        h: torch.Tensor | None = None
        optimising: OptimisingStep | None = None
        broken = ~torch.isfinite(logits).all(dim=-1)  # the prefill's; later steps' come with their logits
        prefill_s, decode_started = 0.0, started
        step = 0
        for step in range(1, self.max_new + 1):
            if probe is not None:
                probe.on_logits(step, logits.detach().clone())
            active = ~self.finished
            if self.tracker is not None:
                if h is None:  # step 1: the prefill's logits
                    h = entropy(logits)
                self._track(step, h, active, optimising, probe)
            with torch.no_grad():
                logits = logits.detach()  # rows with NaN/inf logits (broken) stop here
                drawn = sampler(self.ids[:, : p + step - 1], logits, broken)
                tokens = torch.where(self.finished | broken, pad_token_id, drawn)
                self.ids[:, p + step - 1] = tokens
                self.nonfinite_step.masked_fill_(active & broken, step)
                self.lengths += active & ~broken
                self.finished |= broken
                if stopping:
                    self.finished |= stopping(self.ids[:, p : p + step], logits)
            if step == 1:
                if self.ids.device.type == "cuda":
                    torch.cuda.synchronize(self.ids.device)
                prefill_s, decode_started = time.perf_counter() - started, time.perf_counter()
            if step == self.max_new:
                break
            stopped.post(self.finished)
            if not stopped.deferred and stopped.read():
                break
            logits, h, broken, optimising = self._forward(step + 1, tokens, positions)
            if stopped.deferred and stopped.read():
                break  # step + 1 ran for nothing: every row had stopped at ``step``
        return step, prefill_s, decode_started

    def _forward(
        self, step: int, tokens: torch.Tensor, positions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, OptimisingStep | None]:
        """Step ``step``'s logits, entropy (when tracked), NaN/inf rows and, if it optimises, its way back
        to ΔV."""
        if self.optimises(step):
            assert self.controller is not None
            delta = self.controller.delta.detach().requires_grad_(True)
            out = self.step_fn.forward_with_grad(tokens, positions, self.cache, self.controller, delta)
            return out.logits, out.entropy.detach(), out.broken, out
        logits, h, broken = self.step_fn.forward(
            tokens, positions, self.cache, with_entropy=self.tracker is not None
        )
        return logits, h, broken, None

    def _track(
        self,
        step: int,
        h: torch.Tensor,
        active: torch.Tensor,
        optimising: OptimisingStep | None,
        probe: DecodeProbe | None,
    ) -> None:
        """Entropy, EMA and α of step ``step``; on an optimising step the update of ΔV (device only)."""
        assert self.tracker is not None
        with torch.no_grad():
            ema, alpha = self.tracker.observe(h)
            self.entropy[:, step - 1] = h
            self.ema[:, step - 1] = ema
        if optimising is None:
            return
        controller = self.controller
        assert controller is not None
        self.alpha[:, step - 1] = alpha
        grad = optimising.delta_grad(alpha)
        if probe is not None:
            probe.on_gradient(step, controller.delta.clone(), grad.clone(), alpha, h)
        stepped = self.step_fn.update(controller, grad, active, h, self.cache.layers[-1].values)
        self.optimized[:, step - 1] = active
        self.skipped += active & ~stepped

    def sequences(self) -> list[list[int]]:
        """Every row's generated ids (one host copy)."""
        ids = self.ids[:, self.prompt_len :].tolist()
        return [row[:n] for row, n in zip(ids, self.lengths.tolist(), strict=True)]

    def stats(self, steps: int, video_before: torch.Tensor, video_after: torch.Tensor) -> DecodeStats:
        optimized = self.optimized[:, :steps].cpu()
        tracked = self.tracker is not None
        zeros = torch.zeros(len(optimized), steps)
        return DecodeStats(
            entropy=self.entropy[:, :steps].cpu() if tracked else zeros,
            ema=self.ema[:, :steps].cpu() if tracked else zeros.clone(),
            alpha=self.alpha[:, :steps].cpu(),
            optimized=optimized,
            opt_steps=optimized.sum(dim=1),
            skipped_steps=self.skipped.cpu(),
            video_tokens_before=video_before,
            video_tokens_after=video_after,
            nonfinite_step=self.nonfinite_step.cpu(),
        )
