"""The value-cache controller ΔV (SPEC §1.1-1.2, §1.6) and the cache layer that applies it.

ΔV lives on the last decoder layer's value cache at the video positions only. The cache keeps the
*controlled* values ``V_new = (V + ΔV) * ||V_ref|| / ||V + ΔV||`` in its video slice (rewritten after
every update, without autograd), so steps that do not optimise cost nothing extra. On an optimising
step the layer returns a copy whose video slice is the differentiable ``V_new(ΔV)``: autograd then
records only the last layer's attention, its MLP, the final norm and the LM head for one token, and
no graph reaches the cache, earlier layers or model parameters.
"""

from __future__ import annotations

import torch
from transformers.cache_utils import DynamicLayer

from lmms_vreason.config import NormScope, VReasonConfig

_SCOPE_DIMS: dict[str, tuple[int, ...]] = {
    # values are [B, kv_heads, tokens, head_dim]
    "block": (1, 2, 3),  # one norm per sample over the whole video block
    "head": (2, 3),  # one norm per KV head
    "token": (1, 3),  # one norm per video token (over its heads and dims)
}


def scope_norm(values: torch.Tensor, scope: NormScope) -> torch.Tensor:
    """L2 norm of ``values`` ([B, H, N, D]) over the dimensions of ``scope``, kept for broadcasting."""
    return torch.linalg.vector_norm(values, dim=_SCOPE_DIMS[scope], keepdim=True)


class ValueController:
    """ΔV for a batch of samples, with its AdamW optimiser; one instance per batch of samples.

    Args:
        video_values: the original (never modified) last-layer values at the controlled positions,
            ``[B, kv_heads, N, head_dim]``, model dtype.
        positions: cache positions of those values, ``[B, N]`` (sorted).
        reference_norm: ``||V_ref||`` in the scope's shape; the norm of the unpruned video block
            (Lite) or ``None`` to use the norm of ``video_values`` (full V-Reason, Eq. 1).
        config: hyperparameters (lr, grad_clip, norm_scope).
    """

    def __init__(
        self,
        video_values: torch.Tensor,
        positions: torch.Tensor,
        config: VReasonConfig,
        reference_norm: torch.Tensor | None = None,
    ) -> None:
        self.config = config
        # float32 for every real model (bf16/fp16/fp32), as SPEC §1 asks; float64 for a float64 model
        # so the gradient can be checked against float64 autograd at 1e-8.
        state_dtype = torch.promote_types(video_values.dtype, torch.float32)
        self.base = video_values.detach().to(state_dtype)
        self.reference_norm = (
            scope_norm(self.base, config.norm_scope)
            if reference_norm is None
            else reference_norm.to(state_dtype)
        )
        b, h, _, d = video_values.shape
        self.index = positions.to(video_values.device)[:, None, :, None].expand(b, h, -1, d)
        self.delta = torch.zeros_like(self.base, requires_grad=True)
        self.optimizer = torch.optim.AdamW([self.delta], lr=config.lr, weight_decay=0.0)

    def controlled_values(self) -> torch.Tensor:
        """``(V + ΔV) * ||V_ref|| / ||V + ΔV||`` in float32; exactly ``V`` when ΔV = 0 (full mode)."""
        shifted = self.base + self.delta
        norm = scope_norm(shifted, self.config.norm_scope)
        scale = torch.where(norm > 0, self.reference_norm / norm, torch.ones_like(norm))
        return shifted * scale

    def insert(self, values: torch.Tensor) -> torch.Tensor:
        """``values`` with the controlled positions replaced by a differentiable ``V_new(ΔV)``."""
        return values.scatter(2, self.index, self.controlled_values().to(values.dtype))

    @torch.no_grad()
    def write_back(self, values: torch.Tensor) -> None:
        """Store the current ``V_new`` into the cache tensor in place (no autograd)."""
        values.scatter_(2, self.index, self.controlled_values().to(values.dtype))

    def clip_and_measure(self) -> torch.Tensor:
        """Clip each sample's gradient to ``grad_clip`` (as ``clip_grad_norm_`` does per tensor).

        Returns per-sample pre-clip gradient norms (non-finite where the gradient is).
        """
        grad = self.delta.grad
        norms = torch.linalg.vector_norm(grad.flatten(1), dim=1)
        coef = (self.config.grad_clip / (norms + 1e-6)).clamp(max=1.0)
        grad.mul_(coef.view(-1, 1, 1, 1))
        return norms

    def step(self) -> None:
        """One AdamW step on ΔV (gradient already clipped), then clear the gradient."""
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def skip(self) -> None:
        """Drop this step's gradient without updating (non-finite entropy or gradient)."""
        self.optimizer.zero_grad(set_to_none=True)


class ControlledValueLayer(DynamicLayer):
    """A ``DynamicLayer`` whose values pass through a :class:`ValueController` when optimising.

    Installed as the last layer of a ``DynamicCache``. Outside an optimising step it behaves exactly
    like ``DynamicLayer`` (the cache already holds ``V_new``).
    """

    def __init__(self) -> None:
        super().__init__()
        self.controller: ValueController | None = None
        self.differentiable = False

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        keys, values = super().update(key_states, value_states, *args, **kwargs)
        if self.differentiable and self.controller is not None:
            values = self.controller.insert(values)
        return keys, values
