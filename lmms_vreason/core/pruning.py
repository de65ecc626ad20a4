"""V-Reason (Lite) pruning (docs/method.md §2, Algorithm 2): drop low value-norm video tokens from the KV cache.

After prefill, every video token is scored by the mean L2 norm of its value vectors over all
key/value layers and KV heads; the top ``keep_ratio`` per sample stay, the rest leave the keys and values of **all**
layers. Later tokens keep their original RoPE positions (the decode loop tracks positions itself)
and attend over the shorter cache, so pruning equals masking the dropped positions out of attention.

On a hybrid model (Qwen3.5) "key/value layers" are its full-attention layers (:func:`kv_layers`):
its linear-attention layers hold no per-token state (the prefill folded the video into their
recurrent states), so they are neither scored nor pruned, and pruning equals masking the dropped
positions in the full-attention layers only (docs/method.md §2, "Hybrid attention").
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
from transformers import DynamicCache

from lmms_vreason.core.controller import scope_norm
from lmms_vreason.core.ragged import PAD, cache_index, packed_positions, position_flags
from lmms_vreason.core.rows import RowLayout
from lmms_vreason.core.settings import NormScope


@dataclass
class PrunedCache:
    """What pruning keeps, per sample (:func:`plan_pruning`; :func:`apply_pruning` or the decode loop's
    preallocated cache carries it out).

    Samples of a batch may hold different numbers of video tokens, so after pruning they may hold
    different numbers of cache positions. The pruned cache has the longest sample's length; shorter
    samples start with padding slots (which copy position 0 and are masked out of attention), the
    way a left-padded batch starts with pad tokens. Per-sample position lists are right-padded with
    :data:`lmms_vreason.core.ragged.PAD`.

    Attributes:
        keep_index: original cache position held by every slot of the pruned cache, ``[B, L']``
            (ascending after the leading padding slots, which hold 0).
        kept_video_positions: slots of the kept video tokens in the *pruned* cache, ``[B, N']``.
        dropped_positions: original positions of the dropped video tokens, ``[B, N - N']``.
        video_counts / kept_counts: video tokens per sample before / after pruning, ``[B]``.
        scores: the value-norm score of every video token, ``[B, N]`` (NaN at padding).
        reference_norm: norm of the unpruned last-layer video values in the controller's scope,
            restricted to the kept tokens for ``token`` scope (the Lite rescale target).
        attention_mask: the 2D mask over the pruned cache: the given mask at the kept positions,
            0 at padding slots. ``None`` only if no mask was given and no sample needs padding.
        kv_bytes_before / kv_bytes_after: bytes held by all layers' keys and values.
    """

    keep_index: torch.Tensor
    kept_video_positions: torch.Tensor
    dropped_positions: torch.Tensor
    video_counts: torch.Tensor
    kept_counts: torch.Tensor
    scores: torch.Tensor
    reference_norm: torch.Tensor
    attention_mask: torch.Tensor | None
    kv_bytes_before: int
    kv_bytes_after: int

    def for_rows(self, layout: RowLayout) -> PrunedCache:
        """Every request's record repeated for each of its rows (its cache copied for an lr grid)."""
        changes = {
            f.name: layout.expand(getattr(self, f.name))
            for f in dataclasses.fields(self)
            if isinstance(getattr(self, f.name), torch.Tensor)
        }
        return dataclasses.replace(self, **changes)


def cache_bytes(cache: DynamicCache) -> int:
    """Bytes held by the keys and values of every layer of ``cache``."""
    total = 0
    for layer in kv_layers(cache):
        if layer.keys.numel():
            total += layer.keys.numel() * layer.keys.element_size()
            total += layer.values.numel() * layer.values.element_size()
    return total


def video_token_scores(cache: DynamicCache, video_positions: torch.Tensor) -> torch.Tensor:
    """Mean over layers and KV heads of each video token's value-vector L2 norm, ``[B, N]`` (NaN at pads)."""
    valid = video_positions != PAD
    total = None
    layers = kv_layers(cache)
    for layer in layers:
        values = layer.values.gather(2, cache_index(video_positions, layer.values))
        norms = torch.linalg.vector_norm(values.float(), dim=-1).mean(dim=1)
        norms = norms.to(video_positions.device)
        total = norms if total is None else total + norms
    assert total is not None
    return (total / len(layers)).masked_fill(~valid, math.nan)


def keep_count(n_video: int, keep_ratio: float) -> int:
    """Video tokens kept: ``keep_ratio * N`` rounded half up, at least one (none of none)."""
    if n_video <= 0:
        return 0
    return max(1, min(n_video, math.floor(keep_ratio * n_video + 0.5)))


def _gather_rows(source: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``source.gather(1, index)`` where :data:`PAD` entries of ``index`` stay :data:`PAD`."""
    return source.gather(1, index.clamp(min=0)).masked_fill(index == PAD, PAD)


def kv_layers(cache: DynamicCache) -> list:
    """The layers of ``cache`` that hold per-token keys and values (not linear-attention states)."""
    return [layer for layer in cache.layers if getattr(layer, "keys", None) is not None]


@torch.no_grad()
def plan_pruning(
    cache: DynamicCache,
    video_positions: torch.Tensor,
    keep_ratio: float,
    *,
    attention_mask: torch.Tensor | None = None,
    scope: NormScope = "block",
) -> PrunedCache:
    """Which cache positions every sample keeps after dropping its lowest-scoring video tokens.

    Reads ``cache`` and changes nothing: :func:`apply_pruning` (or the decode loop's copy into its
    preallocated cache, which gathers ``keep_index`` directly) carries the plan out.

    Args:
        cache: the prefilled cache; every key/value layer holds ``[B, H, L, D]`` keys and values.
        video_positions: cache positions of each sample's video tokens, ``[B, N]``, ascending,
            right-padded with :data:`PAD` (see :meth:`ModelAdapter.video_positions`).
        keep_ratio: share of each sample's video tokens that stays (:func:`keep_count`).
        attention_mask: the 2D prefill mask, ``[B, L]``, if the batch is padded.
        scope: the controller's norm scope, for the rescale target.
    """
    layers = kv_layers(cache)
    batch, width = video_positions.shape
    seq_len = layers[0].keys.shape[2]
    device = video_positions.device
    before = cache_bytes(cache)
    valid = video_positions != PAD
    video_counts = valid.sum(dim=1)
    scores = video_token_scores(cache, video_positions)

    # Per-sample top-k over each sample's own video tokens (k differs between samples).
    kept_counts = torch.tensor(
        [keep_count(int(n), keep_ratio) for n in video_counts.tolist()], dtype=torch.long, device=device
    )
    top = scores.masked_fill(~valid, -math.inf).topk(int(kept_counts.max()), dim=1).indices
    chosen = torch.arange(top.shape[1], device=device) < kept_counts[:, None]
    kept_flags = torch.zeros(batch, width, dtype=torch.bool, device=device).scatter_(1, top, chosen)
    kept_in_video = packed_positions(kept_flags)  # index into each sample's video-token list
    kept_original = _gather_rows(video_positions, kept_in_video)

    is_video = position_flags(video_positions, seq_len)
    keep_flags = ~is_video | position_flags(kept_original, seq_len)
    kept_len = keep_flags.sum(dim=1)
    new_len = int(kept_len.max())
    lead = new_len - kept_len  # padding slots in front of each shorter sample
    slots = torch.arange(new_len, device=device) - lead[:, None]
    real_slot = slots >= 0
    keep_index = packed_positions(keep_flags).gather(1, slots.clamp(min=0)).masked_fill(~real_slot, 0)
    dropped = packed_positions(is_video & ~keep_flags)
    slot_of_position = keep_flags.long().cumsum(dim=1) - 1 + lead[:, None]
    kept_slots = _gather_rows(slot_of_position, kept_original)

    last = layers[-1].values
    video_values = last.gather(2, cache_index(video_positions, last))
    video_values = video_values.to(torch.promote_types(last.dtype, torch.float32))
    video_values = video_values * valid.to(last.device)[:, None, :, None]  # pads add nothing to a norm
    reference = scope_norm(video_values, scope)
    if scope == "token":
        reference = reference.gather(2, cache_index(kept_in_video, reference))

    mask = None
    if attention_mask is not None or bool((lead > 0).any()):
        full = attention_mask if attention_mask is not None else torch.ones_like(keep_flags, dtype=torch.long)
        mask = full.gather(1, keep_index).masked_fill(~real_slot, 0)
    return PrunedCache(
        keep_index=keep_index,
        kept_video_positions=kept_slots,
        dropped_positions=dropped,
        video_counts=video_counts,
        kept_counts=kept_counts,
        scores=scores,
        reference_norm=reference,
        attention_mask=mask,
        kv_bytes_before=before,
        kv_bytes_after=before * new_len // seq_len,
    )


@torch.no_grad()
def apply_pruning(cache: DynamicCache, pruned: PrunedCache) -> None:
    """Keep only ``pruned.keep_index``'s positions in every key/value layer of ``cache`` (in place)."""
    for layer in kv_layers(cache):
        index = cache_index(pruned.keep_index, layer.keys)
        layer.keys = layer.keys.gather(2, index)
        layer.values = layer.values.gather(2, index)


def prune_video_tokens(
    cache: DynamicCache,
    video_positions: torch.Tensor,
    keep_ratio: float,
    *,
    attention_mask: torch.Tensor | None = None,
    scope: NormScope = "block",
) -> PrunedCache:
    """Drop the lowest-scoring video tokens from every key/value layer of ``cache`` (in place):
    :func:`plan_pruning`, then :func:`apply_pruning`."""
    pruned = plan_pruning(cache, video_positions, keep_ratio, attention_mask=attention_mask, scope=scope)
    apply_pruning(cache, pruned)
    return pruned
