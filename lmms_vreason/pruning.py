"""V-Reason (Lite) pruning (SPEC §2, Algorithm 2): drop low value-norm video tokens from the KV cache.

After prefill, every video token is scored by the mean L2 norm of its value vectors over all layers
and KV heads; the top ``keep_ratio`` per sample stay, the rest leave the keys and values of **all**
layers. Later tokens keep their original RoPE positions (the decode loop tracks positions itself)
and attend over the shorter cache, so pruning equals masking the dropped positions out of attention.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from transformers import DynamicCache

from lmms_vreason.config import NormScope
from lmms_vreason.controller import scope_norm


@dataclass
class PrunedCache:
    """What pruning did, per sample (the cache itself is modified in place).

    Attributes:
        keep_index: original cache positions kept, ``[B, L']`` (sorted).
        kept_video_positions: positions of the kept video tokens in the *pruned* cache, ``[B, N']``.
        dropped_positions: original positions of the dropped video tokens, ``[B, N - N']``.
        scores: the value-norm score of every video token, ``[B, N]``.
        reference_norm: norm of the unpruned last-layer video values in the controller's scope,
            restricted to the kept tokens for ``token`` scope (the Lite rescale target).
        attention_mask: the 2D mask restricted to kept positions (``None`` if none was given).
        kv_bytes_before / kv_bytes_after: bytes held by all layers' keys and values.
    """

    keep_index: torch.Tensor
    kept_video_positions: torch.Tensor
    dropped_positions: torch.Tensor
    scores: torch.Tensor
    reference_norm: torch.Tensor
    attention_mask: torch.Tensor | None
    kv_bytes_before: int
    kv_bytes_after: int


def cache_bytes(cache: DynamicCache) -> int:
    """Bytes held by the keys and values of every layer of ``cache``."""
    total = 0
    for layer in cache.layers:
        if getattr(layer, "keys", None) is not None and layer.keys.numel():
            total += layer.keys.numel() * layer.keys.element_size()
            total += layer.values.numel() * layer.values.element_size()
    return total


def video_token_scores(cache: DynamicCache, video_positions: torch.Tensor) -> torch.Tensor:
    """Mean over layers and KV heads of each video token's value-vector L2 norm, ``[B, N]``."""
    total = None
    for layer in cache.layers:
        values = layer.values
        pos = video_positions.to(values.device)  # layers may sit on different GPUs (device_map)
        index = pos[:, None, :, None].expand(values.shape[0], values.shape[1], -1, values.shape[3])
        norms = torch.linalg.vector_norm(values.gather(2, index).float(), dim=-1).mean(dim=1)
        norms = norms.to(video_positions.device)
        total = norms if total is None else total + norms
    assert total is not None
    return total / len(cache.layers)


def keep_count(n_video: int, keep_ratio: float) -> int:
    """Video tokens kept: ``keep_ratio * N`` rounded half up, at least one."""
    return max(1, min(n_video, math.floor(keep_ratio * n_video + 0.5)))


@torch.no_grad()
def prune_video_tokens(
    cache: DynamicCache,
    video_positions: torch.Tensor,
    keep_ratio: float,
    *,
    attention_mask: torch.Tensor | None = None,
    scope: NormScope = "block",
) -> PrunedCache:
    """Drop the lowest-scoring video tokens from every layer of ``cache`` (in place)."""
    batch, n_video = video_positions.shape
    seq_len = cache.layers[0].keys.shape[2]
    device = video_positions.device
    before = cache_bytes(cache)
    scores = video_token_scores(cache, video_positions)
    n_keep = keep_count(n_video, keep_ratio)
    top = scores.topk(n_keep, dim=1).indices.sort(dim=1).values
    kept_video = video_positions.gather(1, top)
    keep_mask = torch.ones(batch, seq_len, dtype=torch.bool, device=device)
    keep_mask.scatter_(1, video_positions, False)
    keep_mask.scatter_(1, kept_video, True)
    order = torch.arange(seq_len, device=device).expand(batch, -1)
    keep_index = (
        torch.where(keep_mask, order, order + seq_len).sort(dim=1).values[:, : seq_len - n_video + n_keep]
    )
    dropped = torch.where(~keep_mask, order, order + seq_len).sort(dim=1).values[:, : n_video - n_keep]

    last = cache.layers[-1].values
    v_pos = video_positions.to(last.device)
    v_index = v_pos[:, None, :, None].expand(batch, last.shape[1], -1, last.shape[3])
    reference = scope_norm(last.gather(2, v_index).to(torch.promote_types(last.dtype, torch.float32)), scope)
    if scope == "token":
        reference = reference.gather(2, top.to(reference.device)[:, None, :, None])

    for layer in cache.layers:
        keep = keep_index.to(layer.keys.device)
        index = keep[:, None, :, None].expand(batch, layer.keys.shape[1], -1, layer.keys.shape[3])
        layer.keys = layer.keys.gather(2, index)
        layer.values = layer.values.gather(2, index)

    # Where each kept video token sits in the pruned cache.
    new_pos = torch.searchsorted(keep_index, kept_video)
    mask = None if attention_mask is None else attention_mask.gather(1, keep_index)
    return PrunedCache(
        keep_index=keep_index,
        kept_video_positions=new_pos,
        dropped_positions=dropped,
        scores=scores,
        reference_norm=reference,
        attention_mask=mask,
        kv_bytes_before=before,
        kv_bytes_after=cache_bytes(cache),
    )
