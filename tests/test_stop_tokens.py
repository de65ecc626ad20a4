"""Which token ids end a response (``stop_tokens``): the checkpoint's generation config by default,
the tokenizer's eos only (as lmms-eval's built-in backends stop) on request.

Reference: transformers ``generate`` called as each side calls it: with the generation config's eos
ids (what ``generate`` does by default) and with ``eos_token_id=tokenizer.eos_token_id`` (what
lmms-eval 0.7.3's ``qwen2_5_vl``, ``qwen2_vl`` and ``qwen3_vl`` pass). The tiny model is made to emit
``<|endoftext|>`` mid-answer (:func:`conftest.with_token_as_endoftext`), where the two differ.
"""

from __future__ import annotations

import pytest
from conftest import random_video, tiny_backend, video_chat, with_token_as_endoftext

from lmms_vreason.core.settings import GenerationSettings
from lmms_vreason.lmms.args import ArgumentError, parse_model_args

N_NEW = 12


@pytest.fixture(scope="module")
def setup(tiny_model_dir, tmp_path_factory):
    """(model dir emitting <|endoftext|> at step 2, the request) for a request whose greedy answer's
    second token is swapped with <|endoftext|>."""
    video = random_video(tmp_path_factory.mktemp("videos") / "clip.mp4", 8, 112, 112, 4)
    chat = video_chat(video, "What moves?")
    base = tiny_backend(tiny_model_dir, vreason=False)
    tokens = base._run_batch([chat], GenerationSettings(max_new_tokens=N_NEW), [0])[0].sequences[0]
    specials = set(base.tokenizer.all_special_ids)
    assert len(tokens) > 2 and tokens[1] != tokens[0] and tokens[1] not in specials, tokens
    model_dir = with_token_as_endoftext(tiny_model_dir, tmp_path_factory.mktemp("eot_model"), tokens[1])
    return model_dir, chat


def _reference(backend, chat, **eos):
    """transformers generate on the backend's own inputs, greedy; its new ids and its text."""
    media = backend._load_media(chat)
    inputs = backend._inputs([chat], [media])
    out = backend.model.generate(
        **inputs, max_new_tokens=N_NEW, do_sample=False, pad_token_id=backend.tokenizer.pad_token_id, **eos
    )
    new = out[0, inputs["input_ids"].shape[1] :].tolist()
    text = backend.processor.batch_decode([new], skip_special_tokens=True, clean_up_tokenization_spaces=False)
    return new, text[0]


def _ours(backend, chat):
    settings = GenerationSettings(max_new_tokens=N_NEW)
    out, inputs, peak = backend._run_batch([chat], settings, [0])
    [result] = backend._finish(out, inputs, settings, ["t"], [0], peak)
    return out.sequences[0], result.text


def test_default_stops_at_every_eos_of_the_generation_config(setup) -> None:
    model_dir, chat = setup
    backend = tiny_backend(model_dir, vreason=False)
    endoftext = backend.tokenizer.convert_tokens_to_ids("<|endoftext|>")
    assert backend.eos_token_ids == list(backend.model.generation_config.eos_token_id)
    assert endoftext in backend.eos_token_ids and backend.tokenizer.eos_token_id in backend.eos_token_ids
    tokens, text = _ours(backend, chat)
    assert tokens[-1] == endoftext and len(tokens) == 2  # stopped where <|endoftext|> was emitted
    assert (tokens, text) == _reference(backend, chat)


def test_tokenizer_stops_as_lmms_evals_builtin_backends_do(setup) -> None:
    model_dir, chat = setup
    backend = tiny_backend(model_dir, vreason=False, stop_tokens="tokenizer")
    endoftext = backend.tokenizer.convert_tokens_to_ids("<|endoftext|>")
    assert backend.eos_token_ids == [backend.tokenizer.eos_token_id] != [endoftext]
    tokens, text = _ours(backend, chat)
    assert tokens[1] == endoftext and len(tokens) > 2  # went on past <|endoftext|>
    assert (tokens, text) == _reference(backend, chat, eos_token_id=backend.tokenizer.eos_token_id)
    default_text = _ours(tiny_backend(model_dir, vreason=False), chat)[1]
    assert text != default_text and text.startswith(default_text)


def test_stop_tokens_is_validated_naming_the_choices() -> None:
    assert parse_model_args({}).stop_tokens == "generation_config"
    with pytest.raises(ArgumentError, match="stop_tokens") as exc:
        parse_model_args({"stop_tokens": "eos"})
    assert "generation_config" in str(exc.value) and "tokenizer" in str(exc.value)
