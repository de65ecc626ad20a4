"""Ragged per-sample position lists packed into one padded tensor.

Samples of a batch can hold different numbers of video tokens (different lengths or frame counts),
so per-sample position lists are packed into ``[B, M]`` tensors (``M`` = the longest list), padded
with :data:`PAD` on the right; the padding never names a real position.
"""

from __future__ import annotations

import torch

PAD = -1
"""Filler of packed position rows past a sample's own count."""


def packed_positions(flags: torch.Tensor) -> torch.Tensor:
    """Positions where ``flags`` ([B, L] bool) is set, ascending per row, right-padded with :data:`PAD`."""
    length = flags.shape[1]
    counts = flags.sum(dim=1)
    width = int(counts.max()) if flags.shape[0] else 0
    order = torch.arange(length, device=flags.device).expand_as(flags)
    packed = torch.where(flags, order, order + length).sort(dim=1).values[:, :width]
    filled = torch.arange(width, device=flags.device) < counts[:, None]
    return packed.masked_fill(~filled, PAD)


def position_flags(positions: torch.Tensor, length: int) -> torch.Tensor:
    """Inverse of :func:`packed_positions`: ``[B, length]`` bool, set at every non-pad position."""
    valid = positions != PAD
    counts = torch.zeros(positions.shape[0], length, dtype=torch.long, device=positions.device)
    # scatter_add (not scatter) so the pads, all sent to index 0 with weight 0, cannot overwrite it.
    counts.scatter_add_(1, positions.clamp(min=0), valid.long())
    return counts > 0


def cache_index(positions: torch.Tensor, cache_tensor: torch.Tensor) -> torch.Tensor:
    """Gather/scatter index selecting ``positions`` ([B, N]) along the sequence of a ``[B, H, L, D]`` tensor.

    On the tensor's device (layers may sit on different GPUs with ``device_map``). :data:`PAD`
    entries point at position 0; callers mask what they gather there.
    """
    b, h, _, d = cache_tensor.shape
    return positions.clamp(min=0).to(cache_tensor.device)[:, None, :, None].expand(b, h, -1, d)
