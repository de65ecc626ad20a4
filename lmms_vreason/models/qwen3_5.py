"""Qwen3.5: Qwen3-VL's positions and processor (no DeepStack), over a hybrid-attention decoder.

The text decoder interleaves Gated-DeltaNet linear-attention layers with full-attention layers
(``text_config.layer_types``; by default every 4th layer, counted from 1, is full attention, so the
released depths end on one). Full-attention layers cache per-token keys and values; linear layers
only a conv state and a recurrent state, into which the prefill has already folded every token
(docs/method.md §2, "Hybrid attention"). So:

* the controller (ΔV on the last layer's cached values) needs a full-attention last layer; a
  checkpoint whose last layer is linear attention is refused (:meth:`check_controllable`), never
  silently controlled on another layer;
* Lite prunes, and scores by, the full-attention layers only (:mod:`lmms_vreason.core.pruning`);
* an lr grid copies the linear layers' states into every row like the keys and values
  (:mod:`lmms_vreason.core.kv`).

Positions: the same ``get_rope_index`` inputs as Qwen3-VL (``mm_token_type_ids``, timestamps split a
video into one grid per temporal patch).
"""

from __future__ import annotations

from lmms_vreason.models.qwen_vl import QwenVLAdapter


class Qwen3_5Adapter(QwenVLAdapter):
    """Runs a ``Qwen3_5ForConditionalGeneration`` one step at a time."""
