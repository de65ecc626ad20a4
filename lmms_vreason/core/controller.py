"""The value-cache controller ΔV (docs/method.md §1.1-1.2, §1.6): Eq. 1, its splice into a value tensor,
and its per-row update.

ΔV lives on the last decoder layer's value cache at the video positions only. The controller knows
a value tensor ``[rows, kv_heads, length, head_dim]`` and the positions it controls in it, nothing
of the cache that holds the tensor. The cache keeps the *controlled* values
``V_new = (V + ΔV) * ||V_ref|| / ||V + ΔV||`` at those positions (rewritten in place after every
update, without autograd), so steps that do not optimise cost nothing extra. On an optimising step
the last layer attends to :meth:`ValueController.insert`'s copy, whose controlled positions are the
differentiable ``V_new(ΔV)``: autograd then records only the last layer's attention, its MLP, the
final norm and the LM head for one token, and no graph reaches the cache, earlier layers or model
parameters.

The update is device-only (:meth:`ValueController.apply_gradient`): per-row clipping, a finite check
and a masked per-row AdamW (:class:`~lmms_vreason.core.optim.RowAdamW`), so a skipped row needs no
host decision and the whole update compiles and graph-captures as it is.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from lmms_vreason.core.optim import RowAdamW, clip_rows
from lmms_vreason.core.ragged import PAD, cache_index, position_flags
from lmms_vreason.core.settings import NormScope, VReasonSettings

_SCOPE_DIMS: dict[str, tuple[int, ...]] = {
    # values are [B, kv_heads, tokens, head_dim]
    "block": (1, 2, 3),  # one norm per sample over the whole video block
    "head": (2, 3),  # one norm per KV head
    "token": (1, 3),  # one norm per video token (over its heads and dims)
}


def scope_norm(values: torch.Tensor, scope: NormScope) -> torch.Tensor:
    """L2 norm of ``values`` ([B, H, N, D]) over the dimensions of ``scope``, kept for broadcasting."""
    return torch.linalg.vector_norm(values, dim=_SCOPE_DIMS[scope], keepdim=True)


def norm_preserving(shifted: torch.Tensor, reference_norm: torch.Tensor, scope: NormScope) -> torch.Tensor:
    """Eq. 1's rescale: ``shifted * ||V_ref|| / ||shifted||`` per ``scope``; 1 where the norm is 0.

    Double where: a zero norm (padding entries, token scope) must not send 0/0 = NaN into the
    backward pass of the branch that is not taken.
    """
    norm = scope_norm(shifted, scope)
    nonzero = norm > 0
    return shifted * torch.where(nonzero, reference_norm / torch.where(nonzero, norm, 1.0), 1.0)


class ValueController:
    """ΔV for every row of a batch, each row with its own lr and AdamW state; one instance per batch.

    Rows may control different numbers of video tokens (a ragged batch); ``positions`` rows are
    then right-padded with :data:`PAD`. Padding entries hold zero values, receive no gradient, never
    move and are never written to the cache.

    Args:
        video_values: the original (never modified) last-layer values at the controlled positions,
            ``[rows, kv_heads, N, head_dim]``, model dtype (anything at padding entries).
        positions: positions of those values in the value tensor the controller is spliced into,
            ``[rows, N]`` (ascending, then :data:`PAD`).
        config: hyperparameters (lr, grad_clip, norm_scope).
        reference_norm: ``||V_ref||`` in the scope's shape; the norm of the unpruned video block
            (Lite) or ``None`` to use the norm of ``video_values`` (full V-Reason, Eq. 1).
        lrs: one learning rate per row (an lr grid decoded as one batch); default ``config.lr``.
    """

    def __init__(
        self,
        video_values: torch.Tensor,
        positions: torch.Tensor,
        config: VReasonSettings,
        reference_norm: torch.Tensor | None = None,
        lrs: Sequence[float] | None = None,
    ) -> None:
        self.config = config
        self.scope: NormScope = config.norm_scope
        # float32 for every real model (bf16/fp16/fp32), as docs/method.md §1 asks; float64 for a float64
        # model so the gradient can be checked against float64 autograd at 1e-8.
        state_dtype = torch.promote_types(video_values.dtype, torch.float32)
        device = video_values.device
        self.positions = positions.to(device)
        self.valid = (self.positions != PAD)[:, None, :, None]
        self.base = video_values.detach().to(state_dtype) * self.valid
        self.reference_norm = (
            scope_norm(self.base, self.scope) if reference_norm is None else reference_norm.to(state_dtype)
        )
        self.index = cache_index(self.positions, video_values)
        self.delta = torch.zeros_like(self.base)
        """ΔV, ``[rows, kv_heads, N, head_dim]`` (zero at padding entries)."""
        rows = len(self.base)
        self.optimizer = RowAdamW(self.delta, tuple(lrs) if lrs is not None else (config.lr,) * rows)

    @property
    def lrs(self) -> tuple[float, ...]:
        """The learning rate of every row."""
        return self.optimizer.lrs

    @torch.no_grad()
    def load_delta(self, delta: torch.Tensor) -> None:
        """Set ΔV (``[rows, kv_heads, N, head_dim]``), e.g. to decode with a fixed ΔV."""
        self.delta.copy_(delta * self.valid)

    def controlled_values(self, delta: torch.Tensor | None = None) -> torch.Tensor:
        """``(V + ΔV) * ||V_ref|| / ||V + ΔV||`` (state dtype, zero at padding); exactly ``V`` when ΔV = 0
        (full mode). ``delta`` defaults to the current ΔV; pass a leaf to differentiate."""
        shifted = self.base + (self.delta if delta is None else delta)
        return norm_preserving(shifted, self.reference_norm, self.scope) * self.valid

    def flags(self, length: int) -> torch.Tensor:
        """The controlled positions of a value tensor of ``length`` positions, ``[rows, 1, length, 1]``."""
        return position_flags(self.positions, length)[:, None, :, None]

    def insert(self, values: torch.Tensor, delta: torch.Tensor | None = None) -> torch.Tensor:
        """``values`` with the controlled positions replaced by ``V_new(delta)`` (one copy; differentiable).

        Insertion is "zero the controlled positions, then add": padding entries (sent to position 0)
        add an exact zero, which a plain scatter could not promise for duplicate indices.
        """
        new = self.controlled_values(delta).to(values.dtype)
        return values.masked_fill(self.flags(values.shape[2]), 0).scatter_add(2, self.index, new)

    @torch.no_grad()
    def write_back(self, values: torch.Tensor) -> None:
        """Store the current ``V_new`` into ``values`` in place (no autograd)."""
        new = self.controlled_values().to(values.dtype)
        values.masked_fill_(self.flags(values.shape[2]), 0).scatter_add_(2, self.index, new)

    @torch.no_grad()
    def apply_gradient(
        self, grad: torch.Tensor, active: torch.Tensor, entropy: torch.Tensor, values: torch.Tensor
    ) -> torch.Tensor:
        """One update from the gradient of step's loss, on the device; ``V_new`` rewritten into ``values``.

        Each row's gradient is clipped to ``grad_clip`` (as ``clip_grad_norm_`` clips one tensor);
        a row steps only if it is ``active`` (still generating) and its entropy and gradient are
        finite. Returns which rows stepped, ``[rows]`` bool.
        """
        clipped, norms = clip_rows(grad, self.config.grad_clip)
        update = active & torch.isfinite(entropy) & torch.isfinite(norms)
        self.optimizer.step(self.delta, clipped, update)
        self.write_back(values)
        return update
