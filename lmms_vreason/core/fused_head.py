"""The LM head, the entropy and the entropy's gradient to the head's input, in one pass over the weight.

An optimising step needs the logits (to sample), their entropy ``H`` and ``dH/dx`` for the final
hidden state ``x``. Autograd reads the LM head's weight twice for that: ``z = W x`` forward, then
``W^T dH/dz`` backward, and for a wide vocabulary that weight dominates the step (151,936 x 896
float32 is 545 MB). But the gradient needs only running sums over the vocabulary, which accumulate
chunk by chunk as the logits are made, while the chunk of ``W`` is still in cache
(``docs/method.md`` §1.7). With ``p = softmax(z)`` and ``E[z] = Σ p z``:

    H      = log Σ e^z - E[z]
    dH/dz  = -p (z - E[z])
    dH/dx  = W^T dH/dz = -(Σ_v e^{z_v} z_v w_v - E[z] Σ_v e^{z_v} w_v) / Σ_v e^{z_v}

Each chunk adds its terms to the sums (rescaled to a running maximum, as online softmax does, and
kept relative to it so that no large numbers cancel). Tested against autograd through
``lm_head`` + :func:`~lmms_vreason.core.objective.entropy` in float64.
"""

from __future__ import annotations

import torch


def chunk_rows(vocab: int, hidden: int, element_size: int, chunk_bytes: int) -> int:
    """Vocabulary rows per chunk so that a chunk of the weight takes about ``chunk_bytes``."""
    return max(1, min(vocab, chunk_bytes // max(1, hidden * element_size)))


def logits_entropy_and_input_grad(
    x: torch.Tensor, weight: torch.Tensor, rows_per_chunk: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(z, H, dH/dx)`` for ``z = x W^T`` (``x``: ``[rows, hidden]``, ``weight``: ``[vocab, hidden]``).

    ``z`` is computed in the weight's dtype, as ``lm_head`` does, and returned (like everything else)
    in at least float32; the sums accumulate in at least float32. No autograd graph is built.
    """
    acc = torch.promote_types(weight.dtype, torch.float32)
    rows, hidden = x.shape
    vocab = weight.shape[0]
    x = x.to(weight.dtype)
    logits = []
    peak = torch.full((rows, 1), float("-inf"), dtype=acc, device=x.device)
    total = torch.zeros(rows, 1, dtype=acc, device=x.device)  # Σ e^{z - peak}
    spread = torch.zeros(rows, 1, dtype=acc, device=x.device)  # Σ e^{z - peak} (z - peak)
    sum_w = torch.zeros(rows, hidden, dtype=acc, device=x.device)  # Σ e^{z - peak} w
    sum_yw = torch.zeros(rows, hidden, dtype=acc, device=x.device)  # Σ e^{z - peak} (z - peak) w
    for start in range(0, vocab, rows_per_chunk):
        w = weight[start : start + rows_per_chunk]
        z = (x @ w.t()).to(acc)  # [rows, C]
        logits.append(z)
        new_peak = torch.maximum(peak, z.max(dim=-1, keepdim=True).values)
        shift = peak - new_peak  # <= 0; -inf on the first chunk
        scale = torch.where(torch.isfinite(shift), shift.exp(), 0.0)
        shift = torch.where(torch.isfinite(shift), shift, 0.0)
        # Sums relative to the new peak: Σ e^{z-new} (z-new) = scale (Σ e^{z-old} (z-old) + shift Σ e^{z-old})
        spread = scale * (spread + shift * total)
        sum_yw = scale * (sum_yw + shift * sum_w)
        total = scale * total
        sum_w = scale * sum_w
        y = z - new_peak
        e = y.exp()
        total = total + e.sum(dim=-1, keepdim=True)
        spread = spread + (e * y).sum(dim=-1, keepdim=True)
        both = (torch.stack([e, e * y], dim=1).to(w.dtype) @ w).to(acc)  # the chunk again, from cache
        sum_w = sum_w + both[:, 0]
        sum_yw = sum_yw + both[:, 1]
        peak = new_peak
    mean_y = spread / total  # E[z] - peak
    h = (total.log() - mean_y).squeeze(-1)
    grad = -(sum_yw - mean_y * sum_w) / total
    return torch.cat(logits, dim=-1), h, grad
