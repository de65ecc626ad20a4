"""The entropy objective of V-Reason (docs/method.md §1.3-1.5): entropy, its EMA, and the switch coefficient α.

Everything is per sample (leading batch dimension) and stays on the device: the decode loop never
waits on the host for these values, they are read back once per sample for telemetry.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from lmms_vreason.core.settings import Objective


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Shannon entropy (nats) of ``softmax(logits)`` over the last dimension, in at least float32.

    Always computed from the model's raw logits, before temperature or any other processor, so the
    objective does not depend on the sampler (docs/method.md §1.3). Differentiable. A float64 model keeps
    float64 (that is what lets the gradient tests demand 1e-8 agreement).
    """
    logp = torch.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), dim=-1)
    return -(logp.exp() * logp).sum(dim=-1)


class EntropyTracker:
    """EMA of the per-step entropy, its running peak, and the switch coefficient α (Eq. 3-4).

    ``E_1 = H_1`` (the token sampled from the prefill logits); ``E_t = β E_{t-1} + (1-β) H_t``;
    ``α_t = +1`` if ``E_t >= max(E_1..E_{t-1})`` else ``-1``. ``min_entropy``/``max_entropy`` fix α
    to -1/+1 (Table 4). A non-finite entropy leaves the EMA and peak unchanged for that sample (it
    is counted and its update skipped by the caller); a sample whose first entropies are not finite
    starts its EMA at its first finite one.
    """

    def __init__(self, batch_size: int, beta: float, objective: Objective, device: torch.device) -> None:
        self.beta = beta
        self.objective = objective
        self.ema = torch.zeros(batch_size, dtype=torch.float32, device=device)
        self.peak = torch.full((batch_size,), float("-inf"), dtype=torch.float32, device=device)
        self.started = torch.zeros(batch_size, dtype=torch.bool, device=device)
        self.steps = 0

    def observe(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Feed ``H_t`` (shape ``[B]``) for the next step; returns ``(E_t, α_t)`` (α = 0 at t = 1)."""
        h = h.detach().float()
        finite = torch.isfinite(h)
        blended = torch.where(self.started, self.beta * self.ema + (1.0 - self.beta) * h, h)
        ema = torch.where(finite, blended, self.ema)
        if self.steps == 0:
            alpha = torch.zeros_like(h)
        elif self.objective == "switch":
            alpha = torch.where(ema >= self.peak, 1.0, -1.0)
        elif self.objective == "max_entropy":
            alpha = torch.ones_like(h)
        else:
            alpha = -torch.ones_like(h)
        self.peak = torch.where(finite, torch.maximum(self.peak, ema), self.peak)
        self.started = self.started | finite
        self.ema = ema
        self.steps += 1
        return ema, alpha


def replay(
    entropy: Sequence[float], beta: float, objective: Objective = "switch"
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(E_t, α_t)`` for every step of one recorded entropy series, as :class:`EntropyTracker` gave them.

    For the analysis of telemetry (an EMA a row did not record, the α a baseline run would have
    used): the tracker itself runs step by step, so analysis and decoding cannot disagree on the
    rule (float32, α = 0 at t = 1, non-finite entropies skipped). Returns two float32 ``[T]`` tensors.
    """
    tracker = EntropyTracker(1, beta, objective, torch.device("cpu"))
    ema = torch.empty(len(entropy), dtype=torch.float32)
    alpha = torch.empty(len(entropy), dtype=torch.float32)
    for t, h in enumerate(torch.as_tensor(list(entropy), dtype=torch.float32).reshape(-1, 1)):
        e, a = tracker.observe(h)
        ema[t], alpha[t] = e[0], a[0]
    return ema, alpha


def switch_loss(h: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """``L = -Σ_b α_b H_b``: each sample's gradient is that of its own ``-α H`` (Eq. 2)."""
    return -(alpha.detach() * h).sum()
