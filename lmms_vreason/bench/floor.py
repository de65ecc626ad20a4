"""The floor of a decode step: the bytes it must read, divided by the read bandwidth measured now.

At batch 1 a decode step is bound by memory: every weight of the decoder (its layers, final norm and
LM head; one row of the embedding, nothing of the vision tower) and the whole KV cache are read once
per token, so no implementation can take less than ``bytes / bandwidth``. The bandwidth is measured
in the same process as the timings (this machine is shared: a figure measured elsewhere would not
say how close a run came), as the best of several timed reductions over a buffer far larger than
the caches.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

BANDWIDTH_BUFFER_BYTES = 1 << 30
"""1 GiB: far above any CPU's last-level cache."""


def read_bandwidth(device: torch.device, *, nbytes: int = BANDWIDTH_BUFFER_BYTES, repeats: int = 7) -> float:
    """Bytes per second a reduction reads from memory on ``device`` (best of ``repeats``)."""
    buffer = torch.ones(nbytes // 4, dtype=torch.float32, device=device)
    best = float("inf")
    for _ in range(repeats + 1):  # the first run warms up (page faults, kernel selection)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        buffer.sum()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - start)
    del buffer
    return nbytes / best


def decoder_weight_bytes(model: torch.nn.Module) -> int:
    """Bytes of the weights a decode step reads: the text decoder and the LM head (one embedding row)."""
    text = model.model.language_model
    total = sum(
        p.numel() * p.element_size() for name, p in text.named_parameters() if "embed_tokens" not in name
    )
    embed = text.embed_tokens.weight
    head = model.lm_head.weight
    total += embed.shape[1] * embed.element_size()  # the one row a step looks up
    if head.data_ptr() != embed.data_ptr():
        total += head.numel() * head.element_size()
    else:  # tied: the LM head reads the whole embedding matrix
        total += embed.numel() * embed.element_size() - embed.shape[1] * embed.element_size()
    return total


def kv_bytes_per_token(model: torch.nn.Module, dtype: torch.dtype) -> int:
    """Bytes of keys and values one cached token holds over all layers."""
    config = model.config.get_text_config()
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    element = torch.empty((), dtype=dtype).element_size()
    return 2 * config.num_hidden_layers * config.num_key_value_heads * head_dim * element


@dataclass(frozen=True)
class Floor:
    """The floor of one benchmark's decode steps (batch ``batch``, a cache of ``mean_cache_tokens``)."""

    weight_bytes: int
    kv_bytes: int
    bandwidth: float
    """Measured read bandwidth, bytes per second."""

    @property
    def step_bytes(self) -> int:
        return self.weight_bytes + self.kv_bytes

    @property
    def ms_per_step(self) -> float:
        return self.step_bytes / self.bandwidth * 1e3


def decode_floor(
    model: torch.nn.Module, *, batch: int, mean_cache_tokens: float, device: torch.device, dtype: torch.dtype
) -> Floor:
    """The floor of a step of ``batch`` rows over a cache of ``mean_cache_tokens`` tokens on average."""
    kv = int(batch * mean_cache_tokens * kv_bytes_per_token(model, dtype))
    return Floor(decoder_weight_bytes(model), kv, read_bandwidth(device))
