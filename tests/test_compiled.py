"""The compiled decode step against the eager loop (its reference), mode by mode and family by family.

``compile=True`` runs the same loop with ``torch.compile``'d step functions (trunk, head, the head's
backward) over the whole preallocated cache; the eager loop is itself checked against ``generate``
and autograd by the other tests. Greedy tokens must be identical, logits and entropies equal to
float rounding, ΔV too. The tiny models are built with weights at std 0.2 so that their argmax
margins are far above the compiled kernels' rounding (at 0.02 the top logits are near-ties).

The fast suite runs one family through every mode that compiles a new graph; ``-m slow`` runs the
same matrix on every family and the lmms-eval command line with ``compile=true``.
"""

from __future__ import annotations

import pytest
import torch
from conftest import FAMILY_SPECS, LogitRecorder, load_model, make_batch_inputs, make_inputs

from lmms_vreason.core.decode import decode
from lmms_vreason.core.settings import GenerationSettings, VReasonSettings
from lmms_vreason.models import adapter_for
from lmms_vreason.testing.tiny import TinySpec, build_tiny_model

STEPS = 10
SAMPLES = [
    {"frames": 4, "size": 56, "seed": 1, "question": "Which square moves first, and which one follows it?"},
    {"frames": 8, "size": 84, "seed": 2, "question": "What moves?"},
]
MODES = {
    "plain": None,
    "vreason-k4": VReasonSettings(step_size=4, lr=0.05),
    "vreason-k1-head": VReasonSettings(step_size=1, lr=0.05, norm_scope="head"),
    "vreason-k2-token": VReasonSettings(step_size=2, lr=0.05, norm_scope="token"),
    "lite-k2": VReasonSettings(step_size=2, lr=0.05, lite=True),
    "prune-only": VReasonSettings(vreason=False, lite=True, prune_only=True),
    "lr-grid": VReasonSettings(step_size=2, lr_grid="0.02:0.1"),
}


@pytest.fixture(scope="module")
def kits(tmp_path_factory):
    """One tiny model per family (std 0.2), its processor, and a single and a ragged batch input."""
    from transformers import AutoProcessor

    built = {}

    def get(family: str):
        if family not in built:
            spec = TinySpec(**{**FAMILY_SPECS[family].__dict__, "init_std": 0.2})
            path = build_tiny_model(tmp_path_factory.mktemp(f"compiled_{family}"), spec)
            kwargs = (
                {}
                if family == "qwen3_vl"
                else {"size": {"shortest_edge": 4 * 28 * 28, "longest_edge": 64 * 28 * 28}}
            )
            processor = AutoProcessor.from_pretrained(path, **kwargs)
            built[family] = (adapter_for(load_model(path)), processor)
        return built[family]

    return get


def _run(adapter, inputs, cfg, *, compile, settings=None, generators=None):
    probe = LogitRecorder()
    out = decode(
        adapter,
        inputs,
        settings or GenerationSettings(max_new_tokens=STEPS),
        cfg,
        probe=probe,
        generators=generators,
        track_entropy=True,
        compile=compile,
    )
    return out, torch.stack(probe.logits, dim=1)  # [rows, T, V]


def _assert_same(eager, compiled):
    (a, a_logits), (b, b_logits) = eager, compiled
    assert b.sequences == a.sequences
    assert a_logits.shape == b_logits.shape
    torch.testing.assert_close(b_logits, a_logits, rtol=0, atol=5e-5)
    torch.testing.assert_close(b.stats.entropy, a.stats.entropy, rtol=0, atol=5e-5)
    assert torch.equal(b.stats.optimized, a.stats.optimized)
    assert b.stats.skipped_steps.tolist() == a.stats.skipped_steps.tolist() == [0] * len(a.sequences)
    assert b.stats.video_tokens_after.tolist() == a.stats.video_tokens_after.tolist()
    if a.controller is not None:
        n = a.controller.delta.shape[2]  # the compiled controller pads its slots to a bucket
        # Adam divides by the gradient's running RMS, so an entry whose gradient is near zero moves by
        # its rounding: compare ΔV as a whole (relative norm) and bound every entry loosely.
        diff = b.controller.delta[:, :, :n] - a.controller.delta
        assert float(diff.norm() / a.controller.delta.norm()) < 1e-3
        assert float(diff.abs().max()) < 1e-3
        assert int(torch.count_nonzero(b.controller.delta[:, :, n:])) == 0
        assert float(a.controller.delta.abs().max()) > 1e-3  # ΔV moved: not a comparison of zeros


def _check_family(kits, family: str, modes: list[str], *, single: bool = True, sampling: bool = True) -> None:
    """Every mode on the ragged batch (and on one sample alone), eager vs compiled."""
    adapter, processor = kits(family)
    batch = make_batch_inputs(processor, SAMPLES)
    inputs = [batch, make_inputs(processor, **SAMPLES[1])] if single else [batch]
    for name in modes:
        for request in inputs:
            eager = _run(adapter, request, MODES[name], compile=False)
            _assert_same(eager, _run(adapter, request, MODES[name], compile=True))
    if not sampling:
        return
    # Seeded sampling: every row draws from its own generator, as the backend does.
    settings = GenerationSettings(max_new_tokens=STEPS, do_sample=True, temperature=1.2, top_p=0.9)

    def seeded():
        return [torch.Generator().manual_seed(11), torch.Generator().manual_seed(12)]

    cfg = MODES["vreason-k4"]
    eager = _run(adapter, batch, cfg, compile=False, settings=settings, generators=seeded())
    _assert_same(eager, _run(adapter, batch, cfg, compile=True, settings=settings, generators=seeded()))


FAST_MODES = ["plain", "vreason-k4"]


def test_compiled_equals_eager_plain_and_vreason(kits):
    _check_family(kits, "qwen2_5_vl", FAST_MODES, sampling=False)


@pytest.mark.slow
def test_compiled_equals_eager_every_mode(kits):
    _check_family(kits, "qwen2_5_vl", [m for m in MODES if m not in FAST_MODES])


@pytest.mark.slow
@pytest.mark.parametrize("family", ["qwen3_vl", "qwen2_vl"])
def test_compiled_equals_eager_other_families(kits, family):
    _check_family(kits, family, list(MODES), single=False)


def test_compiled_plain_loop_equals_generate(kits):
    """The compiled loop against transformers' ``generate`` directly (tokens; logits to rounding)."""
    adapter, processor = kits("qwen2_5_vl")
    inputs = make_inputs(processor, **SAMPLES[0])
    out = adapter.model.generate(
        **inputs,
        max_new_tokens=STEPS,
        eos_token_id=None,
        do_sample=False,
        output_logits=True,
        return_dict_in_generate=True,
    )
    ours, logits = _run(adapter, inputs, None, compile=True)
    assert ours.sequences[0] == out.sequences[0, inputs["input_ids"].shape[1] :].tolist()
    torch.testing.assert_close(logits[0], torch.stack([lg[0] for lg in out.logits]), rtol=0, atol=2e-5)


def test_compile_failure_names_its_cause(kits, monkeypatch):
    """A compilation error surfaces as CompileError with the cause, never as a silent eager fallback."""
    from lmms_vreason.core import step as step_module

    adapter, processor = kits("qwen2_5_vl")

    def broken_compile(fn, **kwargs):
        def fail(*args, **kw):
            raise RuntimeError("inductor exploded: no C++ compiler")

        return fail

    monkeypatch.setattr(step_module.torch, "compile", broken_compile)
    fresh = adapter_for(adapter.model)  # a new adapter: its compiled step is built anew
    with pytest.raises(step_module.CompileError, match="inductor exploded: no C\\+\\+ compiler"):
        decode(fresh, make_inputs(processor), GenerationSettings(max_new_tokens=3), None, compile=True)


@pytest.mark.slow
def test_lmms_eval_samples_equal_with_and_without_compile(tmp_path_factory):
    """Through lmms-eval's command line: compile=true writes the samples compile=false writes."""
    from test_backend_e2e import PIXELS, read_samples, response, run_lmms_eval

    from lmms_vreason.testing.fixtures import make_fixture_bench

    data = make_fixture_bench(tmp_path_factory.mktemp("fixture"))
    spec = TinySpec(**{**FAMILY_SPECS["qwen2_5_vl"].__dict__, "init_std": 0.2})
    model_dir = build_tiny_model(tmp_path_factory.mktemp("compiled_e2e"), spec)
    runs = {}
    for compile in ("false", "true"):
        out = tmp_path_factory.mktemp(f"compile_{compile}")
        args = f"pretrained={model_dir},device=cpu,dtype=float32,{PIXELS},nframes=4,step_size=2,lr=0.05,compile={compile}"
        proc = run_lmms_eval(out, "qwen2_5_vl_vreason", args, data, limit=3)
        runs[compile] = read_samples(out)
        if compile == "true":
            assert "compiled the decode step" in proc.stdout + proc.stderr
    eager, compiled = runs["false"], runs["true"]
    assert sorted(eager) == sorted(compiled) == [0, 1, 2]
    for doc_id, row in eager.items():
        assert response(compiled[doc_id]) == response(row) != ""
        assert compiled[doc_id]["target"] == row["target"]


def test_backend_compile_failure_stops_at_start_up(tiny_model_dir, monkeypatch):
    """compile=true compiles while the backend starts (a warm-up request of the run's mode): a
    compilation error stops the run there, named, before lmms-eval hands it any request."""
    from conftest import tiny_backend

    from lmms_vreason.core import step as step_module

    def broken_compile(fn, **kwargs):
        def fail(*args, **kw):
            raise RuntimeError("no working C++ compiler found")

        return fail

    monkeypatch.setattr(step_module.torch, "compile", broken_compile)
    with pytest.raises(step_module.CompileError, match="no working C\\+\\+ compiler found"):
        tiny_backend(tiny_model_dir, compile="true", step_size=2)
    backend = tiny_backend(tiny_model_dir, compile="auto")  # auto on the CPU: eager, nothing compiled
    assert backend.compile is False
