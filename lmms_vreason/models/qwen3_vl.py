"""Qwen3-VL: the shared Qwen-VL positions; what differs is inside the model and its processor.

* Positions: ``get_rope_index`` needs ``mm_token_type_ids`` and no ``second_per_grid_ts``. The
  processor writes ``<t seconds>`` text before every temporal patch of a video, and
  ``get_rope_index`` splits ``video_grid_thw`` into one grid per temporal patch, so a video's tokens
  are several runs separated by timestamp text (the controller finds them by token id, never as one
  contiguous block). Time is carried by that text, not by the rotary positions.
* DeepStack: visual features of early vision blocks are added to the hidden states of the first
  decoder layers at the visual positions. It needs the pixel inputs, which only the prefill gets, so
  decode steps are plain one-token forwards and the controller still acts on the last layer's values.
* The M-RoPE rows are interleaved over the rotary frequencies inside the model; the positions passed
  in have the same ``[4, B, L]`` shape and meaning as for Qwen2.5-VL.
"""

from __future__ import annotations

from lmms_vreason.models.qwen_vl import QwenVLAdapter


class Qwen3VLAdapter(QwenVLAdapter):
    """Runs a ``Qwen3VLForConditionalGeneration`` one step at a time."""
