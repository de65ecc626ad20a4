"""The decode loop: prefill, then one token at a time, with V-Reason as a stepper beside the loop.

With V-Reason off this reproduces ``model.generate`` token for token and logit for logit (same
positions, cache, processors, stopping and draw). The loop knows positions, the cache, the sampler
and stopping; everything V-Reason does (pruning, entropy, backward, AdamW) happens in a
:class:`~lmms_vreason.core.stepper.Stepper` it calls at three fixed points of a step.

Host synchronisation: one small device-to-host copy per step (the sampled tokens, the stop flags,
the non-finite-logits flags and, on optimising steps, the finite-gradient flags), which stopping
needs anyway.
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
from lmms_vreason.core.pruning import PrunedCache
from lmms_vreason.core.ragged import PAD
from lmms_vreason.core.sampling import TokenSampler
from lmms_vreason.core.settings import GenerationSettings, VReasonSettings
from lmms_vreason.core.stepper import GradientProbe, Stepper, StepRecord, VReasonStepper


class DecodeProbe(GradientProbe, Protocol):
    """Optional observer of raw logits and gradients, for tests and debugging."""

    def on_logits(self, step: int, logits: torch.Tensor) -> None: ...


@dataclass
class DecodeStats(StepRecord):
    """Per-sample dynamics (see :class:`StepRecord`), numeric failures and the wall-clock split.

    ``nonfinite_step``: the first step whose logits held NaN/inf, per sample (0: none). Such a
    sample stops there (nothing can be sampled from NaN) and the tokens it produced before are kept.
    """

    nonfinite_step: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    prefill_s: float = 0.0
    decode_s: float = 0.0


@dataclass
class DecodeOutput:
    """Generated token ids per sample (EOS included when produced) and the run's statistics."""

    sequences: list[list[int]]
    stats: DecodeStats
    pruned: PrunedCache | None = None
    controller: ValueController | None = field(default=None, repr=False)


@dataclass
class Prompt:
    """The processed prompt on the model's device, with its prefill positions."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor | None
    positions: torch.Tensor
    prefill_inputs: dict[str, torch.Tensor]

    def repeat_rows(self, repeats: int) -> Prompt:
        """Every sample ``repeats`` times in a row (after the prefill: the pixels are no longer needed)."""
        mask = self.attention_mask
        return Prompt(
            self.input_ids.repeat_interleave(repeats, dim=0),
            None if mask is None else mask.repeat_interleave(repeats, dim=0),
            self.positions.repeat_interleave(repeats, dim=1),
            {},
        )


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


def decode_one_token(
    adapter: ModelAdapter,
    tokens: torch.Tensor,
    positions: torch.Tensor,
    cache: Any,
    attention_mask: torch.Tensor | None,
) -> torch.Tensor:
    """One new token per sample (``[B]``) at ``positions`` (``[rows, B, 1]``); the next logits."""
    return adapter.forward(tokens[:, None], positions, cache, attention_mask)


def make_stepper(
    adapter: ModelAdapter,
    prompt: Prompt,
    cache: Any,
    vreason: VReasonSettings | None,
    *,
    max_new_tokens: int,
    track_entropy: bool,
    probe: GradientProbe | None,
) -> Stepper:
    """The plain stepper, or V-Reason's when it controls, prunes or records entropy."""
    video_positions = adapter.video_positions(prompt.input_ids)
    if vreason is None:
        vreason = VReasonSettings(vreason=False)
    if not (vreason.controls or vreason.prunes or track_entropy):
        video_counts = (video_positions != PAD).sum(dim=1).cpu()
        return Stepper(max_new_tokens, video_counts, prompt.attention_mask)
    return VReasonStepper(
        vreason,
        cache,
        video_positions,
        prompt.attention_mask,
        max_new_tokens=max_new_tokens,
        track_entropy=track_entropy,
        probe=probe,
    )


def _copy(generator: torch.Generator) -> torch.Generator:
    """An independent generator in the same state (every row of an lr grid draws as its run would)."""
    copy = torch.Generator(device=generator.device)
    copy.set_state(generator.get_state())
    return copy


def _to_host(*flags: torch.Tensor | None) -> list[list[int]]:
    """The step's one device-to-host copy: several ``[B]`` tensors in one transfer."""
    present = [f for f in flags if f is not None]
    values = torch.cat([f.long() for f in present]).tolist()
    batch = present[0].shape[0]
    rows = iter(values[i : i + batch] for i in range(0, len(values), batch))
    return [next(rows) if f is not None else [] for f in flags]


@torch.no_grad()
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
) -> DecodeOutput:
    """Generate up to ``settings.max_new_tokens`` tokens for a batch of processed inputs.

    Args:
        adapter: the model family's adapter.
        inputs: processor output (``input_ids``, ``attention_mask``, pixel values, grids, ...).
        settings: sampler settings and the token budget.
        vreason: controller/pruning settings; ``None`` runs the plain loop. With an ``lr_grid``, every
            request is decoded once per learning rate (rows ``b * G + g``), after one prefill.
        stopping: per-sample stop criteria (EOS, stop strings), applied to the generated ids.
        pad_token_id: filler for samples that already stopped (batch decoding).
        generators: one random generator per sample for sampled decoding (``None``: torch's global one).
        track_entropy: record entropy/EMA (for telemetry) even when the controller is off.
        probe: optional observer of raw logits and gradients.
    """
    started = time.perf_counter()
    prompt = prepare(adapter, inputs)
    max_new = settings.max_new_tokens
    cache = adapter.new_cache()
    logits = prefill(adapter, prompt, cache)
    stepper = make_stepper(
        adapter, prompt, cache, vreason, max_new_tokens=max_new, track_entropy=track_entropy, probe=probe
    )
    if (rows := stepper.rows_per_request) > 1:  # an lr grid: each request's rows continue side by side
        prompt, logits = prompt.repeat_rows(rows), logits.repeat_interleave(rows, dim=0)
        generators = None if generators is None else [_copy(g) for g in generators for _ in range(rows)]
    batch, prompt_len = prompt.input_ids.shape
    mask = stepper.attention_mask
    positions = prompt.positions[..., -1:]
    sampler = TokenSampler(settings, generators)
    stopping = stopping if stopping is not None else StoppingCriteriaList()
    ids = prompt.input_ids
    finished = torch.zeros(batch, dtype=torch.bool, device=ids.device)
    sequences: list[list[int]] = [[] for _ in range(batch)]
    active = [True] * batch
    nonfinite_step = torch.zeros(batch, dtype=torch.long)
    prefill_s, decode_started = 0.0, started

    for step in range(1, max_new + 1):
        if probe is not None:
            probe.on_logits(step, logits.detach().clone())
        finite_flags = stepper.after_logits(step, logits)
        broken = ~torch.isfinite(logits.detach()).all(dim=-1)  # NaN/inf weights or inputs: stop there
        tokens = torch.where(finished | broken, pad_token_id, sampler(ids, logits.detach(), broken))
        ids = torch.cat([ids, tokens[:, None]], dim=-1)
        finished = finished | broken
        if stopping:
            finished = finished | stopping(ids[:, prompt_len:], logits)
        token_list, stopped, failed, finite = _to_host(tokens, finished, broken, finite_flags)
        if step == 1:
            prefill_s, decode_started = time.perf_counter() - started, time.perf_counter()
        stepper.after_sync(step, finite, active)
        for b in range(batch):
            if active[b]:
                if failed[b]:
                    nonfinite_step[b] = step
                else:
                    sequences[b].append(token_list[b])
                active[b] = not stopped[b]
        if not any(active) or step == max_new:
            break
        positions = positions + 1
        if mask is not None:
            mask = torch.cat([mask, mask.new_ones(batch, 1)], dim=-1)
        with stepper.forward(step + 1):
            logits = decode_one_token(adapter, tokens, positions, cache, mask)

    if ids.device.type == "cuda":
        torch.cuda.synchronize(ids.device)
    record = stepper.record(step)
    stats = DecodeStats(
        **vars(record),
        nonfinite_step=nonfinite_step,
        prefill_s=prefill_s,
        decode_s=time.perf_counter() - decode_started,
    )
    return DecodeOutput(sequences, stats, pruned=stepper.pruned, controller=stepper.controller)
