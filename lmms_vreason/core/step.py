"""One decode step of a transformers decoder, split at its last layer, eager or compiled.

``generate`` runs a whole model forward per token. V-Reason needs more structure than that: on an
optimising step the last layer must see the differentiable ``V_new(ΔV)`` while nothing before it
builds a graph. So the step is written out over the decoder's own modules (embedding, rotary
embedding, decoder layers, final norm, LM head; transformers' code does every piece) and split in two:

* the **trunk**, layers ``0 .. L-2``, always without autograd;
* the **head**, the last layer, the final norm and the LM head (and the entropy when the loop needs
  it); on an optimising step it runs with the controller spliced into the last layer's values and
  returns logits and entropy with a graph to ΔV, whose backward therefore covers one layer. Compiled,
  the LM head's part of that backward comes out of its forward pass, which reads the weight once
  (:mod:`lmms_vreason.core.fused_head`); eager, autograd does it (the reference).

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

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from lmms_vreason.core.controller import ValueController
from lmms_vreason.core.fused_head import chunk_rows, logits_entropy_and_input_grad
from lmms_vreason.core.kv import StaticKVCache
from lmms_vreason.core.objective import entropy, switch_loss

COMPILED_BUCKET = 256
"""Cache capacity is rounded up to this in compiled mode, so requests of different lengths share a graph."""
COMPILED_VIDEO_BUCKET = 64
"""Controlled video tokens per row are padded up to a multiple of this in compiled mode (same reason)."""
FUSED_CHUNK_BYTES = {False: 4 << 20, True: 16 << 20}
"""Bytes of LM-head weight per chunk of the compiled optimising step's one pass (CPU, CUDA): the chunk
is read again from cache (a CPU's L3, a GPU's L2) for the gradient."""


@dataclass(frozen=True)
class OptimisingStep:
    """What an optimising step returns: logits to sample from, the entropy, NaN/inf rows, and the way
    back from the objective to ΔV.

    ``fused`` is ``None`` when ``entropy`` carries the autograd graph (eager: autograd does the LM
    head's backward), else ``stack([x, dH/dx])`` for the final hidden state ``x`` (which carries the
    graph; compiled: the LM head's backward came out of the forward pass).
    """

    logits: torch.Tensor
    entropy: torch.Tensor
    broken: torch.Tensor
    delta: torch.Tensor
    fused: torch.Tensor | None = None

    def delta_grad(self, alpha: torch.Tensor) -> torch.Tensor:
        """The gradient of ``L = -Σ α H`` (Eq. 2) to ΔV."""
        with torch.enable_grad():
            if self.fused is None:
                (grad,) = torch.autograd.grad(switch_loss(self.entropy, alpha), self.delta)
            else:
                x, grad_x = self.fused[0], self.fused[1].detach()
                (grad,) = torch.autograd.grad(
                    x, self.delta, grad_outputs=-alpha.to(grad_x.dtype)[:, None] * grad_x
                )
        return grad


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

    @classmethod
    def of(cls, model: torch.nn.Module) -> DecoderParts:
        text = model.model.language_model
        return cls(
            embed_tokens=text.embed_tokens,
            rotary_emb=text.rotary_emb,
            layers=tuple(text.layers),
            norm=text.norm,
            lm_head=model.lm_head,
            attn_implementation=text.config._attn_implementation or "eager",
        )


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


def _lm_head_vocab_major(parts: DecoderParts) -> None:
    """Store a wide LM head's weight vocabulary-major (``[hidden, vocab]`` contiguous, seen as the same
    ``[vocab, hidden]`` parameter), on the CPU.

    A one-token step multiplies ``[1, hidden]`` by ``[hidden, vocab]``; with the weight in its usual
    ``[vocab, hidden]`` rows the CPU BLAS runs 151,936 short dot products and reads the matrix at a
    fraction of the memory bandwidth (measured: 2.5x slower at hidden 128, 1.2x at 896); column-major
    it streams it. Same values, same parameter object for a tied embedding, no extra memory.
    """
    head = parts.lm_head
    weight = head.weight
    vocab, hidden = weight.shape
    if vocab < 8 * hidden or not weight.is_contiguous():
        return
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
                _lm_head_vocab_major(parts)
            self._forward = self._compiled(self._forward_eager, self._graphs)
            self._trunk = self._compiled(self._trunk_eager, self._graphs)
            lm_head = parts.lm_head
            weight = lm_head.weight
            self._chunk_rows = chunk_rows(
                weight.shape[0],
                weight.shape[1],
                weight.element_size(),
                FUSED_CHUNK_BYTES[self.device.type == "cuda"],
            )
            head = self._head_with_grad_eager if lm_head.bias is not None else self._head_with_fused_lm_head
            self._head_with_grad = self._compiled(head, self._graphs)
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
        compiled = torch.compile(fn, fullgraph=True, options=options)

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
        for layer in parts.layers[:-1]:
            hidden = layer(
                hidden,
                attention_mask=cache.mask,
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
        hidden = self.parts.layers[-1](
            hidden,
            attention_mask=cache.mask,
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
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Logits, entropy (with its graph), NaN/inf rows: autograd does the LM head's backward."""
        logits = self._head(hidden, rope, positions, cache, _ControlledValues(cache, controller, delta))
        return logits, entropy(logits), _broken(logits.detach()), None

    def _head_with_fused_lm_head(
        self,
        hidden: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        positions: torch.Tensor,
        cache: StaticKVCache,
        controller: ValueController,
        delta: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Logits, entropy, NaN/inf rows, and the final hidden state (with its graph to ``delta``) with
        ``dH/dx``, all from one pass over the LM head (:mod:`lmms_vreason.core.fused_head`)."""
        parts = self.parts
        hidden = parts.layers[-1](
            hidden,
            attention_mask=cache.mask,
            position_embeddings=rope,
            position_ids=positions[0],
            cache=_ControlledValues(cache, controller, delta),
            use_cache=True,
        )
        cache.close_slot()
        x = parts.norm(hidden)[:, -1]
        logits, h, grad_x = logits_entropy_and_input_grad(x.detach(), parts.lm_head.weight, self._chunk_rows)
        return logits.to(self.device), h, _broken(logits), torch.stack([x, grad_x.to(x.dtype)])

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
            logits, h, broken, fused = self._head_with_grad(hidden, rope, positions, cache, controller, delta)
        return OptimisingStep(logits.detach(), h, broken, delta, fused)

    def _new_graph_step(self) -> None:
        if self._graphs:  # CUDA graphs: the previous step's outputs may now be overwritten
            torch.compiler.cudagraph_mark_step_begin()
