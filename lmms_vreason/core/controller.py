"""The value-cache controller ΔV (docs/method.md §1.1-1.2, §1.6) and the cache layer that applies it.

ΔV lives on the last decoder layer's value cache at the video positions only. The cache keeps the
*controlled* values ``V_new = (V + ΔV) * ||V_ref|| / ||V + ΔV||`` in its video slice (rewritten after
every update, without autograd), so steps that do not optimise cost nothing extra. On an optimising
step the layer returns a copy whose video slice is the differentiable ``V_new(ΔV)``: autograd then
records only the last layer's attention, its MLP, the final norm and the LM head for one token, and
no graph reaches the cache, earlier layers or model parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

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


class ValueController:
    """ΔV for a batch of samples, each with its own AdamW state; one instance per batch.

    Every sample has its own ΔV leaf tensor, so "one optimiser per sample" (docs/method.md §1.6) holds
    exactly inside a batch: a sample whose step is skipped (non-finite entropy or gradient, or
    already finished) keeps its ΔV, moments and step count, while the others update. The AdamW
    over the per-sample leaves still runs as one multi-tensor step.

    Samples may control different numbers of video tokens (a ragged batch); ``positions`` rows are
    then right-padded with :data:`PAD`. Padding entries hold zero values, receive no gradient and
    are never written to the cache.

    Args:
        video_values: the original (never modified) last-layer values at the controlled positions,
            ``[B, kv_heads, N, head_dim]``, model dtype (anything at padding entries).
        positions: cache positions of those values, ``[B, N]`` (ascending, then :data:`PAD`).
        reference_norm: ``||V_ref||`` in the scope's shape; the norm of the unpruned video block
            (Lite) or ``None`` to use the norm of ``video_values`` (full V-Reason, Eq. 1).
        config: hyperparameters (lr, grad_clip, norm_scope).
        lrs: one learning rate per sample (an lr grid decoded as one batch); default ``config.lr``.
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
        # float32 for every real model (bf16/fp16/fp32), as docs/method.md §1 asks; float64 for a float64 model
        # so the gradient can be checked against float64 autograd at 1e-8.
        state_dtype = torch.promote_types(video_values.dtype, torch.float32)
        device = video_values.device
        self.positions = positions.to(device)
        self.valid = (self.positions != PAD)[:, None, :, None]
        self.base = video_values.detach().to(state_dtype) * self.valid
        self.reference_norm = (
            scope_norm(self.base, config.norm_scope)
            if reference_norm is None
            else reference_norm.to(state_dtype)
        )
        self.index = cache_index(self.positions, video_values)
        self.deltas = [
            torch.zeros_like(self.base[i : i + 1], requires_grad=True) for i in range(len(self.base))
        ]
        self.lrs = tuple(lrs) if lrs is not None else (config.lr,) * len(self.deltas)
        if len(self.lrs) != len(self.deltas):
            raise ValueError(f"{len(self.lrs)} learning rates for {len(self.deltas)} samples")
        # One parameter group per distinct lr (one group in a plain batch, one per lr in a grid).
        groups: dict[float, list[torch.Tensor]] = {}
        for lr, delta in zip(self.lrs, self.deltas, strict=True):
            groups.setdefault(lr, []).append(delta)
        self.optimizer = torch.optim.AdamW(
            [{"params": params, "lr": lr} for lr, params in groups.items()], weight_decay=0.0
        )

    @property
    def delta(self) -> torch.Tensor:
        """The whole batch's ΔV, ``[B, kv_heads, N, head_dim]`` (a detached copy)."""
        return torch.cat([d.detach() for d in self.deltas])

    @property
    def grad(self) -> torch.Tensor | None:
        """The whole batch's pending ΔV gradient (zeros for samples without one), or ``None``."""
        if all(d.grad is None for d in self.deltas):
            return None
        return torch.cat([torch.zeros_like(d) if d.grad is None else d.grad for d in self.deltas])

    @torch.no_grad()
    def load_delta(self, delta: torch.Tensor) -> None:
        """Set ΔV (``[B, kv_heads, N, head_dim]``), e.g. to decode with a fixed ΔV."""
        for i, d in enumerate(self.deltas):
            d.copy_(delta[i : i + 1] * self.valid[i : i + 1])

    def controlled_values(self) -> torch.Tensor:
        """``(V + ΔV) * ||V_ref|| / ||V + ΔV||`` in float32; exactly ``V`` when ΔV = 0 (full mode)."""
        shifted = self.base + torch.cat(self.deltas)
        norm = scope_norm(shifted, self.config.norm_scope)
        # Double where: a zero norm (padding entries, token scope) must not send 0/0 = NaN into the
        # backward pass of the branch that is not taken.
        nonzero = norm > 0
        scale = torch.where(nonzero, self.reference_norm / torch.where(nonzero, norm, 1.0), 1.0)
        return shifted * scale

    def _spliced(self, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The controlled positions of ``values`` as a mask, and ``V_new`` (zero at padding entries).

        Insertion is "zero the controlled positions, then add": padding entries (sent to position 0)
        add an exact zero, which a plain scatter could not promise for duplicate indices.
        """
        controlled = position_flags(self.positions, values.shape[2])[:, None, :, None]
        return controlled, (self.controlled_values() * self.valid).to(values.dtype)

    def insert(self, values: torch.Tensor) -> torch.Tensor:
        """``values`` with the controlled positions replaced by a differentiable ``V_new(ΔV)``."""
        controlled, new = self._spliced(values)
        return values.masked_fill(controlled, 0).scatter_add_(2, self.index, new)  # one copy of the cache

    @torch.no_grad()
    def write_back(self, values: torch.Tensor) -> None:
        """Store the current ``V_new`` into the cache tensor in place (no autograd)."""
        controlled, new = self._spliced(values)
        values.masked_fill_(controlled, 0).scatter_add_(2, self.index, new)

    def clip_and_measure(self) -> torch.Tensor:
        """Clip each sample's gradient to ``grad_clip`` (as ``clip_grad_norm_`` does per tensor).

        Returns per-sample pre-clip gradient norms, ``[B]`` (non-finite where the gradient is).
        """
        grads = [d.grad if d.grad is not None else torch.zeros_like(d) for d in self.deltas]
        norms = torch.stack([torch.linalg.vector_norm(g) for g in grads])
        coef = (self.config.grad_clip / (norms + 1e-6)).clamp(max=1.0)
        for i, g in enumerate(grads):
            g.mul_(coef[i])
        return norms

    def step(self, update: Sequence[bool] | None = None) -> None:
        """One AdamW step for the samples marked in ``update`` (default: all); clear all gradients.

        Samples not marked keep ΔV, moments and step count exactly (AdamW skips grad-less leaves).
        """
        if update is not None:
            for d, keep in zip(self.deltas, update, strict=True):
                if not keep:
                    d.grad = None
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def skip(self) -> None:
        """Drop this step's gradient without updating any sample."""
        self.optimizer.zero_grad(set_to_none=True)


class ControlledValueLayer(DynamicLayer):
    """A ``DynamicLayer`` whose values can pass through a :class:`ValueController` for one forward.

    Installed as the last layer of a ``DynamicCache``. Outside :meth:`differentiable` it behaves
    exactly like ``DynamicLayer`` (the cache already holds ``V_new``); inside, the attention of
    that forward sees the differentiable ``V_new(ΔV)``.
    """

    def __init__(self) -> None:
        super().__init__()
        self._insert: Callable[[torch.Tensor], torch.Tensor] | None = None

    @contextmanager
    def differentiable(self, controller: ValueController) -> Iterator[None]:
        """Within the block, autograd is on and this layer's values carry a graph to ΔV."""
        self._insert = controller.insert
        try:
            with torch.enable_grad():
                yield
        finally:
            self._insert = None

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        keys, values = super().update(key_states, value_states, *args, **kwargs)
        if self._insert is not None:
            values = self._insert(values)
        return keys, values


def with_controlled_last_layer(cache: DynamicCache) -> DynamicCache:
    """``cache`` with its last layer replaced by an (empty) :class:`ControlledValueLayer`."""
    cache.layers[-1] = ControlledValueLayer()
    return cache


def controlled_layer(cache: DynamicCache) -> ControlledValueLayer:
    """The last layer of a cache built with :func:`with_controlled_last_layer`."""
    layer = cache.layers[-1]
    if not isinstance(layer, ControlledValueLayer):
        raise TypeError(
            "the cache's last layer is not a ControlledValueLayer (see with_controlled_last_layer)"
        )
    return layer
