"""The trainer of the tiny model (deterministic; trains on the backend's own prompts) and the shipped
trained checkpoint (small, loadable, made by the recorded command)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from lmms_vreason.tasks.utils import build_prompt
from safetensors.torch import load_file

from lmms_vreason.testing import training as T
from lmms_vreason.testing.fixtures import make_fixture_bench

SHORT = T.TrainSpec(steps=3, batch=2, count=1, warmup=1)
"""A few steps on 8 records: enough to move every weight, a few seconds on one core."""


@pytest.fixture(scope="module")
def short_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("train")
    return {
        "a": T.train_tiny(root / "a", SHORT),
        "b": T.train_tiny(root / "b", SHORT),
        "other_seed": T.train_tiny(root / "other_seed", replace(SHORT, seed=SHORT.seed + 1)),
    }


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path / "model.safetensors"))


def test_training_is_bit_identical_for_a_seed_and_moves_with_it(short_runs: dict[str, Path]) -> None:
    a, b, other = (_weights(short_runs[k]) for k in ("a", "b", "other_seed"))
    assert a.keys() == b.keys() == other.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], other[k]) for k in a)
    log = json.loads((short_runs["a"] / "training_log.json").read_text())
    assert log["train_spec"] == SHORT.__dict__ and log["log"][-1]["step"] == SHORT.steps
    assert log == {**json.loads((short_runs["b"] / "training_log.json").read_text()), "log": log["log"]}


def test_training_moves_every_weight_from_its_initial_value(
    short_runs: dict[str, Path], tmp_path: Path
) -> None:
    init = _weights(T.initial_model(tmp_path / "init"))
    trained = _weights(short_runs["a"])
    unchanged = [k for k in init if torch.equal(init[k], trained[k])]
    assert not unchanged


def test_examples_are_the_backends_prompt_then_the_target(tmp_path: Path) -> None:
    """Prompt = the chat template over the task's Video-R1 text with the video's tokens in front; loss
    only on ``<think>..</think><answer>..</answer><|im_end|>``."""
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(T.initial_model(tmp_path / "m"))
    data = make_fixture_bench(tmp_path / "d", seed=4, count=1, fixed_options=True)
    examples = T.encode_records(processor, data)
    rows = [r for f in sorted(data.glob("eval_*.json")) for r in json.loads(f.read_text())]
    assert len(examples) == len(rows) == 8
    tok = processor.tokenizer
    for example, row in zip(examples, rows, strict=True):
        prompt = tok.decode(example["input_ids"][example["labels"] == -100])
        target = tok.decode(example["input_ids"][example["labels"] != -100])
        text = build_prompt(row["problem"], row["problem_type"], row["options"])
        n_video = int(example["video_grid_thw"].prod()) // 4  # 2x2 spatial merge
        assert prompt == (
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
            f"<|vision_start|>{'<|video_pad|>' * n_video}<|vision_end|>{text}<|im_end|>\n"
            "<|im_start|>assistant\n"
        )
        answer = row["solution"].removeprefix("<answer>").removesuffix("</answer>")
        assert target.startswith("<think>") and target.endswith(
            f"</think><answer>{answer}</answer><|im_end|>"
        )
    # 8 frames (max_frames) of 56x56 (the 64x64 clip at max 32*28*28 pixels): 4 x 4 x 4 patches
    assert examples[0]["video_grid_thw"].tolist() == [[4, 4, 4]]


def test_target_states_the_answer_in_words_then_the_letter() -> None:
    record = {
        "problem": "In which direction do the squares move?",
        "problem_type": "multiple choice",
        "options": ["A. down", "B. left", "C. right", "D. up"],
        "solution": "<answer>C</answer>",
    }
    assert T.target_text(record) == "<think>The squares move right.</think><answer>C</answer>"
    number = {
        "problem": "How many squares are in the video?",
        "problem_type": "numerical",
        "solution": "<answer>2</answer>",
    }
    assert T.target_text(number) == "<think>I count 2 squares.</think><answer>2</answer>"
    with pytest.raises(ValueError, match="no reasoning for the question"):
        T.target_text({**number, "problem": "Why?"})


def test_the_shipped_checkpoint_is_small_loads_and_was_made_by_the_recorded_command(tmp_path: Path) -> None:
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    shipped = T.shipped_checkpoint()
    size = sum(p.stat().st_size for p in shipped.iterdir())
    assert size <= 5 * 1024 * 1024, size
    log = json.loads((shipped / "training_log.json").read_text())
    assert log["command"] == T.SHIPPED_COMMAND
    assert log["train_spec"] == T.TrainSpec().__dict__ and log["tiny_spec"] == T.TRAINED_SPEC.__dict__
    assert log["media_args"] == T.MEDIA_ARGS
    assert log["log"][-1]["step"] == T.TrainSpec().steps and log["log"][-1]["loss"] < log["log"][0]["loss"]
    copy = T.write_trained(tmp_path / "copy")
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(copy)
    AutoProcessor.from_pretrained(copy)
    assert model.config.text_config.hidden_size == T.TRAINED_SPEC.hidden


def test_the_vocabulary_has_every_protocol_word_whole_and_spells_anything_else(tmp_path: Path) -> None:
    """Each prompt and target word is one token (Qwen2's split), text outside the protocol falls back
    to bytes, and every text decodes back to itself."""
    from transformers import AutoProcessor

    tok = AutoProcessor.from_pretrained(T.initial_model(tmp_path / "m")).tokenizer
    words = T.protocol_words(
        T.read_records(make_fixture_bench(tmp_path / "d", seed=7, count=3, fixed_options=True))
    )
    assert " squares" in words and " pondering" in words and " yellow" in words
    for word in words:
        assert len(tok(word, add_special_tokens=False).input_ids) == 1, word
    row = T.read_records(tmp_path / "d")[0]
    prompt = build_prompt(row["problem"], row["problem_type"], row["options"])
    ids = tok(prompt, add_special_tokens=False).input_ids
    assert len(ids) < len(prompt.encode()) / 3  # whole words, not bytes
    assert tok.decode(ids) == prompt
    outside = "Zebras jump: 1234 naïve!"
    spelled = tok(outside, add_special_tokens=False).input_ids
    assert tok.decode(spelled) == outside and len(spelled) > len(outside.split())
    assert tok.convert_ids_to_tokens(tok("<|im_end|>").input_ids) == ["<|im_end|>"]


def test_vocabulary_words_are_refused_where_they_do_not_apply(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="small vocabulary only"):
        T.build_tiny_model(tmp_path / "r", T.TinySpec(vocab="real"), words=(" squares",))
    with pytest.raises(ValueError, match="distinct and longer than one byte"):
        T.build_tiny_model(tmp_path / "s", T.TRAINED_SPEC, words=("a",))
