"""The Video-R1 evaluation protocol (docs/method.md §3) as lmms-eval task functions.

Every task YAML in this folder points here with ``!function utils.<name>``. lmms-eval loads this file
by path, once per ``!function`` tag, so the module keeps no state and imports the shared contract
(metric names, data-root variable, media-error marker) from :mod:`lmms_vreason`.

Video-R1's ``eval_bench.py`` is followed where it decides (each point is tested in
``tests/test_tasks_protocol.py``), and decisions are taken where it is silent:

* Prompt: the question is built exactly as Video-R1 builds it, i.e.
  ``problem + "Options:\\n" + one option per line`` (each line ends with ``\\n``; no separator is added
  between the problem and ``Options:`` because Video-R1 adds none). Options already carry their
  ``"A. "`` labels in the Video-R1 files; an option without a letter label gets ``"<letter>. "``.
  The type suffixes are Video-R1's ``TYPE_TEMPLATE`` (multiple choice, numerical, OCR, free-form,
  regression). A record of any other type (Video-R1 would stop with a ``KeyError``) gets the prompt
  without a suffix, scores 0, and is counted in a warning when the task is built.
* Extraction: the first ``<answer>...</answer>`` match, whitespace stripped; no tag, or an empty tag,
  falls back to the whole output, as in Video-R1. The reference answer is the solution's tag (every
  real record has one; a solution without a tag is used whole, where Video-R1 would use "").
* Multiple choice: an exact, case-sensitive match of the extracted answer with the solution's
  (``"A."``, ``"(A)"`` or ``"a"`` are wrong *and* count as unparsable).
* Numerical (Video-R1's rule, the default): 0 if exactly one of answer and solution contains ``"."``
  or ``","``; else both go through Python ``float(text.replace(",", ""))`` and must be equal after
  Python ``round(x, 2)``. So ``"3"`` vs ``"3.0"`` is wrong. The lenient scorer of earlier versions
  (exact decimals, half-up rounding, ``"3"`` = ``"3.0"``) is kept as an opt-in: the
  ``process_results_*_lenient`` functions and the ``vreason_videommmu_lenient`` task.
* Regression: Video-R1's mean relative accuracy, reproduced bit for bit in float32 (see
  :func:`mean_relative_accuracy`).
* OCR and free-form: Video-R1's ``reward_fn`` scores them 0 (none of the six benchmarks has any);
  so do we, and the task build warns with their count.
* A response that starts with :data:`lmms_vreason.benchmarks.MEDIA_ERROR_PREFIX` (the backend could not
  read the video) scores 0 and counts in ``media_error_rate``, not in ``parse_failure_rate``; one that
  starts with :data:`lmms_vreason.benchmarks.NUMERIC_ERROR_PREFIX` (the model's logits became NaN/inf)
  scores 0 and counts in ``numeric_error_rate``.

Per-sample scores are in percent (0 or 100 for a right/wrong answer, 0-100 for MRA) so that
lmms-eval's ``mean`` aggregation and its standard errors come out in percent directly.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from datasets import Dataset, DatasetDict
from lmms_eval.api.task import ConfigurableMessagesTask
from loguru import logger

from lmms_vreason.benchmarks import (
    AVG_METRIC,
    AVG_WO_MRA_METRIC,
    DATA_CHECK_COMMAND,
    DATA_ROOT_ENV,
    HUB_DATASET,
    MEDIA_ERROR_METRIC,
    MEDIA_ERROR_PREFIX,
    NUMERIC_ERROR_METRIC,
    NUMERIC_ERROR_PREFIX,
    PARSE_FAILURE_METRIC,
    TABLE1_COLUMNS,
    VIDEOMME_DURATION_METRICS,
    data_download_command,
)
from lmms_vreason.media.files import record_video

MULTIPLE_CHOICE = "multiple choice"
NUMERICAL = "numerical"
REGRESSION = "regression"
FREE_FORM = "free-form"
OCR = "OCR"

QUESTION_INSTRUCTION = (
    "Please think about this question as if you were a human pondering deeply. "
    "Engage in an internal dialogue using expressions such as 'let me think', 'wait', 'Hmm', 'oh, I see', "
    "'let's break it down', etc, or other natural language thought expressions "
    "It's encouraged to include self-reflection or verification in the reasoning process. "
    "Provide your detailed reasoning between the <think> and </think> tags, "
    "and then give your final answer between the <answer> and </answer> tags."
)
"""Follows ``{Question}\\n`` in the Video-R1 template (docs/method.md §3, byte-exact)."""

TYPE_SUFFIXES: dict[str, str] = {
    MULTIPLE_CHOICE: (
        " Please provide only the single option letter (e.g., A, B, C, D, etc.)"
        " within the <answer> </answer> tags."
    ),
    NUMERICAL: " Please provide the numerical value (e.g., 42 or 3.14) within the <answer> </answer> tags.",
    OCR: (
        " Please transcribe text from the image/video clearly and provide your text answer"
        " within the <answer> </answer> tags."
    ),
    FREE_FORM: " Please provide your text answer within the <answer> </answer> tags.",
    REGRESSION: " Please provide the numerical value (e.g., 42 or 3.14) within the <answer> </answer> tags.",
}
"""Video-R1's ``TYPE_TEMPLATE``: appended to the template by problem type (byte-exact, leading space
included). Any other type gets no suffix."""

UNSCORED_TYPES = (OCR, FREE_FORM)
"""Types Video-R1's ``reward_fn`` scores 0 whatever the answer (as does any unknown type)."""

VSI_MEAN_METRIC = "vsi_mean"
"""Reported by both VSI-Bench tasks so that the ``vreason_vsibench`` group can average Acc and MRA."""

_ANSWER_TAG = re.compile(r"<answer>\s*(.*?)\s*</answer>", re.DOTALL)
_OPTION_LETTER = re.compile(r"[A-Z]")
_DECIMAL_LITERAL = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_HUNDREDTH = Decimal("0.01")


# --------------------------------------------------------------------------------------------------
# Prompt and messages
# --------------------------------------------------------------------------------------------------


def format_options(options: Sequence[str]) -> str:
    """One option per line, each lettered.

    The i-th option keeps its own label when it already starts with the i-th letter (``"A. "``,
    ``"(A)"``, ``"A)"``, ``"A:"``), which is the case throughout the Video-R1 files; otherwise it gets
    ``"<letter>. "`` in front.
    """
    lines = []
    for index, option in enumerate(options):
        letter = chr(ord("A") + index)
        text = str(option)
        if not re.match(rf"\(?{letter}\s*[.):]", text):
            text = f"{letter}. {text}"
        lines.append(f"{text}\n")
    return "".join(lines)


def format_question(problem: str, problem_type: str, options: Sequence[str] | None) -> str:
    """The ``{Question}`` of the template: the problem, plus ``Options:`` and the options for MC."""
    if problem_type == MULTIPLE_CHOICE:
        return f"{problem}Options:\n{format_options(options or [])}"
    return problem


def build_prompt(problem: str, problem_type: str, options: Sequence[str] | None) -> str:
    """The full text of the user turn for one record (an unknown type gets no type suffix)."""
    question = format_question(problem, problem_type, options)
    return f"{question}\n{QUESTION_INSTRUCTION}{TYPE_SUFFIXES.get(problem_type, '')}"


def doc_to_text(doc: dict[str, Any], lmms_eval_specific_kwargs: dict | None = None) -> str:
    """The prompt text (also what lmms-eval logs as the sample's input)."""
    return build_prompt(doc["problem"], doc["problem_type"], doc["options"])


def doc_to_visual(doc: dict[str, Any], lmms_eval_specific_kwargs: dict | None = None) -> list[str]:
    """The sample's video as a local path (resolved when the records were loaded)."""
    return [doc["video"]]


def doc_to_messages(doc: dict[str, Any], lmms_eval_specific_kwargs: dict | None = None) -> list[dict]:
    """One user turn, the video first and then the text, no system turn (lmms-eval ``ChatMessages``)."""
    media_type = "image" if doc.get("data_type") == "image" else "video"
    media = [{"type": media_type, "url": path} for path in doc_to_visual(doc)]
    return [{"role": "user", "content": [*media, {"type": "text", "text": doc_to_text(doc)}]}]


def doc_to_target(doc: dict[str, Any]) -> str:
    """The reference answer, taken out of ``solution`` (``"<answer>B</answer>"`` -> ``"B"``)."""
    return extract_answer(doc["solution"])


# --------------------------------------------------------------------------------------------------
# Answer extraction and scoring
# --------------------------------------------------------------------------------------------------


def extract_answer(text: str) -> str:
    """The content of the first ``<answer>`` tag, stripped; the whole text (stripped) without one."""
    match = _ANSWER_TAG.search(text)
    answer = match.group(1).strip() if match else ""
    return answer if answer else text.strip()


def video_r1_number(text: str) -> float | None:
    """Video-R1's ``normalize_number``: ``float(text.replace(",", ""))``, ``None`` if Python refuses.

    Python's ``float`` also takes surrounding whitespace, ``"+5"``, ``"1e3"``, ``"1_000"``, ``"inf"``
    and ``"nan"``; it refuses ``"5 m"`` and ``"$5"``.
    """
    try:
        return float(text.replace(",", ""))
    except (ValueError, TypeError):
        return None


def _has_decimal_mark(text: str) -> bool:
    return "." in text or "," in text


def numerical_match(answer: str, target: str) -> bool:
    """Video-R1's numerical rule: the same use of ``"."``/``","`` on both sides, then equal after
    Python's ``round(x, 2)`` (binary floats, ties to even)."""
    if _has_decimal_mark(answer) != _has_decimal_mark(target):
        return False
    pred, gt = video_r1_number(answer), video_r1_number(target)
    if pred is None or gt is None:
        return False
    return round(gt, 2) == round(pred, 2)


def parse_number(text: str) -> Decimal | None:
    """The number an answer states, exactly; ``None`` if the answer is not one decimal literal
    (the lenient scorer's parser)."""
    cleaned = text.strip().replace(",", "")
    if not _DECIMAL_LITERAL.fullmatch(cleaned):
        return None
    return Decimal(cleaned)


def round_2(value: Decimal) -> Decimal:
    """``value`` rounded to 2 decimals, half up (exact decimal arithmetic, no binary float error)."""
    return value.quantize(_HUNDREDTH, rounding=ROUND_HALF_UP)


def numbers_match(pred: Decimal, gt: Decimal) -> bool:
    """The lenient numerical rule (opt-in): equal after rounding both sides to 2 decimals, in exact
    decimal arithmetic, whatever the notation (``"3"`` = ``"3.0"``)."""
    try:
        return round_2(pred) == round_2(gt)
    except InvalidOperation:  # too many digits to quantize (e.g. 1e400): compare exactly
        return pred == gt


_MRA_EPSILON = np.float32(1e-8)
_MRA_ONE_MINUS_THRESHOLDS = np.float32(1) - np.array([0.5 + 0.05 * i for i in range(10)], dtype=np.float32)
"""Video-R1's ``1 - torch.arange(0.5, 0.95 + 0.05 / 2, 0.05, dtype=torch.float32)``: torch computes
each threshold as ``0.5 + 0.05 * i`` in double and stores it as float32; the subtraction is float32.
So ``1 - 0.9`` is 0.10000002 and ``1 - 0.95`` is 0.05000001 (both slightly above their decimal
values), and answers exactly on those boundaries count as hits (tested against torch)."""


def mean_relative_accuracy(pred: float, gt: float) -> float:
    """Video-R1's MRA in [0, 1], with its float32 arithmetic reproduced exactly.

    ``rel = |pred - gt| / (|gt| + 1e-8)`` with both numbers first rounded to float32, then the share of
    the 10 thresholds θ = 0.50, ..., 0.95 with ``rel < 1 - θ``, all in float32 (numpy's float32
    operations are IEEE single precision like torch's CPU ones). E.g. (110, 100): rel = 0.1 < 0.10000002
    holds, MRA 0.9; (1.1, 1.0): rel = 0.10000002 (float32(1.1) - 1), not below it, MRA 0.8. A ground
    truth of 0 gives 1 for an answer of 0 and 0 otherwise (rel >= 1e8 or NaN).

    The result is ``hits / 10`` exactly (Video-R1 stores the float32 mean, e.g. 0.800000012; the
    difference is below 1e-7 and changes no reported digit).
    """
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        p, g = np.float32(pred), np.float32(gt)
        rel = np.abs(p - g) / (np.abs(g) + _MRA_EPSILON)
        hits = int(np.count_nonzero(rel < _MRA_ONE_MINUS_THRESHOLDS))
    return hits / len(_MRA_ONE_MINUS_THRESHOLDS)


def is_media_error(response: str) -> bool:
    """Whether the backend reported an unreadable video instead of generating.

    lmms-eval strips responses before scoring, so the marker is matched without its trailing space.
    """
    return response.startswith(MEDIA_ERROR_PREFIX.rstrip())


def is_numeric_error(response: str) -> bool:
    """Whether the backend reported NaN/inf logits (broken weights, an overflowing dtype) for the sample."""
    return response.startswith(NUMERIC_ERROR_PREFIX.rstrip())


class Score(NamedTuple):
    """One sample's outcome: ``value`` in percent (0-100), and why it may be 0.

    ``scored`` is False for the types Video-R1 does not score (OCR, free-form, unknown): 0 whatever
    the answer, and not a parse failure. (A ``NamedTuple``, not a dataclass: lmms-eval executes this
    file without registering it in ``sys.modules``, which dataclasses need to resolve postponed
    annotations.)
    """

    value: float
    parsed: bool
    media_error: bool = False
    scored: bool = True
    numeric_error: bool = False


VIDEO_R1_NUMBERS = "video-r1"
LENIENT_NUMBERS = "lenient"


def score_response(
    response: str, problem_type: str, solution: str, numerical: str = VIDEO_R1_NUMBERS
) -> Score:
    """Score one model output against the record's ``solution`` as Video-R1's ``reward_fn`` does.

    ``numerical="lenient"`` swaps in the opt-in exact-decimal rule for numerical records only.
    """
    if is_media_error(response):
        return Score(0.0, parsed=False, media_error=True)
    if is_numeric_error(response):
        return Score(0.0, parsed=False, numeric_error=True)
    answer = extract_answer(response)
    target = extract_answer(solution)
    if problem_type == MULTIPLE_CHOICE:
        return Score(100.0 if answer == target else 0.0, parsed=_OPTION_LETTER.fullmatch(answer) is not None)
    if problem_type == NUMERICAL and numerical == LENIENT_NUMBERS:
        pred_exact, gt_exact = parse_number(answer), parse_number(target)
        if pred_exact is None or gt_exact is None:
            return Score(0.0, parsed=pred_exact is not None)
        return Score(100.0 if numbers_match(pred_exact, gt_exact) else 0.0, parsed=True)
    if problem_type in (NUMERICAL, REGRESSION):
        pred = video_r1_number(answer)
        parsed = pred is not None and math.isfinite(pred)
        if problem_type == NUMERICAL:
            return Score(100.0 if numerical_match(answer, target) else 0.0, parsed=parsed)
        gt = video_r1_number(target)
        if pred is None or gt is None:
            return Score(0.0, parsed=parsed)
        return Score(100.0 * mean_relative_accuracy(pred, gt), parsed=parsed)
    return Score(0.0, parsed=True, scored=False)


def _sample_metrics(
    doc: dict[str, Any],
    results: Sequence[str],
    score_names: Iterable[str],
    numerical: str = VIDEO_R1_NUMBERS,
) -> dict[str, Any]:
    """Per-sample values: the score under each of ``score_names``, plus the three failure rates."""
    score = score_response(results[0], doc["problem_type"], doc["solution"], numerical)
    metrics: dict[str, Any] = dict.fromkeys(score_names, score.value)
    failed = score.media_error or score.numeric_error  # not the model's answer: not a parse failure
    metrics[PARSE_FAILURE_METRIC] = 0.0 if (score.parsed or failed) else 100.0
    metrics[MEDIA_ERROR_METRIC] = 100.0 if score.media_error else 0.0
    metrics[NUMERIC_ERROR_METRIC] = 100.0 if score.numeric_error else 0.0
    return metrics


def process_results(doc: dict[str, Any], results: Sequence[str]) -> dict[str, Any]:
    """A Table 1 accuracy benchmark: ``accuracy`` and, for the group's averages, ``avg``/``avg_wo_mra``."""
    return _sample_metrics(doc, results, ("accuracy", AVG_METRIC, AVG_WO_MRA_METRIC))


def process_results_vsibench_mc(doc: dict[str, Any], results: Sequence[str]) -> dict[str, Any]:
    """VSI-Bench Acc: as :func:`process_results`, plus ``vsi_mean`` for the VSI-Bench group."""
    return _sample_metrics(doc, results, ("accuracy", VSI_MEAN_METRIC, AVG_METRIC, AVG_WO_MRA_METRIC))


def process_results_lenient(doc: dict[str, Any], results: Sequence[str]) -> dict[str, Any]:
    """:func:`process_results` with the opt-in lenient numerical rule (not Video-R1's protocol)."""
    return _sample_metrics(doc, results, ("accuracy", AVG_METRIC, AVG_WO_MRA_METRIC), LENIENT_NUMBERS)


def process_results_vsibench_mc_lenient(doc: dict[str, Any], results: Sequence[str]) -> dict[str, Any]:
    """:func:`process_results_vsibench_mc` with the opt-in lenient numerical rule."""
    return _sample_metrics(
        doc, results, ("accuracy", VSI_MEAN_METRIC, AVG_METRIC, AVG_WO_MRA_METRIC), LENIENT_NUMBERS
    )


def process_results_vsibench_mra(doc: dict[str, Any], results: Sequence[str]) -> dict[str, Any]:
    """VSI-Bench MRA: ``mra``, ``vsi_mean`` and ``avg`` (MRA is not part of ``avg_wo_mra``)."""
    return _sample_metrics(doc, results, ("mra", VSI_MEAN_METRIC, AVG_METRIC))


def process_results_videomme(doc: dict[str, Any], results: Sequence[str]) -> dict[str, Any]:
    """Video-MME: as :func:`process_results`, plus ``accuracy_<duration>`` (Table 7).

    The duration metrics are ``None`` for samples of other durations; :func:`mean_ignoring_none`
    averages only the samples of its own duration.
    """
    metrics = process_results(doc, results)
    for metric in VIDEOMME_DURATION_METRICS:
        metrics[metric] = metrics["accuracy"] if metric == f"accuracy_{doc['duration']}" else None
    return metrics


def mean_ignoring_none(items: Sequence[float | None]) -> float:
    """Mean of the values that are not ``None`` (NaN when there are none, e.g. under ``--limit``)."""
    values = [item for item in items if item is not None]
    return sum(values) / len(values) if values else float("nan")


# --------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------

_EVAL_FILES = tuple(dict.fromkeys(column.eval_file for column in TABLE1_COLUMNS))


def _fetch_instructions(root: str) -> str:
    return (
        f"Fetch the Video-R1 evaluation files ({', '.join(_EVAL_FILES)}) of the Hugging Face dataset "
        f"{HUB_DATASET} with `{data_download_command(root)}`, put each benchmark's videos that the "
        f"dataset does not ship (from the benchmark's own release) under {root} at the relative paths "
        f"the records give (e.g. ./Evaluation/...), then run `{DATA_ROOT_ENV}={root} {DATA_CHECK_COMMAND}`."
    )


def locate_eval_file(eval_file: str) -> tuple[Path, Path]:
    """Where ``eval_file`` is, and the folder that relative video paths resolve against.

    With ``VREASON_EVAL_ROOT`` set, both are that folder and anything missing fails here, when
    lmms-eval builds the task (before any sample is generated). Without it the file comes from the
    hub and videos resolve against the current directory (as in Video-R1, whose script runs next to
    its ``Evaluation/`` folder).
    """
    raw_root = os.environ.get(DATA_ROOT_ENV, "").strip()
    if raw_root:
        root = Path(raw_root).expanduser().absolute()
        if not root.is_dir():
            raise FileNotFoundError(
                f"{DATA_ROOT_ENV}={raw_root!r} is not a directory. {_fetch_instructions(str(root))}"
            )
        path = root / eval_file
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} is missing ({DATA_ROOT_ENV}={raw_root!r}). {_fetch_instructions(str(root))}"
            )
        return path, root
    try:
        from huggingface_hub import hf_hub_download

        path = Path(hf_hub_download(repo_id=HUB_DATASET, filename=eval_file, repo_type="dataset"))
    except Exception as exc:
        raise FileNotFoundError(
            f"Could not get {eval_file} from the Hugging Face dataset {HUB_DATASET} "
            f"({type(exc).__name__}: {exc}). Without network access, set {DATA_ROOT_ENV} to a local "
            f"folder DIR. {_fetch_instructions('DIR')}"
        ) from exc
    logger.warning(
        f"{DATA_ROOT_ENV} is not set: {eval_file} comes from the hub, videos resolve against {Path.cwd()}"
    )
    return path, Path.cwd()


def resolve_video_path(path: str, base: Path) -> str:
    """The file a record's ``path`` means: absolute paths stay, relative ones join ``base``; a missing
    video is read from a same-stem file in another container when one exists
    (:func:`lmms_vreason.media.files.find_video`, shared with the backend and the data check)."""
    return str(record_video(path, base))


def record_to_doc(record: dict[str, Any], base: Path) -> dict[str, Any]:
    """One Video-R1 record as a task doc with a fixed schema (Arrow needs one type per column).

    Any ``problem_type`` is accepted (those Video-R1 does not score get 0; :func:`load_docs` warns).
    """
    problem_type = str(record.get("problem_type"))
    options = [str(option) for option in record.get("options") or []]
    if problem_type == MULTIPLE_CHOICE and not options:
        raise ValueError(f"record {record.get('problem_id')!r}: a multiple-choice record without options")
    if (
        problem_type in (NUMERICAL, REGRESSION)
        and video_r1_number(extract_answer(str(record["solution"]))) is None
    ):
        raise ValueError(f"record {record.get('problem_id')!r}: the {problem_type} solution is not a number")
    return {
        "problem_id": str(record["problem_id"]),
        "problem": str(record["problem"]),
        "problem_type": problem_type,
        "options": options,
        "solution": str(record["solution"]),
        "path": str(record["path"]),
        "video": resolve_video_path(str(record["path"]), base),
        "data_type": str(record.get("data_type") or "video"),
        "duration": str(record.get("duration") or ""),
    }


def unscored_types(docs: Iterable[dict[str, Any]]) -> Counter[str]:
    """How many docs have a problem type Video-R1 scores 0 (OCR, free-form, unknown), by type."""
    return Counter(
        doc["problem_type"]
        for doc in docs
        if doc["problem_type"] not in TYPE_SUFFIXES or doc["problem_type"] in UNSCORED_TYPES
    )


def load_docs(eval_file: str) -> list[dict[str, Any]]:
    """All records of ``eval_file`` as task docs (see :func:`locate_eval_file` for where it is read)."""
    path, base = locate_eval_file(eval_file)
    with path.open(encoding="utf-8") as handle:
        records = json.load(handle)
    docs = [record_to_doc(record, base) for record in records]
    unscored = unscored_types(docs)
    if unscored:
        counts = ", ".join(f"{count} {kind!r}" for kind, count in sorted(unscored.items()))
        logger.warning(
            f"{eval_file}: {sum(unscored.values())} record(s) of a type Video-R1 does not score ({counts}): "
            "they are kept and score 0, as in Video-R1's reward_fn"
        )
    moved = sum(1 for doc in docs if Path(doc["video"]).suffix != Path(doc["path"]).suffix)
    if moved:
        logger.info(f"{eval_file}: {moved} video(s) read from a same-stem file in another container")
    return docs


def _select(dataset: Dataset, keep: Sequence[bool]) -> Dataset:
    return dataset.select([index for index, flag in enumerate(keep) if flag])


def regression_docs(dataset: Dataset) -> Dataset:
    """VSI-Bench MRA: the regression records."""
    return _select(dataset, [kind == REGRESSION for kind in dataset["problem_type"]])


def non_regression_docs(dataset: Dataset) -> Dataset:
    """VSI-Bench Acc: every other record (Video-R1's ``mean_acc`` covers all non-regression records)."""
    return _select(dataset, [kind != REGRESSION for kind in dataset["problem_type"]])


def multiple_choice_docs(dataset: Dataset) -> Dataset:
    """MMVU (mc): the multiple-choice records."""
    return _select(dataset, [kind == MULTIPLE_CHOICE for kind in dataset["problem_type"]])


class VReasonTask(ConfigurableMessagesTask):
    """A chat (``doc_to_messages``) task whose docs come from a Video-R1 ``eval_*.json`` file.

    lmms-eval's YAML can only name a fixed hub dataset; this class reads the file named by
    ``dataset_kwargs.eval_file`` from ``VREASON_EVAL_ROOT`` or the hub instead (the pattern of
    lmms-eval's own ``vstat`` task), so a missing local copy fails with instructions.
    """

    def __init__(
        self, data_dir=None, cache_dir=None, download_mode=None, config=None, model_name=None
    ) -> None:
        config = {key: value for key, value in (config or {}).items() if key != "class"}
        super().__init__(data_dir, cache_dir, download_mode, config=config, model_name=model_name)

    def download(self, dataset_kwargs: dict | None = None) -> None:
        eval_file = (dataset_kwargs or {}).get("eval_file")
        if not eval_file:
            raise ValueError(f"task {self.config.task}: dataset_kwargs.eval_file is not set")
        dataset = Dataset.from_list(load_docs(eval_file))
        if self.config.process_docs is not None:
            dataset = self.config.process_docs(dataset)
        if len(dataset) == 0:
            raise ValueError(f"task {self.config.task}: {eval_file} holds no records for this task")
        self.dataset = DatasetDict({self.config.test_split: dataset})
        self.dataset_no_image = self.dataset
