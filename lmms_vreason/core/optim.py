"""Per-row AdamW on one stacked tensor, on the device, masked (docs/method.md §1.6).

Every row of ΔV (a sample, or a sample at one lr of a grid) is its own optimisation problem with its
own learning rate, moments and step count; a row whose entropy or gradient is not finite, or that
has stopped, skips its update. ``torch.optim.AdamW`` keeps one state per parameter tensor and
decides on the host which tensors step, so the step would need a host decision and one leaf per
row. Here the state is stacked (``[rows, ...]``), the learning rates and step counts are device
tensors, and the skip is a mask: ``where(update, new, old)`` for every piece of state, so one
update is a fixed sequence of device ops with no host sync (it compiles and graph-captures as is).
The arithmetic is ``torch.optim.AdamW``'s (``amsgrad=False, maximize=False``), tested row by row
against it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def clip_rows(grad: torch.Tensor, max_norm: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row of ``grad`` clipped to ``max_norm`` as ``clip_grad_norm_`` clips one tensor.

    Returns ``(clipped, norms)``; ``norms`` are the pre-clip L2 norms per row, ``[rows]`` (non-finite
    where the row's gradient is).
    """
    norms = torch.linalg.vector_norm(grad.flatten(1), dim=1)
    coef = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    return grad * coef.view(-1, *([1] * (grad.dim() - 1))), norms


class RowAdamW:
    """AdamW state for a ``[rows, ...]`` parameter: moments, step counts and one lr per row.

    Args:
        param: the parameter (only its shape, dtype and device are used; it is passed to :meth:`step`).
        lrs: one learning rate per row.
        betas, eps, weight_decay: as ``torch.optim.AdamW`` (our default weight decay is 0:
            ``docs/method.md`` §1.6).
    """

    def __init__(
        self,
        param: torch.Tensor,
        lrs: Sequence[float],
        *,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        if len(lrs) != param.shape[0]:
            raise ValueError(f"{len(lrs)} learning rates for {param.shape[0]} rows")
        self.betas = betas
        self.eps = eps
        self.weight_decay = weight_decay
        shape = (-1, *([1] * (param.dim() - 1)))
        self.lrs: tuple[float, ...] = tuple(float(lr) for lr in lrs)
        """The learning rate of every row, as given."""
        self.lr = torch.tensor(list(lrs), dtype=param.dtype, device=param.device).view(shape)
        self.exp_avg = torch.zeros_like(param)
        self.exp_avg_sq = torch.zeros_like(param)
        self.steps = torch.zeros(param.shape[0], dtype=param.dtype, device=param.device)
        """Updates taken per row (float, as ``torch.optim`` keeps a capturable step)."""

    @torch.no_grad()
    def step(self, param: torch.Tensor, grad: torch.Tensor, update: torch.Tensor) -> None:
        """One AdamW step, in place, for the rows where ``update`` (``[rows]`` bool) is set.

        The other rows keep parameter, moments and step count exactly, whatever their gradient
        holds (NaN included: ``where`` never reads the discarded branch into the result).
        """
        beta1, beta2 = self.betas
        on = update.view(self.lr.shape)
        steps = self.steps + update.to(self.steps.dtype)
        exp_avg = torch.where(on, torch.lerp(self.exp_avg, grad, 1 - beta1), self.exp_avg)
        exp_avg_sq = torch.where(on, self.exp_avg_sq * beta2 + (1 - beta2) * (grad * grad), self.exp_avg_sq)
        # Bias corrections in float64, as torch.optim computes them (Python floats): 1 - 0.999**t in
        # float32 loses five digits to cancellation.
        t = steps.clamp(min=1).view(self.lr.shape).double()
        bias_correction1 = (1 - beta1**t).to(param.dtype)
        bias_correction2_sqrt = (1 - beta2**t).sqrt().to(param.dtype)
        step_size = self.lr / bias_correction1
        denom = exp_avg_sq.sqrt() / bias_correction2_sqrt + self.eps
        decayed = param * (1 - self.lr * self.weight_decay)
        param.copy_(torch.where(on, decayed - step_size * (exp_avg / denom), param))
        self.exp_avg.copy_(exp_avg)
        self.exp_avg_sq.copy_(exp_avg_sq)
        self.steps.copy_(steps)
