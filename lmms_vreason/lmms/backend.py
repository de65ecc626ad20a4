"""The V-Reason lmms-eval backends: a thin adapter around :func:`lmms_vreason.core.decode.decode`.

One backend class, :class:`VReasonBackend`, serves every model family; each lmms-eval model id is a
subclass that only names its :class:`~lmms_vreason.models.families.ModelFamily`
(``qwen2_5_vl_vreason``, ``qwen3_vl_vreason``, ``qwen2_vl_vreason``, ``qwen3_vl_moe_vreason``,
``qwen3_5_vreason``, ``qwen3_5_moe_vreason``). It turns lmms-eval chat
requests into the family's processor inputs, runs our decode loop, and returns
``GenerationResult``s. Videos are read as Video-R1's evaluation reads them (2 fps within [4, 32]
frames, per-frame pixels 128*28*28 upscaled or capped; :mod:`lmms_vreason.media.protocol`), with
frame sides rounded to the model's own patch x merge (28 px, 32 on Qwen3-VL).
Differences from the built-in backends, on purpose: that frame reading; ``until``/``top_k``/
``do_sample`` are honoured and unknown generation kwargs are errors; unknown model arguments fail at
start-up naming the valid ones; a sample whose video cannot be read fails alone (a marked response
naming the cause) instead of the run, and every sample's media is read once, before batching (on a
GPU the next batch's in a worker process while this one decodes: :mod:`lmms_vreason.lmms.prefetch`); the
system prompt is the chat template's own unless ``system_prompt`` is given (lmms-eval's ``qwen3_vl``
always adds "You are a helpful assistant.", which Qwen3-VL's template does not); a response ends at
every eos id of the checkpoint's generation config, not only the tokenizer's (``stop_tokens``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any, ClassVar

import torch
from lmms_eval import utils as lmms_utils
from lmms_eval.api.instance import GenerationResult, Instance, TokenCounts
from lmms_eval.api.model import lmms
from lmms_eval.protocol import ChatMessages
from loguru import logger
from tqdm import tqdm
from transformers import StoppingCriteriaList

from lmms_vreason.benchmarks import MEDIA_ERROR_PREFIX, NUMERIC_ERROR_PREFIX
from lmms_vreason.core.decode import DecodeOutput, decode
from lmms_vreason.core.sampling import cut_at_stop_strings, stopping_criteria
from lmms_vreason.core.settings import GenerationSettings
from lmms_vreason.lmms.args import ArgumentError, merge_host_config, parse_model_args
from lmms_vreason.lmms.media import (
    FrameCount,
    MediaError,
    MediaRequest,
    SampleMedia,
    load_sample_media,
    processor_inputs,
)
from lmms_vreason.lmms.prefetch import MediaPipeline, MediaStats
from lmms_vreason.lmms.run_output import check_writable, running_output_path
from lmms_vreason.models import adapter_for
from lmms_vreason.models.families import (
    QWEN2_5_VL,
    QWEN2_VL,
    QWEN3_5,
    QWEN3_5_MOE,
    QWEN3_VL,
    QWEN3_VL_MOE,
    ModelFamily,
    family_named,
)
from lmms_vreason.provenance import run_info, write_run_info
from lmms_vreason.telemetry import GridResponse, GridResponseWriter, SampleTrace, TelemetryWriter

THINK_OPEN = "<think>\n"
"""What a thinking-mode generation prompt ends with (Qwen3.5's template); the response keeps it."""

_DTYPES = {
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
    "float32": torch.float32,
    "float64": torch.float64,
}


def check_checkpoint_family(family: ModelFamily, pretrained: str) -> None:
    """Fail before any weight loads when ``pretrained`` is not a checkpoint of ``family``.

    The loop would follow the checkpoint (its adapter comes from ``model_type``), but the results
    would be filed under the wrong ``--model``, with another family's defaults.
    """
    from transformers import AutoConfig

    model_type = AutoConfig.from_pretrained(pretrained).model_type
    if model_type == family.name:
        return
    try:
        hint = f": use --model {family_named(model_type).backend}"
    except ValueError:
        hint = ""
    raise ArgumentError(
        f"{family.backend} runs {family.label} checkpoints; pretrained={pretrained} is a {model_type!r} model{hint}"
    )


def stop_token_ids(source: str, generation_config: Any, tokenizer: Any) -> list[int]:
    """The ids that end a response (docs/method.md §3, "Stop tokens").

    ``generation_config`` (default): every id of the checkpoint's ``generation_config.eos_token_id``,
    what transformers ``generate`` and Video-R1's vLLM stop at (``<|im_end|>`` and ``<|endoftext|>`` on
    the Qwen2/2.5-VL checkpoints), falling back to the tokenizer's eos when it names none.
    ``tokenizer``: the tokenizer's eos only, what lmms-eval's built-in Qwen-VL backends pass to
    ``generate`` (``eos_token_id=tokenizer.eos_token_id``), for comparisons against them.
    """
    if source == "generation_config":
        eos = generation_config.eos_token_id
        if isinstance(eos, int):
            return [eos]
        if eos:
            return [int(i) for i in eos]
    if tokenizer.eos_token_id is None:
        raise ArgumentError(f"stop_tokens={source}: the checkpoint's tokenizer has no eos token to stop at")
    return [int(tokenizer.eos_token_id)]


class VReasonBackend(lmms):
    """A Qwen-VL model with V-Reason inference-time optimisation; subclasses set :attr:`family`."""

    is_simple = False
    family: ClassVar[ModelFamily]

    @classmethod
    def create_from_arg_string(
        cls, arg_string: str, additional_config: dict[str, Any] | None = None
    ) -> VReasonBackend:
        """lmms-eval's constructor hook, with a clear error where ``--model_args`` repeats a CLI option."""
        model_args = lmms_utils.simple_parse_args_string(arg_string)
        return cls(**merge_host_config(model_args, additional_config or {}))

    def __init__(self, **kwargs: Any) -> None:
        super().__init__()
        family = self.family
        args = self.args = parse_model_args(kwargs, backend=family.backend)
        self.vreason = args.vreason_settings
        self.batch_size_per_gpu = args.batch_size
        # lmms-eval writes its outputs only after generating everything: find out now that it can.
        output_path = running_output_path(sys.argv)
        if output_path is not None:
            check_writable(output_path)
        self.telemetry_dir = args.telemetry_dir or output_path
        for wanted, what in ((args.telemetry, "telemetry=true"), (args.lr_grid is not None, "lr_grid")):
            if wanted and not self.telemetry_dir:
                raise ArgumentError(f"{what} needs telemetry_dir=... or lmms-eval's --output_path")
        if args.telemetry or args.lr_grid is not None:
            check_writable(self.telemetry_dir, "telemetry_dir")

        from accelerate import Accelerator
        from transformers import AutoModelForImageTextToText, AutoProcessor

        accelerator = Accelerator()
        self.accelerator = accelerator
        if accelerator.num_processes > 1:  # data parallel: one model per process, where accelerate puts it
            self._device = accelerator.device
            device_map: Any = str(self._device)
            self._rank, self._world_size = accelerator.process_index, accelerator.num_processes
        else:
            self._device = torch.device(args.device)
            device_map = args.device_map or args.device
            self._rank, self._world_size = 0, 1
        load_kwargs: dict[str, Any] = {"dtype": _DTYPES[args.dtype], "device_map": device_map}
        if args.attn_implementation is not None:
            load_kwargs["attn_implementation"] = args.attn_implementation
        check_checkpoint_family(family, args.pretrained)
        self._model = AutoModelForImageTextToText.from_pretrained(args.pretrained, **load_kwargs).eval()
        # The processor neither samples nor resizes (PROCESSOR_KWARGS): our reader applies Video-R1's rules.
        self.processor = AutoProcessor.from_pretrained(args.pretrained)
        self._tokenizer = self.processor.tokenizer
        self.adapter = adapter_for(self._model)
        self.template_kwargs, self.response_prefix = self._thinking_mode()
        if self.vreason.controls:  # a hybrid checkpoint whose last layer caches no values
            try:
                self.adapter.check_controllable()
            except ValueError as exc:
                raise ArgumentError(f"{family.backend}: {exc}") from exc
        video_processor = self.processor.video_processor
        self.frames = args.frame_settings(
            factor=video_processor.patch_size * video_processor.merge_size,
            temporal_factor=video_processor.temporal_patch_size,
        )
        self.eos_token_ids = stop_token_ids(args.stop_tokens, self._model.generation_config, self._tokenizer)
        pad = self._tokenizer.pad_token_id
        self.pad_token_id = int(pad if pad is not None else self.eos_token_ids[0])
        self.compile = args.compiles(self._device.type)
        self.run_label = datetime.now().strftime("%Y%m%d_%H%M%S")
        self._telemetry: TelemetryWriter | None = None
        self._grid_writer: GridResponseWriter | None = None
        self._stopping: dict[tuple[str, ...], StoppingCriteriaList] = {}
        self.media_failures = 0
        self.numeric_failures = 0
        self.short_samples = 0
        # A worker reads the next chunk's videos while this one decodes: on a GPU, where the CPU is
        # otherwise idle; on the CPU the worker would take the decode loop's own cores.
        self.prefetch = args.prefetch == "true" or (
            args.prefetch == "auto" and self.adapter.device.type == "cuda"
        )
        self.media_stats = MediaStats()
        if self._rank == 0:
            logger.info(f"{family.backend}: {self.vreason}; videos: {self.frames.describe()}")
        if output_path is not None:  # what only this process knows, for `vreason bundle`
            write_run_info(
                output_path,
                run_info(
                    rank=self._rank,
                    world_size=self._world_size,
                    device=self._device,
                    pretrained=args.pretrained,
                    model_args=args.model_dump(mode="json"),
                    label=self.run_label,
                ),
            )
        if self.compile:
            self._warm_up()

    def _thinking_mode(self) -> tuple[dict[str, Any], str]:
        """The chat template's thinking variables and the text every response starts with
        (README, "Thinking mode").

        A family with a native thinking mode (Qwen3.5) always gets ``enable_thinking`` explicitly:
        off (default), its template's non-thinking prompt (an empty think block the model does not
        write); on, a prompt that ends by opening a think block, which the response then keeps
        (``<think>\n`` + the generated text), so lmms-eval's reasoning-tag filter and the tasks'
        first-``<answer>`` rule see the native block closed. Other families take no such argument.
        """
        if not self.family.native_thinking:
            if self.args.enable_thinking:
                raise ArgumentError(
                    f"enable_thinking: {self.family.label}'s chat template has no thinking mode "
                    f"(families with one: Qwen3.5, Qwen3.5-MoE)"
                )
            return {}, ""
        kwargs = {"enable_thinking": self.args.enable_thinking}
        if not self.args.enable_thinking:
            return kwargs, ""
        probe = [{"role": "user", "content": [{"type": "text", "text": "?"}]}]
        prompt = self.processor.apply_chat_template(
            probe, tokenize=False, add_generation_prompt=True, **kwargs
        )
        if not prompt.endswith(THINK_OPEN):
            raise ArgumentError(
                f"enable_thinking=true: this checkpoint's chat template does not open a think block "
                f"(its generation prompt ends {prompt[-24:]!r}, not {THINK_OPEN!r})"
            )
        return kwargs, THINK_OPEN

    def _warm_up(self) -> None:
        """Compile the decode step now, on a synthetic request of this run's mode: a compilation
        failure stops the run at start-up (:class:`CompileError` naming the cause), not mid-run."""
        import math

        started = time.perf_counter()
        side = self.frames.factor * math.ceil(math.sqrt(self.frames.min_pixels) / self.frames.factor)
        frames = torch.zeros(self.frames.temporal_factor * 2, 3, side, side, dtype=torch.uint8)
        meta = {"fps": 2.0, "frames_indices": list(range(len(frames))), "total_num_frames": len(frames)}
        content = [{"type": "video", "url": "warm-up.mp4"}, {"type": "text", "text": "warm-up"}]
        chat = ChatMessages(messages=[{"role": "user", "content": content}])
        inputs = self._inputs([chat], [SampleMedia(videos=[frames], metadata=[meta])])
        steps = self.vreason.step_size + 1  # through an optimising step when V-Reason is on
        decode(
            self.adapter,
            inputs,
            GenerationSettings(max_new_tokens=steps),
            self.vreason,
            pad_token_id=self.pad_token_id,
            track_entropy=self.args.telemetry,
            compile=True,
        )
        if self._rank == 0:
            logger.info(f"compiled the decode step in {time.perf_counter() - started:.1f} s (compile=true)")

    @property
    def grid_writer(self) -> GridResponseWriter:
        """This rank's lr-grid response file (every lr's response of every request)."""
        if self._grid_writer is None or self._grid_writer.rank != self.rank:
            assert self.telemetry_dir is not None  # checked at start-up for lr_grid runs
            self._grid_writer = GridResponseWriter(self.telemetry_dir, self.rank)
        return self._grid_writer

    @property
    def telemetry(self) -> TelemetryWriter | None:
        """This rank's telemetry file, opened on first use: lmms-eval sets the rank after construction."""
        if not self.args.telemetry or self.telemetry_dir is None:
            return None
        if self._telemetry is None or self._telemetry.rank != self.rank:
            self._telemetry = TelemetryWriter(self.telemetry_dir, self.rank)
        return self._telemetry

    # lmms-eval's model interface -------------------------------------------------------------
    @property
    def model(self) -> torch.nn.Module:
        return self._model

    @property
    def tokenizer(self) -> Any:
        return self._tokenizer

    @property
    def batch_size(self) -> int:
        return self.batch_size_per_gpu

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def eot_token_id(self) -> int:
        return self.eos_token_ids[0]

    def loglikelihood(self, requests: list[Instance]) -> list[tuple[float, bool]]:
        raise NotImplementedError(f"{self.family.backend} only generates (generate_until tasks)")

    def generate_until_multi_round(self, requests: list[Instance]) -> list[str]:
        raise NotImplementedError(f"{self.family.backend} does not support multi-round generation")

    # generation -------------------------------------------------------------------------------
    def _messages(self, doc_to_messages: Any, doc_id: int, task: str, split: str) -> ChatMessages:
        raw = doc_to_messages(self.task_dict[task][split][doc_id])
        if self.args.system_prompt:
            raw = self._apply_system_prompt(raw, self._resolve_system_prompt(self.args.system_prompt))
        return ChatMessages(messages=raw)

    def _load_media(self, chat: ChatMessages) -> SampleMedia:
        """One sample's visuals, read once (:class:`MediaError` if a file cannot be read)."""
        return load_sample_media(chat, self.frames)

    def _inputs(self, chats: list[ChatMessages], media: Sequence[SampleMedia]) -> dict[str, torch.Tensor]:
        return processor_inputs(self.processor, [self._request(chat) for chat in chats], media)

    def _request(self, chat: ChatMessages) -> MediaRequest:
        return MediaRequest.of(chat, self.template_kwargs)

    def _stopping_for(self, until: tuple[str, ...]) -> StoppingCriteriaList:
        """EOS + ``until`` criteria, built once per stop-string set (building scans the vocabulary)."""
        if until not in self._stopping:
            self._stopping[until] = stopping_criteria(self.eos_token_ids, until, self._tokenizer)
        return self._stopping[until]

    def _seeded_generator(self, doc_id: int) -> torch.Generator:
        """The sampler's generator of one request: a function of (seed, doc id) only."""
        gen = torch.Generator(device=self.adapter.device)
        gen.manual_seed(self.args.seed * 1_000_003 + int(doc_id))
        return gen

    def _run_batch(
        self,
        chats: list[ChatMessages],
        settings: GenerationSettings,
        doc_ids: Sequence[int],
    ) -> tuple[DecodeOutput, dict[str, torch.Tensor], float | None]:
        """Read ``chats``' media and decode them together."""
        inputs = self._inputs(chats, [self._load_media(chat) for chat in chats])
        return self._decode_inputs(inputs, settings, doc_ids)

    def _decode_inputs(
        self, inputs: dict[str, torch.Tensor], settings: GenerationSettings, doc_ids: Sequence[int]
    ) -> tuple[DecodeOutput, dict[str, torch.Tensor], float | None]:
        """Decode processor outputs; the outputs, the inputs (on the device) and the CUDA peak memory."""
        device = self.adapter.device
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            # Prefetched inputs arrive pinned: their copy is queued ahead of the prefill, the host goes on.
            inputs = {
                k: v.to(device, non_blocking=v.is_pinned()) if isinstance(v, torch.Tensor) else v
                for k, v in inputs.items()
            }
        out = decode(
            self.adapter,
            inputs,
            settings,
            self.vreason,
            stopping=self._stopping_for(settings.until),
            pad_token_id=self.pad_token_id,
            generators=[self._seeded_generator(d) for d in doc_ids] if settings.do_sample else None,
            track_entropy=self.telemetry is not None,
            compile=self.compile,
        )
        peak = float(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else None
        return out, inputs, peak

    def generate_until(self, requests: list[Instance]) -> list[GenerationResult]:
        results: list[GenerationResult] = []
        collator = lmms_utils.Collator(
            [req.args for req in requests], lambda x: (x[3], x[3]), group_fn=lambda x: x[2], grouping=True
        )
        bar = tqdm(
            total=len(requests),
            disable=self._rank != 0,
            desc="V-Reason decoding" if self.vreason.controls else "Decoding",
        )
        tokens_out, started = 0, time.perf_counter()
        # Each sample's media is read once, before batching: a broken file fails its own sample and
        # the others are decoded together. With prefetch, chunk i+1 is read in a worker process
        # while chunk i decodes (lmms_vreason.lmms.prefetch); the inputs and errors are the same.
        pipeline = MediaPipeline(
            self.processor, self.frames, prefetch=self.prefetch, device=self.adapter.device
        )
        with pipeline:
            chunks = pipeline.chunks(
                collator.get_batched(n=self.batch_size, batch_fn=None), self._chunk_requests
            )
            for chunk, prepared in chunks:
                _, _, all_gen_kwargs, doc_ids, tasks, _ = zip(*chunk)
                try:
                    settings = GenerationSettings.from_gen_kwargs(all_gen_kwargs[0])
                except ValueError as exc:
                    raise ValueError(f"task {tasks[0]}: {exc}") from exc
                by_position = {
                    i: self._media_failure(exc, tasks[i], doc_ids[i]) for i, exc in prepared.failures.items()
                }
                for i in prepared.loaded:
                    self._note_short_videos(prepared.frame_counts.get(i, []), tasks[i], doc_ids[i])
                if prepared.inputs is not None:
                    keep = prepared.loaded
                    out, inputs, peak = self._decode_inputs(
                        prepared.inputs, settings, [doc_ids[i] for i in keep]
                    )
                    decoded = self._finish(
                        out,
                        inputs,
                        settings,
                        [tasks[i] for i in keep],
                        [doc_ids[i] for i in keep],
                        peak,
                        [prepared.frame_counts.get(i, []) for i in keep],
                    )
                    by_position.update(zip(keep, decoded))
                    tokens_out += sum(r.token_counts.output_tokens or 0 for r in decoded if r.token_counts)
                results.extend(by_position[i] for i in range(len(chunk)))
                bar.update(len(chunk))
                bar.set_postfix(tok_s=f"{tokens_out / max(time.perf_counter() - started, 1e-9):.1f}")
        bar.close()
        self.media_stats = pipeline.stats
        self._log_media_wait(pipeline.stats, time.perf_counter() - started)
        if self.media_failures:
            logger.warning(
                f"{self.media_failures} sample(s) failed: their video could not be read (see errors above)"
            )
        if self.short_samples:
            logger.warning(
                f"{self.short_samples} sample(s) read fewer video frames than asked: their clips are shorter "
                "(see the warnings above; telemetry frames_asked/frames_read)"
            )
        if self.numeric_failures:
            logger.warning(
                f"{self.numeric_failures} sample(s) failed: the model produced NaN/inf logits "
                f"(responses start with {NUMERIC_ERROR_PREFIX.strip()!r}; check the weights and dtype)"
            )
        return collator.get_original(results)

    def _chunk_requests(self, chunk: Sequence[tuple[Any, ...]]) -> list[MediaRequest]:
        """What the media step needs of every request of a chunk (lmms-eval's request arguments)."""
        return [self._request(self._messages(f, d, t, s)) for _, f, _, d, t, s in chunk]

    def _log_media_wait(self, stats: MediaStats, seconds: float) -> None:
        if self._rank == 0 and stats.chunks:
            how = (
                f"prefetched {stats.prefetched} of {stats.chunks} chunks" if self.prefetch else "prefetch off"
            )
            logger.info(
                f"media: the decode loop waited {stats.wait_s:.1f} s of {seconds:.1f} s for videos "
                f"({stats.wait_s / max(seconds, 1e-9):.0%}; {how})"
            )

    def _note_short_videos(self, counts: Sequence[FrameCount], task: str, doc_id: int) -> None:
        """One warning per sample whose clip gave fewer frames than the reading asked for (Video-R1 reads
        such clips as they are; docs/method.md §3), counted for the end-of-run summary."""
        short = [count for count in counts if count.short]
        if short:
            self.short_samples += 1
            logger.warning(
                f"[{task} doc {doc_id}] fewer video frames than asked: "
                + "; ".join(count.describe() for count in short)
            )

    def _media_failure(self, exc: MediaError, task: str, doc_id: int) -> GenerationResult:
        self.media_failures += 1
        logger.error(f"[{task} doc {doc_id}] sample failed: {exc}")
        text = f"{MEDIA_ERROR_PREFIX}{exc}"
        if self.telemetry is not None:
            self.telemetry.write(
                SampleTrace(task=task, doc_id=int(doc_id), rank=self.rank, run=self.run_label, error=str(exc))
            )
        if self.vreason.lr_grid is not None:  # the sample fails at every lr of the grid
            self.grid_writer.write_all(
                GridResponse(
                    task=task, doc_id=int(doc_id), lr=lr, response=text, rank=self.rank, error=str(exc)
                )
                for lr in self.vreason.lr_grid
            )
        return GenerationResult(text=text, token_counts=TokenCounts(output_tokens=0))

    def _finish(
        self,
        out: DecodeOutput,
        inputs: dict[str, torch.Tensor],
        settings: GenerationSettings,
        tasks: Sequence[str],
        doc_ids: Sequence[int],
        peak: float | None,
        frame_counts: Sequence[Sequence[FrameCount]] | None = None,
    ) -> list[GenerationResult]:
        """One result per request; with an lr grid, the first lr's row (every row goes to the grid file).

        ``frame_counts`` (per request, per video) gives telemetry the frames asked and read."""
        mask = inputs.get("attention_mask")
        layout = out.layout
        lrs = layout.lrs if layout.lrs is not None else (self.vreason.lr,)
        results = []
        for b, (task, doc_id) in enumerate(zip(tasks, doc_ids, strict=True)):
            n_in = int(mask[b].sum()) if mask is not None else int(inputs["input_ids"].shape[1])
            rows = [layout.row(b, g) for g in range(layout.per_request)]
            responses = [self._response(out, row, settings) for row in rows]
            (text, error), scored = responses[0], layout.scored_row(b)
            if error is not None:
                self.numeric_failures += 1
                logger.error(f"[{task} doc {doc_id}] sample failed: {error}")
            n_out = len(out.sequences[scored])
            results.append(
                GenerationResult(text=text, token_counts=TokenCounts(input_tokens=n_in, output_tokens=n_out))
            )
            if self.telemetry is not None:
                trace = self._trace(out, scored, task, doc_id, n_in, n_out, peak)
                trace.error = error
                if frame_counts is not None:
                    trace.frames_asked = [count.asked for count in frame_counts[b]]
                    trace.frames_read = [count.read for count in frame_counts[b]]
                self.telemetry.write(trace)
            if layout.lrs is not None:
                self.grid_writer.write_all(
                    GridResponse(
                        task=task,
                        doc_id=int(doc_id),
                        lr=lr,
                        response=row_text,
                        output_tokens=len(out.sequences[row]),
                        opt_steps=int(out.stats.opt_steps[row]),
                        skipped_steps=int(out.stats.skipped_steps[row]),
                        rank=self.rank,
                        run=self.run_label,
                        error=row_error,
                    )
                    for row, lr, (row_text, row_error) in zip(rows, lrs, responses, strict=True)
                )
        return results

    def _response(self, out: DecodeOutput, row: int, settings: GenerationSettings) -> tuple[str, str | None]:
        """A row's text, or the numeric-error marker when its logits became NaN/inf (and the reason)."""
        step = int(out.stats.nonfinite_step[row])
        if step:
            error = f"non-finite logits (NaN/inf) at decoding step {step}"
            return f"{NUMERIC_ERROR_PREFIX}{error}", error
        text = self._tokenizer.decode(
            out.sequences[row], skip_special_tokens=True, clean_up_tokenization_spaces=False
        )
        return self.response_prefix + cut_at_stop_strings(text, settings.until), None

    def _trace(
        self, out: DecodeOutput, b: int, task: str, doc_id: int, n_in: int, n_out: int, peak: float | None
    ) -> SampleTrace:
        s = out.stats
        return SampleTrace(
            task=task,
            doc_id=int(doc_id),
            rank=self.rank,
            run=self.run_label,
            vreason=self.vreason.controls,
            lite=self.vreason.prunes,
            ema_beta=self.vreason.ema_beta,
            objective=self.vreason.objective,
            entropy=s.entropy[b, :n_out].tolist(),
            ema=s.ema[b, :n_out].tolist(),
            alpha=[int(a) for a in s.alpha[b, :n_out].tolist()],
            optimized=s.optimized[b, :n_out].tolist(),
            opt_steps=int(s.opt_steps[b]),
            skipped_steps=int(s.skipped_steps[b]),
            video_tokens_before=int(s.video_tokens_before[b]),
            video_tokens_after=int(s.video_tokens_after[b]),
            input_tokens=n_in,
            output_tokens=n_out,
            prefill_s=s.prefill_s,
            decode_s=s.decode_s,
            peak_mem_bytes=None if peak is None else int(peak),
        )


class Qwen2_5_VL_VReason(VReasonBackend):
    """Qwen2.5-VL with V-Reason (``--model qwen2_5_vl_vreason``)."""

    family = QWEN2_5_VL


class Qwen3_VL_VReason(VReasonBackend):
    """Qwen3-VL with V-Reason (``--model qwen3_vl_vreason``)."""

    family = QWEN3_VL


class Qwen2_VL_VReason(VReasonBackend):
    """Qwen2-VL with V-Reason (``--model qwen2_vl_vreason``)."""

    family = QWEN2_VL


class Qwen3_VL_Moe_VReason(VReasonBackend):
    """Qwen3-VL-MoE with V-Reason (``--model qwen3_vl_moe_vreason``)."""

    family = QWEN3_VL_MOE


class Qwen3_5_VReason(VReasonBackend):
    """Qwen3.5 (dense) with V-Reason (``--model qwen3_5_vreason``)."""

    family = QWEN3_5


class Qwen3_5_Moe_VReason(VReasonBackend):
    """Qwen3.5-MoE with V-Reason (``--model qwen3_5_moe_vreason``)."""

    family = QWEN3_5_MOE
