"""Qwen3.5's native thinking mode: ``enable_thinking`` (default off) against the checkpoint's own template.

Off: the template's non-thinking prompt (it ends with an empty think block the model does not
write) and the task's own ``<think>``/``<answer>`` request is the protocol, as on the other
families. On: the prompt opens a think block, the response keeps it, and scoring (lmms-eval's
reasoning-tag filter, then the tasks' first ``<answer>``) reads the answer after it.
"""

from __future__ import annotations

import json

import pytest
from conftest import random_video, tiny_backend, video_chat

from lmms_vreason.core.settings import GenerationSettings
from lmms_vreason.lmms.args import ArgumentError
from lmms_vreason.lmms.backend import Qwen3_5_VReason, Qwen3_VL_VReason

PIXELS = {"max_pixels": 48 * 32 * 32, "min_pixels": 4 * 32 * 32}
ENDINGS = {False: "<|im_start|>assistant\n<think>\n\n</think>\n\n", True: "<|im_start|>assistant\n<think>\n"}
"""Qwen3.5's generation prompts, written out by hand (non-thinking: an empty think block)."""


@pytest.mark.parametrize("thinking", [False, True])
@pytest.mark.parametrize("kit", ["qwen3_5"], indirect=True)
def test_both_renderings_follow_the_checkpoints_template(kit, thinking, tmp_path):
    from transformers import AutoProcessor

    backend = tiny_backend(kit.dir, Qwen3_5_VReason, vreason=False, enable_thinking=thinking, **PIXELS)
    chat = video_chat(random_video(tmp_path / "clip.mp4", 8, 96, 128, seed=1))
    out, inputs, _ = backend._run_batch([chat], GenerationSettings(max_new_tokens=6), [0])
    prompt = backend.tokenizer.decode(inputs["input_ids"][0])

    # The checkpoint's own template (a fresh processor from its directory), rendered with the flag;
    # the processor then expands the video block (timestamps, pads), so compare around it.
    own = AutoProcessor.from_pretrained(kit.dir)
    assert own.chat_template == (kit.dir / "chat_template.jinja").read_text()
    rendered = own.apply_chat_template(
        chat.to_hf_messages(), tokenize=False, add_generation_prompt=True, enable_thinking=thinking
    )
    head, _, _ = rendered.partition("<|vision_start|>")
    _, _, tail = rendered.rpartition("<|vision_end|>")
    assert prompt.startswith(head) and prompt.endswith(tail)
    assert tail.endswith(ENDINGS[thinking])

    text, error = backend._response(out, 0, GenerationSettings(max_new_tokens=6))
    generated = backend.tokenizer.decode(out.sequences[0], skip_special_tokens=True)
    assert error is None
    assert text == ("<think>\n" + generated if thinking else generated)


def test_thinking_response_is_scored_on_the_first_answer_after_the_native_block():
    """lmms-eval's reasoning-tag filter (the default tags) and the tasks' rule, on a thinking response."""
    from lmms_eval.api.reasoning import strip_reasoning_tags

    from lmms_vreason.lmms.replay import LMMS_EVAL_REASONING_TAGS
    from tasks.utils import extract_answer

    response = (
        "<think>\nnative, maybe <answer>A</answer></think>\n\n<think>protocol</think><answer>B</answer>"
    )
    assert extract_answer(strip_reasoning_tags(response, json.loads(LMMS_EVAL_REASONING_TAGS))) == "B"
    assert extract_answer(response) == "A"  # why the block must stay closed in the response


def test_enable_thinking_is_refused_where_the_template_has_no_thinking_mode(tiny3_model_dir):
    with pytest.raises(ArgumentError, match="enable_thinking: Qwen3-VL's chat template has no thinking mode"):
        tiny_backend(tiny3_model_dir, Qwen3_VL_VReason, vreason=False, enable_thinking=True, **PIXELS)
