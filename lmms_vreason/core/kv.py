"""The decode loop's cache: preallocated keys, values and attention mask at fixed addresses.

The prefill runs into a ``DynamicCache`` exactly as ``generate`` does (its logits are ``generate``'s
bit for bit). :meth:`StaticKVCache.from_prefill` then copies it, once, into buffers of
``[rows, kv_heads, capacity, head_dim]`` per layer, and that copy is where two of V-Reason's phases
happen without another pass over the cache:

* **prune** (Lite): the kept positions of every sample are gathered to the front of the buffers
  (:func:`~lmms_vreason.core.pruning.plan_pruning` says which); later tokens keep their original
  positions (the loop tracks them), so pruning equals masking the dropped positions;
* **expand rows** (an lr grid): every request's cache lands in each of its rows
  (:class:`~lmms_vreason.core.rows.RowLayout`).

Hybrid models (Qwen3.5) also have linear-attention layers, which hold a conv state and a recurrent
state instead of per-token keys and values. Their states are copied too (every row gets its
request's states: an lr grid decodes each row on from the same prefill) and are never pruned: the
prefill has already folded every token into them (docs/method.md §2, "Hybrid attention").

From then on nothing is reallocated: a decode step writes its keys and values at ``slot`` (a device
tensor, so the step does not change shape or recompile), opens that slot in the 4D attention mask,
and moves ``slot`` on by one (:meth:`open_slot` / :meth:`close_slot`, called inside the step). The
capacity may be rounded up to a bucket so that requests of different lengths share one compiled step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers.cache_utils import Cache, LinearAttentionCacheLayerMixin, LinearAttentionLayer

from lmms_vreason.core.pruning import PrunedCache, kv_layers
from lmms_vreason.core.rows import RowLayout


def round_up(n: int, bucket: int) -> int:
    """``n`` rounded up to a multiple of ``bucket`` (``bucket`` 1: ``n``)."""
    return -(-n // bucket) * bucket


class FixedKVLayer:
    """One attention layer's keys and values in preallocated buffers; each update writes at ``slot``.

    What transformers' attention modules call on a cache layer (``update``) and nothing more. The
    buffers are returned whole (the attention mask hides the slots not written yet), or, when the
    cache tracks its ``length`` on the host (eager decoding), as views of the slots written so far,
    so attention spans exactly what a dynamic cache would hold (and rounds exactly as it does).
    """

    is_compileable = True
    is_sliding = False

    def __init__(
        self, keys: torch.Tensor, values: torch.Tensor, slot: torch.Tensor, cache: StaticKVCache
    ) -> None:
        self.keys = keys
        self.values = values
        self.slot = slot
        self._cache = cache
        self.is_initialized = True

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        self.keys.index_copy_(2, self.slot, key_states)
        self.values.index_copy_(2, self.slot, value_states)
        length = self._cache.length
        if length is None:
            return self.keys, self.values
        return self.keys[:, :, :length], self.values[:, :, :length]

    def get_max_length(self) -> int:
        return self.keys.shape[2]

    def __repr__(self) -> str:
        return f"FixedKVLayer({tuple(self.keys.shape)})"


def linear_layer_rows(source: LinearAttentionCacheLayerMixin, layout: RowLayout) -> LinearAttentionLayer:
    """A linear-attention layer's prefilled conv and recurrent states, copied into every row of
    ``layout`` (new tensors: decode steps update them in place, at fixed addresses)."""
    layer = LinearAttentionLayer(number_of_states=source.number_of_states)
    for i in range(source.number_of_states):
        if source.is_conv_states_initialized[i]:
            # A fresh layer takes its first conv state as a prefill's: same kernel size, copied.
            layer.update_conv_state(layout.expand(source.conv_states[i]), i)
        if source.is_recurrent_states_initialized[i]:
            layer.update_recurrent_state(layout.expand(source.recurrent_states[i]), i)
        layer.has_previous_state[i] = source.has_previous_state[i]
    return layer


class StaticKVCache(Cache):
    """Preallocated caches of every layer, the 4D attention mask over them, and the write slot.

    Attributes:
        layers: one :class:`FixedKVLayer` per attention layer, one ``LinearAttentionLayer`` per
            linear-attention layer (hybrid models), in decoder order.
        full_mask: the attention mask of a one-token step over every slot, ``[rows, 1, 1, capacity]``:
            additive (0 where a slot is attended, the dtype's minimum elsewhere) for eager attention,
            boolean for the other kernels; the step opens the current slot before its layers run.
            :attr:`mask` is what a step passes to attention.
        fill: slots holding the prompt (after Lite, its kept positions) when decoding starts.
    """

    def __init__(
        self,
        buffers: Sequence[tuple[torch.Tensor, torch.Tensor] | LinearAttentionLayer],
        mask: torch.Tensor,
        slots: dict[torch.device, torch.Tensor],
        *,
        fill: int,
        exact_length: bool,
        masked_prompt: bool,
    ) -> None:
        layers = [
            b if isinstance(b, LinearAttentionLayer) else FixedKVLayer(b[0], b[1], slots[b[0].device], self)
            for b in buffers
        ]
        super().__init__(layers=layers)
        self.has_linear_layers = len(layers) != len(self.kv_layers)
        self.full_mask = mask
        self._slots = slots
        self.fill = fill
        self.length: int | None = fill + 1 if exact_length else None
        """Slots attended by the step being run (eager decoding tracks it on the host), else ``None``."""
        self._masked = masked_prompt
        self._open = (
            torch.zeros((), dtype=mask.dtype, device=mask.device) if mask.dtype != torch.bool else True
        )

    @property
    def mask(self) -> torch.Tensor | None:
        """The attention mask of the step being run (``None`` where no slot written so far is masked:
        attention then takes its unmasked path, as ``generate``'s does)."""
        if self.length is None:
            return self.full_mask
        return self.full_mask[..., : self.length] if self._masked else None

    @property
    def kv_layers(self) -> list[FixedKVLayer]:
        """The layers that hold keys and values (all of them, but for a hybrid model's linear ones)."""
        return [layer for layer in self.layers if isinstance(layer, FixedKVLayer)]

    @property
    def capacity(self) -> int:
        return self.full_mask.shape[-1]

    @property
    def rows(self) -> int:
        return self.full_mask.shape[0]

    @property
    def slot(self) -> torch.Tensor:
        """The slot the next step writes (on the mask's device), ``[1]``."""
        return self._slots[self.full_mask.device]

    @classmethod
    @torch.no_grad()
    def from_prefill(
        cls,
        prefilled: Cache,
        layout: RowLayout,
        *,
        new_tokens: int,
        attention_mask: torch.Tensor | None,
        pruned: PrunedCache | None = None,
        additive_mask: bool = True,
        bucket: int = 1,
        exact_length: bool = False,
    ) -> StaticKVCache:
        """The prefilled cache copied once into buffers with room for ``new_tokens`` more tokens.

        Args:
            prefilled: the prefill's cache (every key/value layer ``[requests, H, L, D]``; linear
                layers' states ``[requests, ...]``).
            layout: the rows to decode (an lr grid: every request copied into each of its rows).
            new_tokens: tokens the loop may still write (its budget).
            attention_mask: the 2D prefill mask ``[requests, L]`` (``None``: every position attended).
            pruned: Lite's plan: the slots of the pruned cache hold ``pruned.keep_index``'s positions,
                masked by ``pruned.attention_mask``.
            additive_mask: an additive float mask (eager attention) rather than a boolean one.
            bucket: the capacity is rounded up to a multiple of this (shapes shared across requests).
            exact_length: attention spans the slots written so far, not the whole capacity (eager
                decoding: the dynamic cache's rounding, and ``generate``'s logits bit for bit).
        """
        sources = kv_layers(prefilled)
        first = sources[0].keys
        if pruned is not None:
            index, attention_mask = pruned.keep_index, pruned.attention_mask
            fill = index.shape[1]
        else:
            index, fill = None, first.shape[2]
        capacity = round_up(fill + new_tokens, bucket)
        requests, per_request = layout.requests, layout.per_request
        slots: dict[torch.device, torch.Tensor] = {}
        layers: list[tuple[torch.Tensor, torch.Tensor] | LinearAttentionLayer] = []
        for source in prefilled.layers:
            if isinstance(source, LinearAttentionCacheLayerMixin):
                layers.append(linear_layer_rows(source, layout))
                continue
            if getattr(source, "keys", None) is None:
                raise NotImplementedError(f"a cache layer with neither keys nor linear states: {source!r}")
            device = source.keys.device
            if device not in slots:
                slots[device] = torch.tensor([fill], dtype=torch.long, device=device)
            buffers = []
            for tensor in (source.keys, source.values):
                if index is not None:
                    gather = index.to(device)[:, None, :, None].expand(
                        -1, tensor.shape[1], -1, tensor.shape[3]
                    )
                    tensor = tensor.gather(2, gather)
                heads, dim = tensor.shape[1], tensor.shape[3]
                buffer = torch.zeros(layout.rows, heads, capacity, dim, dtype=tensor.dtype, device=device)
                # Each request's rows get its cache (a broadcast copy: no repeated temporary).
                buffer.view(requests, per_request, heads, capacity, dim)[:, :, :, :fill].copy_(
                    tensor[:, None]
                )
                buffers.append(buffer)
            layers.append((buffers[0], buffers[1]))
        device, dtype = first.device, first.dtype
        attended = torch.zeros(layout.rows, capacity, dtype=torch.bool, device=device)
        if attention_mask is None:
            attended[:, :fill] = True
        else:
            attended[:, :fill] = layout.expand(attention_mask.to(device)).bool()
        if additive_mask:
            mask = torch.zeros(layout.rows, capacity, dtype=dtype, device=device)
            mask.masked_fill_(~attended, torch.finfo(dtype).min)
        else:
            mask = attended
        masked_prompt = not bool(attended[:, :fill].all())
        cache = cls(
            layers,
            mask[:, None, None, :],
            slots,
            fill=fill,
            exact_length=exact_length,
            masked_prompt=masked_prompt,
        )
        if device.type == "cuda":  # fixed addresses: CUDA graphs replay in place
            kv = (t for layer in cache.kv_layers for t in (layer.keys, layer.values))
            for tensor in (*kv, cache.full_mask, *slots.values()):
                torch._dynamo.mark_static_address(tensor)
        return cache

    def open_slot(self) -> None:
        """Let the current step's token attend to its own slot (before the step's layers run)."""
        self.full_mask.index_fill_(3, self.slot, self._open)

    def close_slot(self) -> None:
        """Move the write slot on by one (after the step's layers ran)."""
        for slot in self._slots.values():
            slot.add_(1)
        if self.length is not None:
            self.length += 1

    def rewind(self, steps: int = 1) -> None:
        """Move the write slot back by ``steps`` (their slots are written again by the next steps).

        Not for hybrid models: a linear layer's recurrent state has absorbed those steps for good.
        """
        if self.has_linear_layers:
            raise NotImplementedError("a cache with linear-attention layers cannot be rewound")
        for slot in self._slots.values():
            slot.sub_(steps)
        if self.length is not None:
            self.length -= steps

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return int(self.slot)

    def __repr__(self) -> str:
        linear = len(self.layers) - len(self.kv_layers)
        extra = f", linear layers={linear}" if linear else ""
        return f"StaticKVCache(rows={self.rows}, capacity={self.capacity}, layers={len(self.layers)}{extra})"
