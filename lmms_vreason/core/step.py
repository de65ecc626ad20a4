"""One decode step of a transformers decoder, split at its last layer, eager or compiled.

``generate`` runs a whole model forward per token. V-Reason needs more structure than that: on an
optimising step the last layer must see the differentiable ``V_new(ΔV)`` while nothing before it
builds a graph. So the step is written out over the decoder's own modules (embedding, rotary
embedding, decoder layers, final norm, LM head; transformers' code does every piece) and split in two:

* the **trunk**, layers ``0 .. L-2``, always without autograd;
* the **head**, the last layer, the final norm and the LM head (and the entropy when the loop needs
  it); on an optimising step it runs with the controller spliced into the last layer's values and
  returns logits and entropy with a graph to ΔV, whose backward therefore covers one layer.

A step that does not optimise runs both halves as one function (:meth:`DecoderStep.forward`). With
``compile=True`` each function is ``torch.compile``'d with ``fullgraph=True`` (on CUDA
``mode="reduce-overhead"``: CUDA graphs, which the fixed-address cache of
:mod:`lmms_vreason.core.kv` makes possible); the head's backward is compiled with it (AOTAutograd).
Sampling stays outside the graphs. A compilation failure raises :class:`CompileError` naming the
cause; there is no silent fallback to eager.

Every step updates its state in place: the positions move on by one, the cache writes at its slot and
opens it in the mask, then closes it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from lmms_vreason.core.controller import ValueController
from lmms_vreason.core.kv import StaticKVCache
from lmms_vreason.core.objective import entropy, switch_loss

COMPILED_BUCKET = 256
"""Cache capacity is rounded up to this in compiled mode, so requests of different lengths share a graph."""
COMPILED_VIDEO_BUCKET = 64
"""Controlled video tokens per row are padded up to a multiple of this in compiled mode (same reason)."""


@dataclass(frozen=True)
class OptimisingStep:
    """What an optimising step returns: logits to sample from, the entropy (carrying its autograd graph
    to ΔV through the head), NaN/inf rows, and the way back from the objective to ΔV."""

    logits: torch.Tensor
    entropy: torch.Tensor
    broken: torch.Tensor
    delta: torch.Tensor

    def delta_grad(self, alpha: torch.Tensor) -> torch.Tensor:
        """The gradient of ``L = -Σ α H`` (Eq. 2) to ΔV (the head's backward, compiled with it)."""
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(switch_loss(self.entropy, alpha), self.delta)
        return grad


# Each DecoderStep compiles its own functions: with isolated caches a second model in the process
# (a test session, an lr sweep over checkpoints) does not count against the first one's recompile
# budget. Within one step every (bucket, rows) shape is one graph; a long run meets a handful of
# buckets, so the limit is raised from dynamo's default of 8 to keep a new bucket from being a
# hard failure under fullgraph. Older torch (no such arguments) gets the process-wide limit raised.
_RECOMPILE_LIMIT = 64
if "isolate_recompiles" in inspect.signature(torch.compile).parameters:
    _RECOMPILE_SETTINGS: dict[str, Any] = {"isolate_recompiles": True, "recompile_limit": _RECOMPILE_LIMIT}
else:  # pragma: no cover - torch < 2.12
    _RECOMPILE_SETTINGS = {}
    _dynamo_config = torch._dynamo.config
    _name = "recompile_limit" if hasattr(_dynamo_config, "recompile_limit") else "cache_size_limit"
    setattr(_dynamo_config, _name, max(getattr(_dynamo_config, _name), _RECOMPILE_LIMIT))


class CompileError(RuntimeError):
    """``torch.compile`` could not compile the decode step (raised at the first step, naming the cause)."""


@dataclass(frozen=True)
class DecoderParts:
    """The modules a step runs, taken from a transformers ``...ForConditionalGeneration``."""

    embed_tokens: torch.nn.Module
    rotary_emb: torch.nn.Module
    layers: tuple[torch.nn.Module, ...]
    norm: torch.nn.Module
    lm_head: torch.nn.Module
    attn_implementation: str
    linear: tuple[bool, ...] = ()
    """Per layer: a linear-attention layer (hybrid models), which takes no attention mask in a
    one-token step (as in transformers' own forward: a generated token is never padding); empty:
    none is."""

    @classmethod
    def of(cls, model: torch.nn.Module) -> DecoderParts:
        text = model.model.language_model
        layer_types = getattr(text.config, "layer_types", None) or ()
        return cls(
            embed_tokens=text.embed_tokens,
            rotary_emb=text.rotary_emb,
            layers=tuple(text.layers),
            norm=text.norm,
            lm_head=model.lm_head,
            attn_implementation=text.config._attn_implementation or "eager",
            linear=tuple(t == "linear_attention" for t in layer_types),
        )

    def is_linear(self, index: int) -> bool:
        return bool(self.linear) and self.linear[index]


def _broken(logits: torch.Tensor) -> torch.Tensor:
    """Rows whose logits hold NaN or inf (corrupt weights or inputs: such a row stops), ``[rows]``."""
    return ~torch.isfinite(logits).all(dim=-1)


def _update(
    controller: ValueController,
    grad: torch.Tensor,
    active: torch.Tensor,
    h: torch.Tensor,
    values: torch.Tensor,
) -> torch.Tensor:
    """An optimising step's update on the device (clip, masked AdamW, write-back); the rows that stepped."""
    return controller.apply_gradient(grad, active, h, values)


def _weights_input_major(parts: DecoderParts) -> None:
    """Store the decoder's linear weights input-major (``[in, out]`` contiguous, seen as the same
    ``[out, in]`` parameters), for the compiled step on the CPU.

    A one-token step is a chain of matrix-vector products, bound by how fast the weights stream from
    memory. This CPU's BLAS reads a row-major ``[out, in]`` weight at about 13 GB/s in that product and
    an input-major one at about 20 GB/s (a plain reduction: 23 GB/s; 48 weights of the 0.5B shape's
    MLP, far above the cache); for the wide LM head the gap is 2.6x. Same parameter objects (a tied
    embedding follows), same values, no extra memory; results change only by float rounding.
    """
    modules = [m for layer in parts.layers for m in layer.modules() if isinstance(m, torch.nn.Linear)]
    for module in (*modules, parts.lm_head):
        weight = module.weight
        if weight.is_contiguous() and weight.dim() == 2:
            weight.data = weight.data.t().contiguous().t()


class _ControlledValues:
    """The cache an optimising step's last layer sees: its values carry the differentiable ``V_new(ΔV)``."""

    def __init__(self, cache: StaticKVCache, controller: ValueController, delta: torch.Tensor) -> None:
        self.cache = cache
        self.controller = controller
        self.delta = delta

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        keys, values = self.cache.update(key_states, value_states, layer_idx, *args, **kwargs)
        return keys, self.controller.insert(values, self.delta)


def _logits(parts: DecoderParts, hidden: torch.Tensor, device: torch.device) -> torch.Tensor:
    """The last position's raw logits in at least float32 on ``device``, ``[rows, vocab]`` (as ``generate``)."""
    logits = parts.lm_head(parts.norm(hidden))[:, -1]
    return logits.to(dtype=torch.promote_types(logits.dtype, torch.float32), device=device)


class DecoderStep:
    """A model's one-token step (trunk + head), eager or compiled; one per model and mode.

    Args:
        parts: the model's decoder modules.
        compile: ``torch.compile`` the step functions (``fullgraph``; CUDA graphs on CUDA).
    """

    def __init__(self, parts: DecoderParts, *, compile: bool = False) -> None:
        if compile and parts.attn_implementation == "flash_attention_2":
            raise CompileError(
                "compile=true supports the sdpa and eager attention kernels, not flash_attention_2"
            )
        self.parts = parts
        self.compiled = compile
        self.device = parts.embed_tokens.weight.device
        self.additive_mask = parts.attn_implementation == "eager"
        """Eager attention adds its mask; the other kernels take a boolean one."""
        self.exact_length = not compile
        """Eager steps attend over exactly the slots written (a dynamic cache's shapes and rounding);
        compiled ones over the whole capacity, masked (one shape for every step)."""
        self.bucket = COMPILED_BUCKET if compile else 1
        self.video_bucket = COMPILED_VIDEO_BUCKET if compile else 1
        self._graphs = compile and self.device.type == "cuda"
        if compile:
            if self.device.type == "cpu":
                _weights_input_major(parts)
            self._forward = self._compiled(self._forward_eager, self._graphs)
            self._trunk = self._compiled(self._trunk_eager, self._graphs)
            self._head_with_grad = self._compiled(self._head_with_grad_eager, self._graphs)
            self.update = self._compiled(_update, self._graphs)
        else:
            self._forward, self._trunk = self._forward_eager, self._trunk_eager
            self._head_with_grad = self._head_with_grad_eager
            self.update = _update

    @staticmethod
    def _compiled(fn: Callable[..., Any], cuda_graphs: bool) -> Callable[..., Any]:
        # mode="reduce-overhead" is the option below; torch.compile takes a mode or options, not both.
        options: dict[str, Any] = {"triton.cudagraphs": True} if cuda_graphs else {}
        # The model's parameters are fixed for the life of a DecoderStep (one per model), so the guards
        # that re-check every parameter on every call (a millisecond per step at 24 layers) are skipped.
        skip = getattr(torch.compiler, "skip_guard_on_inbuilt_nn_modules_unsafe", None)
        if skip is not None:
            options["guard_filter_fn"] = skip
        compiled = torch.compile(fn, fullgraph=True, options=options, **_RECOMPILE_SETTINGS)

        def run(*args: Any, **kwargs: Any) -> Any:
            try:
                return compiled(*args, **kwargs)
            except Exception as exc:  # dynamo/inductor errors have no common base class
                if isinstance(exc, (torch.cuda.OutOfMemoryError, KeyboardInterrupt)):
                    raise
                cause = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise CompileError(
                    f"torch.compile failed on the decode step ({type(exc).__name__}: {cause})"
                ) from exc

        return run

    # the step's pieces (each compiles as it is) ------------------------------------------------
    def _trunk_eager(
        self, tokens: torch.Tensor, positions: torch.Tensor, cache: StaticKVCache
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        parts = self.parts
        positions.add_(1)
        cache.open_slot()
        hidden = parts.embed_tokens(tokens[:, None])
        rope = parts.rotary_emb(hidden, positions[1:])
        mask = cache.mask
        for index, layer in enumerate(parts.layers[:-1]):
            hidden = layer(
                hidden,
                attention_mask=None if parts.is_linear(index) else mask,
                position_embeddings=rope,
                position_ids=positions[0],
                cache=cache,
                use_cache=True,
            )
        return hidden, rope

    def _head(
        self,
        hidden: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        positions: torch.Tensor,
        cache: StaticKVCache,
        layer_cache: Any,
    ) -> torch.Tensor:
        last = len(self.parts.layers) - 1
        hidden = self.parts.layers[-1](
            hidden,
            attention_mask=None if self.parts.is_linear(last) else cache.mask,
            position_embeddings=rope,
            position_ids=positions[0],
            cache=layer_cache,
            use_cache=True,
        )
        cache.close_slot()
        return _logits(self.parts, hidden, self.device)

    def _forward_eager(
        self, tokens: torch.Tensor, positions: torch.Tensor, cache: StaticKVCache, with_entropy: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        hidden, rope = self._trunk_eager(tokens, positions, cache)
        logits = self._head(hidden, rope, positions, cache, cache)
        return logits, entropy(logits) if with_entropy else None, _broken(logits)

    def _head_with_grad_eager(
        self,
        hidden: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        positions: torch.Tensor,
        cache: StaticKVCache,
        controller: ValueController,
        delta: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Logits, their entropy (with its graph to ``delta``) and the NaN/inf rows."""
        logits = self._head(hidden, rope, positions, cache, _ControlledValues(cache, controller, delta))
        return logits, entropy(logits), _broken(logits.detach())

    # what the loop calls -------------------------------------------------------------------
    def forward(
        self, tokens: torch.Tensor, positions: torch.Tensor, cache: StaticKVCache, *, with_entropy: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """A step that does not optimise: the next logits ``[rows, vocab]``, their entropy (or
        ``None``) and which rows' logits hold NaN/inf (``[rows]`` bool)."""
        self._new_graph_step()
        with torch.no_grad():
            return self._forward(tokens, positions, cache, with_entropy)

    def forward_with_grad(
        self,
        tokens: torch.Tensor,
        positions: torch.Tensor,
        cache: StaticKVCache,
        controller: ValueController,
        delta: torch.Tensor,
    ) -> OptimisingStep:
        """An optimising step: its logits, entropy and NaN/inf rows, and the way back to ``delta`` (a
        leaf: the current ΔV)."""
        self._new_graph_step()
        with torch.no_grad():
            hidden, rope = self._trunk(tokens, positions, cache)
        with torch.enable_grad():
            logits, h, broken = self._head_with_grad(hidden, rope, positions, cache, controller, delta)
        return OptimisingStep(logits.detach(), h, broken, delta)

    def _new_graph_step(self) -> None:
        if self._graphs:  # CUDA graphs: the previous step's outputs may now be overwritten
            torch.compiler.cudagraph_mark_step_begin()
