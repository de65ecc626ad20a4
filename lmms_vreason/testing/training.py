"""Train the tiny Qwen2.5-VL to answer the fixture's questions: a model that has learned to watch.

A random-weight model answers nothing, so an offline run proves only the plumbing. This trainer
teaches the tiny checkpoint of :mod:`lmms_vreason.testing.tiny` (real Qwen2.5-VL architecture and
processor, the ``small`` byte-level vocabulary plus the protocol's words, :func:`protocol_words`) the
synthetic clips of :mod:`lmms_vreason.testing.fixtures`:
direction of motion (needs the frames in order), colour, number of squares, square size.

What the model sees is what the backend gives it in a run: each training record goes through the
task's ``doc_to_messages`` (the Video-R1 prompt and type suffix, ``tasks/utils.py``), lmms-eval's
``ChatMessages``, and the backend's own media step (:func:`lmms_vreason.lmms.media.prepare_chunk`:
Video-R1's frame and pixel rules with :data:`MEDIA_ARGS`, the chat template, the processor). The
target is ``<think>one sentence</think><answer>X</answer><|im_end|>``, teacher-forced (loss on the
answer tokens only).

Seeds: training clips are the fixture of seed :data:`TRAIN_DATA_SEED`; evaluation fixtures use
seeds below it (the demo and the tests use :data:`EVAL_SEED`). The run is deterministic: fixed seeds,
``torch.use_deterministic_algorithms``, and an explicit thread count (``--threads``; the shipped
weights were trained with the default).

Usage: ``vreason train-tiny OUT_DIR [--steps N] [--threads 2]``; the shipped checkpoint
(:func:`shipped_checkpoint`, copied by ``vreason tiny DIR --trained``) was made with :data:`SHIPPED_COMMAND`,
its log is ``training_log.json`` beside the weights.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from lmms_vreason.cli import HelpFormatter, prog
from lmms_vreason.testing.fixtures import MC_QUESTIONS, make_fixture_bench
from lmms_vreason.testing.tiny import TinySpec, build_tiny_model

TRAIN_DATA_SEED = 1000
"""Fixture seed of the training clips. Evaluation fixtures use seeds below it."""
EVAL_SEED = 0
"""Fixture seed of the held-out clips the demo and the tests evaluate on."""
MEDIA_ARGS: dict[str, int] = {"max_frames": 8, "max_pixels": 32 * 28 * 28, "min_pixels": 4 * 28 * 28}
"""The frame and pixel budget of training and of every run of the trained model (model arguments):
a 64x64 clip becomes 8 frames of 56x56, 16 video tokens."""
SHIPPED_COMMAND = "vreason train-tiny lmms_vreason/testing/trained"
"""The command that wrote the shipped checkpoint (run from the repository root, default options)."""
TRAINED_SPEC = TinySpec(
    vocab="small", seed=0, layers=3, hidden=128, heads=4, kv_heads=2, intermediate=256, vision_hidden=64
)
"""Shape of the trained model (3.3 MB in float32). Two layers of width 64 and a vision tower of
width 32 underfit: after 5,000 steps they answered ~60 % of their own training questions."""

_REASONING = {
    MC_QUESTIONS["direction"]: "The squares move {}.",
    MC_QUESTIONS["colour"]: "The squares are {}.",
    MC_QUESTIONS["count"]: "I count {} squares.",
    "How many squares are in the video?": "I count {} squares.",
    "How many pixels wide is one square?": "One square is {} pixels wide.",
    "What is the side length of one square, in pixels?": "One square is {} pixels wide.",
    "How far does each square travel during the video, in pixels?": "They move {} pixels.",
    "How long is the video, in seconds?": "The video lasts {} seconds.",
}
"""The one-sentence reasoning of each fixture question, filled with the answer's content."""


@dataclass(frozen=True, kw_only=True)
class TrainSpec:
    """One training run; every field goes into the log, and the result depends only on them."""

    steps: int = 8000
    batch: int = 16
    lr: float = 2e-3
    warmup: int = 50
    weight_decay: float = 0.01
    count: int = 750
    """Fixture ``--count`` of the training data (records per problem type per benchmark)."""
    data_seed: int = TRAIN_DATA_SEED
    seed: int = 1
    """Seed of the initial weights and of the batch order. Seed 0 of the same run reached 65 % on the
    accuracy-gate subset, seed 1 85 %: which draw breaks through in 8,000 steps is luck."""
    threads: int = 1


def target_text(record: dict[str, Any]) -> str:
    """``<think>sentence</think><answer>X</answer>`` for a fixture record (the answer from its solution)."""
    from lmms_vreason.tasks.utils import extract_answer

    answer = extract_answer(record["solution"])
    content = answer
    if record["problem_type"] == "multiple choice":
        letters = [option.split(". ", 1) for option in record["options"]]
        content = dict(letters)[answer]
    try:
        sentence = _REASONING[record["problem"]].format(content)
    except KeyError:
        raise ValueError(f"no reasoning for the question {record['problem']!r}") from None
    return f"<think>{sentence}</think><answer>{answer}</answer>"


def read_records(root: Path) -> list[dict[str, Any]]:
    """The records of every ``eval_*.json`` of the fixture at ``root``, in file order."""
    return [r for f in sorted(root.glob("eval_*.json")) for r in json.loads(f.read_text(encoding="utf-8"))]


def protocol_words(records: list[dict[str, Any]]) -> tuple[str, ...]:
    """Every multi-byte piece, split as Qwen2's tokenizer splits text, of what the model reads and
    writes: the chat template's own text, each record's prompt (Video-R1 template and type suffix)
    and its target. Whole-word tokens make a prompt ~180 tokens instead of ~800 bytes, which makes
    training 4x cheaper and lets 16 video tokens stand out among the prompt's."""
    import regex
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    from lmms_vreason.tasks.utils import build_prompt

    texts = ["system\nYou are a helpful assistant.", "user\n", "assistant\n"]
    for record in records:
        texts += [
            build_prompt(record["problem"], record["problem_type"], record["options"]),
            target_text(record),
        ]
    return tuple(
        sorted({p for t in texts for p in regex.findall(PRETOKENIZE_REGEX, t) if len(p.encode()) > 1})
    )


def initial_model(out_dir: Path) -> Path:
    """The untrained model: :data:`TRAINED_SPEC` with the words of the protocol's texts.

    The words come from a fixture with every question kind (``count=3``: each multiple-choice,
    numerical and regression question once), so they do not depend on the training run's size;
    answers are single digits or option words, which every prompt already holds.
    """
    with tempfile.TemporaryDirectory() as tmp:
        every_question = make_fixture_bench(Path(tmp), seed=TRAIN_DATA_SEED, count=3, fixed_options=True)
        words = protocol_words(read_records(every_question))
    return build_tiny_model(out_dir, TRAINED_SPEC, words=words)


def encode_records(processor: Any, root: Path) -> list[dict[str, Any]]:
    """Every record of the fixture at ``root`` as model inputs, through the backend's media step.

    Returns one dict per record: ``input_ids`` (prompt + target + end token), ``labels`` (-100 on the
    prompt), and the processor's other outputs (``pixel_values_videos``, ``video_grid_thw``,
    ``second_per_grid_ts``, ``mm_token_type_ids``).
    """
    import torch
    from lmms_eval.protocol import ChatMessages

    from lmms_vreason.lmms.args import parse_model_args
    from lmms_vreason.lmms.media import MediaRequest, prepare_chunk
    from lmms_vreason.tasks.utils import doc_to_messages

    settings = parse_model_args({"pretrained": str(root), **MEDIA_ARGS}).frame_settings()
    end = processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
    examples = []
    for record in read_records(root):
        doc = {**record, "video": str(root / record["path"])}
        request = MediaRequest.of(ChatMessages(messages=doc_to_messages(doc)))
        chunk = prepare_chunk(processor, settings, [request])
        if chunk.failures:
            raise RuntimeError(f"{record['path']}: {chunk.failures[0]}")
        inputs = chunk.inputs
        target = processor.tokenizer(target_text(record), add_special_tokens=False)["input_ids"]
        prompt = inputs["input_ids"][0]
        ids = torch.cat([prompt, torch.tensor([*target, end])])
        labels = ids.clone()
        labels[: len(prompt)] = -100
        example = {"input_ids": ids, "labels": labels}
        # the rest as the backend passes it (token types and the video's seconds per temporal
        # patch decide the M-RoPE positions); token types extend over the text of the target
        for key, value in inputs.items():
            if key == "mm_token_type_ids":
                example[key] = torch.cat([value[0], torch.zeros(len(ids) - len(prompt), dtype=value.dtype)])
            elif key not in ("input_ids", "attention_mask"):
                example[key] = value
        examples.append(example)
    return examples


def collate(examples: list[dict[str, Any]], pad_id: int) -> dict[str, Any]:
    """Right-padded batch (labels -100 and attention 0 on the padding)."""
    import torch

    width = max(len(e["input_ids"]) for e in examples)
    padded = {
        "input_ids": torch.full((len(examples), width), pad_id, dtype=torch.long),
        "labels": torch.full((len(examples), width), -100, dtype=torch.long),
        "attention_mask": torch.zeros((len(examples), width), dtype=torch.long),
    }
    if "mm_token_type_ids" in examples[0]:
        padded["mm_token_type_ids"] = torch.zeros((len(examples), width), dtype=torch.long)
    for row, e in enumerate(examples):
        n = len(e["input_ids"])
        padded["attention_mask"][row, :n] = 1
        for key in padded.keys() - {"attention_mask"}:
            padded[key][row, :n] = e[key]
    stacked = {k: torch.cat([e[k] for e in examples]) for k in examples[0] if k not in padded}
    return {**padded, **stacked}


def train_tiny(out_dir: str | Path, spec: TrainSpec | None = None, log_every: int = 50) -> Path:
    """Build the tiny model, train it on the training fixture and save it (with its processor and log)."""
    import torch
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    spec = spec or TrainSpec()
    torch.set_num_threads(spec.threads)
    torch.use_deterministic_algorithms(True)
    # Tiny weights and Adam's small updates produce subnormal floats, which the CPU handles in
    # microcode (a step became 6x slower after ~50 steps); flush them to zero.
    torch.set_flush_denormal(True)
    out = Path(out_dir)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        data = make_fixture_bench(
            Path(tmp) / "data", seed=spec.data_seed, count=spec.count, fixed_options=True
        )
        init = initial_model(Path(tmp) / "init")
        processor = AutoProcessor.from_pretrained(init)
        model = Qwen2_5_VLForConditionalGeneration.from_pretrained(init, dtype=torch.float32)
        examples = encode_records(processor, data)
    pad_id = processor.tokenizer.pad_token_id
    torch.manual_seed(spec.seed)
    order = random.Random(spec.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)

    def rate(step: int) -> float:  # linear warm-up, then linear decay to 0
        if step < spec.warmup:
            return (step + 1) / spec.warmup
        return max(0.0, (spec.steps - step) / max(1, spec.steps - spec.warmup))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, rate)
    model.train()
    log: list[dict[str, float]] = []
    pool: list[int] = []
    running = None
    for step in range(spec.steps):
        if len(pool) < spec.batch:
            fresh = list(range(len(examples)))
            order.shuffle(fresh)
            pool += fresh
        batch, pool = [examples[i] for i in pool[: spec.batch]], pool[spec.batch :]
        loss = model(**collate(batch, pad_id)).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        running = loss.item() if running is None else 0.9 * running + 0.1 * loss.item()
        if (step + 1) % log_every == 0 or step + 1 == spec.steps:
            entry = {
                "step": step + 1,
                "loss": round(running, 5),
                "seconds": round(time.perf_counter() - started, 1),
            }
            log.append(entry)
            print(json.dumps(entry), flush=True)
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    (out / "tiny_spec.json").write_text(json.dumps(asdict(TRAINED_SPEC), indent=2), encoding="utf-8")
    record = {
        "command": SHIPPED_COMMAND,
        "train_spec": asdict(spec),
        "tiny_spec": asdict(TRAINED_SPEC),
        "media_args": MEDIA_ARGS,
        "examples": len(examples),
        "torch": torch.__version__,
        "log": log,
    }
    (out / "training_log.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return out


def shipped_checkpoint() -> Path:
    """The trained checkpoint shipped with the package (package data)."""
    path = Path(str(resources.files("lmms_vreason") / "testing" / "trained"))
    if not (path / "model.safetensors").is_file():
        raise FileNotFoundError(
            f"the trained tiny checkpoint is missing from {path}; rebuild it: {SHIPPED_COMMAND}"
        )
    return path


def write_trained(out_dir: str | Path) -> Path:
    """Copy the shipped trained checkpoint to ``out_dir`` (what ``vreason tiny DIR --trained`` does)."""
    out = Path(out_dir)
    shutil.copytree(shipped_checkpoint(), out, dirs_exist_ok=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=prog("train-tiny"), description=__doc__, formatter_class=HelpFormatter
    )
    parser.add_argument("out_dir", type=Path, help="folder to write the trained checkpoint to")
    defaults = TrainSpec()
    for name, value in asdict(defaults).items():
        parser.add_argument(
            f"--{name.replace('_', '-')}", type=type(value), default=value, help=f"training {name}"
        )
    parser.add_argument("--log-every", type=int, default=50, help="steps between two log lines")
    args = parser.parse_args(argv)
    spec = TrainSpec(**{name: getattr(args, name) for name in asdict(defaults)})
    path = train_tiny(args.out_dir, spec, log_every=args.log_every)
    print(f"wrote the trained tiny Qwen2.5-VL to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
