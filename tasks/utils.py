"""The Video-R1 evaluation protocol (SPEC §3) as lmms-eval task functions.

Every task YAML in this folder points here with ``!function utils.<name>``. lmms-eval loads this file
by path, once per ``!function`` tag, so the module keeps no state and imports the shared contract
(metric names, data-root variable, media-error marker) from :mod:`lmms_vreason`.

Decisions taken where the protocol is silent (each one is tested in ``tests/test_tasks_protocol.py``):

* Prompt: the question is built exactly as Video-R1's ``eval_bench.py`` builds it, i.e.
  ``problem + "Options:\\n" + one option per line`` (each line ends with ``\\n``; no separator is added
  between the problem and ``Options:`` because Video-R1 adds none, and the reference numbers were
  produced that way). Options already carry their ``"A. "`` labels in the Video-R1 files; an option
  without a letter label gets ``"<letter>. "`` so that every option is lettered.
* Extraction: the first ``<answer>...</answer>`` match, whitespace stripped; no tag, or an empty tag,
  falls back to the whole output (stripped), as in Video-R1.
* Multiple choice is an exact, case-sensitive match of the extracted answer with the letter of the
  solution: ``"A."``, ``"(A)"`` or ``"a"`` are wrong *and* count as unparsable (the prompt asks for
  only the letter).
* Numbers: commas are dropped (``"1,000"``), then the text must be one decimal literal (optionally
  signed, optionally with an exponent). They are compared in exact decimal arithmetic: numerical
  answers match when both sides rounded to 2 decimals (half up) are equal; regression answers get
  MRA = mean over θ ∈ {0.50, 0.55, ..., 0.95} of ``[|pred - gt| / |gt| < 1 - θ]``, which is computed
  as ``20 |pred - gt| < (10 - i) |gt|`` so that the boundary cases are exact (``gt = 0``: 1 if
  ``pred = 0`` else 0). Video-R1's script also fails a numerical answer whose decimal point is on
  one side only (``"3"`` vs ``"3.0"``); SPEC §3 says "match after rounding", which is followed here.
* Free-form answers are scored by exact match after stripping (none of the six benchmarks has them).
* A response that starts with :data:`lmms_vreason.benchmarks.MEDIA_ERROR_PREFIX` (the backend could not
  read the video) scores 0 and counts in ``media_error_rate``, not in ``parse_failure_rate``.

Per-sample scores are in percent (0 or 100 for a right/wrong answer, 0-100 for MRA) so that
lmms-eval's ``mean`` aggregation and its standard errors come out in percent directly.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Sequence
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path
from typing import Any, NamedTuple

from datasets import Dataset, DatasetDict
from lmms_eval.api.task import ConfigurableMessagesTask
from loguru import logger

from lmms_vreason.benchmarks import (
    AVG_METRIC,
    AVG_WO_MRA_METRIC,
    DATA_ROOT_ENV,
    HUB_DATASET,
    MEDIA_ERROR_METRIC,
    MEDIA_ERROR_PREFIX,
    PARSE_FAILURE_METRIC,
    TABLE1_COLUMNS,
    VIDEOMME_DURATION_METRICS,
)

MULTIPLE_CHOICE = "multiple choice"
NUMERICAL = "numerical"
REGRESSION = "regression"
FREE_FORM = "free-form"

QUESTION_INSTRUCTION = (
    "Please think about this question as if you were a human pondering deeply. "
    "Engage in an internal dialogue using expressions such as 'let me think', 'wait', 'Hmm', 'oh, I see', "
    "'let's break it down', etc, or other natural language thought expressions "
    "It's encouraged to include self-reflection or verification in the reasoning process. "
    "Provide your detailed reasoning between the <think> and </think> tags, "
    "and then give your final answer between the <answer> and </answer> tags."
)
"""Follows ``{Question}\\n`` in the Video-R1 template (SPEC §3, byte-exact)."""

TYPE_SUFFIXES: dict[str, str] = {
    MULTIPLE_CHOICE: (
        " Please provide only the single option letter (e.g., A, B, C, D, etc.)"
        " within the <answer> </answer> tags."
    ),
    NUMERICAL: " Please provide the numerical value (e.g., 42 or 3.14) within the <answer> </answer> tags.",
    REGRESSION: " Please provide the numerical value (e.g., 42 or 3.14) within the <answer> </answer> tags.",
    FREE_FORM: " Please provide your text answer within the <answer> </answer> tags.",
}
"""Appended to the template by problem type (SPEC §3, byte-exact, leading space included)."""

VSI_MEAN_METRIC = "vsi_mean"
"""Reported by both VSI-Bench tasks so that the ``vreason_vsibench`` group can average Acc and MRA."""

_ANSWER_TAG = re.compile(r"<answer>\s*(.*?)\s*</answer>", re.DOTALL)
_OPTION_LETTER = re.compile(r"[A-Z]")
_DECIMAL_LITERAL = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_HUNDREDTH = Decimal("0.01")
_MRA_STEPS = 10  # θ = 0.50, 0.55, ..., 0.95, i.e. 1 - θ = (10 - i) / 20 for i = 0..9


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
    """The full text of the user turn for one record."""
    if problem_type not in TYPE_SUFFIXES:
        raise ValueError(f"unknown problem_type {problem_type!r}; expected one of {sorted(TYPE_SUFFIXES)}")
    question = format_question(problem, problem_type, options)
    return f"{question}\n{QUESTION_INSTRUCTION}{TYPE_SUFFIXES[problem_type]}"


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


def parse_number(text: str) -> Decimal | None:
    """The number an answer states, exactly; ``None`` if the answer is not one decimal literal."""
    cleaned = text.strip().replace(",", "")
    if not _DECIMAL_LITERAL.fullmatch(cleaned):
        return None
    return Decimal(cleaned)


def round_2(value: Decimal) -> Decimal:
    """``value`` rounded to 2 decimals, half up (exact decimal arithmetic, no binary float error)."""
    return value.quantize(_HUNDREDTH, rounding=ROUND_HALF_UP)


def numbers_match(pred: Decimal, gt: Decimal) -> bool:
    """Numerical scoring: equal after rounding both sides to 2 decimals."""
    try:
        return round_2(pred) == round_2(gt)
    except InvalidOperation:  # too many digits to quantize (e.g. 1e400): compare exactly
        return pred == gt


def mean_relative_accuracy(pred: Decimal, gt: Decimal) -> float:
    """MRA in [0, 1]: the share of θ in {0.50, ..., 0.95} with ``|pred - gt| / |gt| < 1 - θ``."""
    if gt == 0:
        return 1.0 if pred == 0 else 0.0
    error = 20 * abs(pred - gt)
    hits = sum(1 for i in range(_MRA_STEPS) if error < (_MRA_STEPS - i) * abs(gt))
    return hits / _MRA_STEPS


def is_media_error(response: str) -> bool:
    """Whether the backend reported an unreadable video instead of generating.

    lmms-eval strips responses before scoring, so the marker is matched without its trailing space.
    """
    return response.startswith(MEDIA_ERROR_PREFIX.rstrip())


class Score(NamedTuple):
    """One sample's outcome: ``value`` in percent (0-100), and why it may be 0.

    (A ``NamedTuple``, not a dataclass: lmms-eval executes this file without registering it in
    ``sys.modules``, which dataclasses need to resolve postponed annotations.)
    """

    value: float
    parsed: bool
    media_error: bool = False


def score_response(response: str, problem_type: str, solution: str) -> Score:
    """Score one model output against the record's ``solution`` under the protocol of SPEC §3."""
    if is_media_error(response):
        return Score(0.0, parsed=False, media_error=True)
    answer = extract_answer(response)
    target = extract_answer(solution)
    if problem_type == MULTIPLE_CHOICE:
        return Score(100.0 if answer == target else 0.0, parsed=_OPTION_LETTER.fullmatch(answer) is not None)
    if problem_type in (NUMERICAL, REGRESSION):
        pred, gt = parse_number(answer), parse_number(target)
        if pred is None:
            return Score(0.0, parsed=False)
        if gt is None:
            raise ValueError(f"the solution {solution!r} of a {problem_type} record is not a number")
        if problem_type == NUMERICAL:
            return Score(100.0 if numbers_match(pred, gt) else 0.0, parsed=True)
        return Score(100.0 * mean_relative_accuracy(pred, gt), parsed=True)
    if problem_type == FREE_FORM:
        return Score(100.0 if answer == target else 0.0, parsed=bool(answer))
    raise ValueError(f"unknown problem_type {problem_type!r}")


def _sample_metrics(
    doc: dict[str, Any], results: Sequence[str], score_names: Iterable[str]
) -> dict[str, Any]:
    """Per-sample values: the score under each of ``score_names``, plus the two failure rates."""
    score = score_response(results[0], doc["problem_type"], doc["solution"])
    metrics: dict[str, Any] = dict.fromkeys(score_names, score.value)
    metrics[PARSE_FAILURE_METRIC] = 0.0 if (score.parsed or score.media_error) else 100.0
    metrics[MEDIA_ERROR_METRIC] = 100.0 if score.media_error else 0.0
    return metrics


def process_results(doc: dict[str, Any], results: Sequence[str]) -> dict[str, Any]:
    """A Table 1 accuracy benchmark: ``accuracy`` and, for the group's averages, ``avg``/``avg_wo_mra``."""
    return _sample_metrics(doc, results, ("accuracy", AVG_METRIC, AVG_WO_MRA_METRIC))


def process_results_vsibench_mc(doc: dict[str, Any], results: Sequence[str]) -> dict[str, Any]:
    """VSI-Bench Acc: as :func:`process_results`, plus ``vsi_mean`` for the VSI-Bench group."""
    return _sample_metrics(doc, results, ("accuracy", VSI_MEAN_METRIC, AVG_METRIC, AVG_WO_MRA_METRIC))


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
        f"Download the Video-R1 evaluation files ({', '.join(_EVAL_FILES)}) from the Hugging Face "
        f"dataset {HUB_DATASET} (e.g. `hf download {HUB_DATASET} --repo-type dataset "
        f"--local-dir {root}`) into {root}, and put each benchmark's videos (from the benchmark's own "
        f"release) under {root} at the relative paths the records give (e.g. ./Evaluation/...)."
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
            f"folder. {_fetch_instructions('that folder')}"
        ) from exc
    logger.warning(
        f"{DATA_ROOT_ENV} is not set: {eval_file} comes from the hub, videos resolve against {Path.cwd()}"
    )
    return path, Path.cwd()


def resolve_video_path(path: str, base: Path) -> str:
    """An absolute path for a record's ``path``: absolute paths stay, relative ones join ``base``."""
    video = Path(path).expanduser()
    return str(video if video.is_absolute() else base / video)


def record_to_doc(record: dict[str, Any], base: Path) -> dict[str, Any]:
    """One Video-R1 record as a task doc with a fixed schema (Arrow needs one type per column)."""
    problem_type = record["problem_type"]
    if problem_type not in TYPE_SUFFIXES:
        raise ValueError(f"record {record.get('problem_id')!r}: unknown problem_type {problem_type!r}")
    options = [str(option) for option in record.get("options") or []]
    if problem_type == MULTIPLE_CHOICE and not options:
        raise ValueError(f"record {record.get('problem_id')!r}: a multiple-choice record without options")
    if (
        problem_type in (NUMERICAL, REGRESSION)
        and parse_number(extract_answer(str(record["solution"]))) is None
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


def load_docs(eval_file: str) -> list[dict[str, Any]]:
    """All records of ``eval_file`` as task docs (see :func:`locate_eval_file` for where it is read)."""
    path, base = locate_eval_file(eval_file)
    with path.open(encoding="utf-8") as handle:
        records = json.load(handle)
    return [record_to_doc(record, base) for record in records]


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
