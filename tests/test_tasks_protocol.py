"""The Video-R1 evaluation protocol of the task pack (docs/method.md §3): prompts, extraction, scoring.

Expected strings are written out here from Video-R1's ``src/eval_bench.py`` (``QUESTION_TEMPLATE``,
``TYPE_TEMPLATE``), not taken from the code under test; expected scores are computed by hand (the
arithmetic is in the comments) and, for MRA, also against Video-R1's own torch float32 expression.
"""

from __future__ import annotations

import json
import math
from decimal import Decimal

import numpy as np
import pytest
import torch
from lmms_eval.protocol import ChatMessages
from lmms_vreason.tasks import utils

from lmms_vreason.benchmarks import MEDIA_ERROR_PREFIX, NUMERIC_ERROR_PREFIX

TEMPLATE_TAIL = (
    "Please think about this question as if you were a human pondering deeply. Engage in an internal "
    "dialogue using expressions such as 'let me think', 'wait', 'Hmm', 'oh, I see', 'let's break it down', "
    "etc, or other natural language thought expressions It's encouraged to include self-reflection or "
    "verification in the reasoning process. Provide your detailed reasoning between the <think> and "
    "</think> tags, and then give your final answer between the <answer> and </answer> tags."
)
MC_SUFFIX = (
    " Please provide only the single option letter (e.g., A, B, C, D, etc.)"
    " within the <answer> </answer> tags."
)
NUMBER_SUFFIX = " Please provide the numerical value (e.g., 42 or 3.14) within the <answer> </answer> tags."
FREE_SUFFIX = " Please provide your text answer within the <answer> </answer> tags."
OCR_SUFFIX = (
    " Please transcribe text from the image/video clearly and provide your text answer within the"
    " <answer> </answer> tags."
)


def doc(problem_type: str = "multiple choice", solution: str = "<answer>B</answer>", **extra) -> dict:
    base = {
        "problem_id": "1",
        "problem": "What moves?",
        "problem_type": problem_type,
        "options": ["A. a square", "B. a circle"] if problem_type == "multiple choice" else [],
        "solution": solution,
        "path": "./Evaluation/X/clip.mp4",
        "video": "/data/Evaluation/X/clip.mp4",
        "data_type": "video",
        "duration": "",
    }
    return {**base, **extra}


# ---------------------------------------------------------------------------------------------- prompts


def test_multiple_choice_prompt_is_byte_exact() -> None:
    prompt = utils.build_prompt("Which shape moves?", "multiple choice", ["A. square", "B. circle"])
    assert prompt == "Which shape moves?Options:\nA. square\nB. circle\n\n" + TEMPLATE_TAIL + MC_SUFFIX


@pytest.mark.parametrize(
    ("problem_type", "suffix"),
    [
        ("numerical", NUMBER_SUFFIX),
        ("regression", NUMBER_SUFFIX),
        ("free-form", FREE_SUFFIX),
        ("OCR", OCR_SUFFIX),
        ("counting", ""),  # not in Video-R1's TYPE_TEMPLATE (it would raise KeyError): no suffix
    ],
)
def test_non_choice_prompts_are_byte_exact(problem_type: str, suffix: str) -> None:
    assert utils.build_prompt("How far?", problem_type, None) == "How far?\n" + TEMPLATE_TAIL + suffix


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["A. red", "B. blue"], "A. red\nB. blue\n"),  # Video-R1's files: labels kept verbatim
        (["red", "blue", "green"], "A. red\nB. blue\nC. green\n"),  # unlabelled: lettered in order
        (["(A) red", "B) blue", "C: green"], "(A) red\nB) blue\nC: green\n"),
        (["U.S. history", "Biology"], "A. U.S. history\nB. Biology\n"),  # "U." is not the label of A
    ],
)
def test_options_are_one_lettered_option_per_line(options: list[str], expected: str) -> None:
    assert utils.format_options(options) == expected


def test_records_of_unscored_or_unknown_types_load_score_zero_and_are_counted(tmp_path, monkeypatch) -> None:
    records = [
        {
            "problem_id": 1,
            "problem": "Read the sign",
            "problem_type": "OCR",
            "solution": "<answer>STOP</answer>",
        },
        {
            "problem_id": 2,
            "problem": "Describe",
            "problem_type": "free-form",
            "solution": "<answer>x</answer>",
        },
        {"problem_id": 3, "problem": "Count", "problem_type": "counting", "solution": "<answer>3</answer>"},
        {"problem_id": 4, "problem": "Pick", "problem_type": None, "solution": "<answer>A</answer>"},
    ]
    for record in records:
        record.update({"path": "./v.mp4", "data_type": "video", "options": None})
    (tmp_path / "eval_x.json").write_text(json.dumps(records))
    monkeypatch.setenv("VREASON_EVAL_ROOT", str(tmp_path))
    docs = utils.load_docs("eval_x.json")  # no exception while building the task
    assert utils.unscored_types(docs) == {"OCR": 1, "free-form": 1, "counting": 1, "None": 1}
    for doc_, right in zip(docs, ["STOP", "x", "3", "A"]):
        assert doc_["problem_type"] != "multiple choice"
        utils.doc_to_messages(doc_)  # a prompt can be built
        score = utils.score_response(f"<answer>{right}</answer>", doc_["problem_type"], doc_["solution"])
        assert score == utils.Score(0.0, parsed=True, scored=False)  # Video-R1's reward_fn: 0.0


def test_messages_are_one_user_turn_video_first() -> None:
    messages = utils.doc_to_messages(doc())
    assert [m["role"] for m in messages] == ["user"]
    content = messages[0]["content"]
    assert content[0] == {"type": "video", "url": "/data/Evaluation/X/clip.mp4"}
    assert content[1] == {"type": "text", "text": utils.doc_to_text(doc())}
    assert len(content) == 2
    chat = ChatMessages(messages=messages)  # lmms-eval's own protocol accepts it
    assert chat.extract_media() == ([], ["/data/Evaluation/X/clip.mp4"], [])


def test_target_is_the_solution_letter() -> None:
    assert utils.doc_to_target(doc(solution="<answer>D</answer>")) == "D"


# ------------------------------------------------------------------------------------------ extraction


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("<think>hmm</think><answer>B</answer>", "B"),
        ("<answer>  B \n</answer>", "B"),  # whitespace inside the tag is stripped
        ("<answer>\n12.5\n</answer> trailing", "12.5"),
        ("<answer>A</answer> wait, no: <answer>C</answer>", "A"),  # the first tag wins
        ("  B \n", "B"),  # no tag: the whole output, stripped
        ("<answer></answer>  C ", "<answer></answer>  C"),  # an empty tag counts as no tag (Video-R1)
        ("<answer>B", "<answer>B"),  # an unclosed tag is not a tag
    ],
)
def test_extract_answer(output: str, expected: str) -> None:
    assert utils.extract_answer(output) == expected


# ----------------------------------------------------------------------------------- multiple choice


@pytest.mark.parametrize(
    ("output", "value", "parsed"),
    [
        ("<answer>B</answer>", 100.0, True),
        ("<think>A or B</think> <answer> B </answer>", 100.0, True),
        ("B", 100.0, True),  # no tag: the whole output is the answer
        ("<answer>A</answer>", 0.0, True),  # wrong but a valid letter
        ("<answer>B.</answer>", 0.0, False),  # strict: only the letter
        ("<answer>(B)</answer>", 0.0, False),
        ("<answer>b</answer>", 0.0, False),  # case-sensitive
        ("<answer>B. a circle</answer>", 0.0, False),
        ("I think the answer is B", 0.0, False),
    ],
)
def test_multiple_choice_is_an_exact_letter_match(output: str, value: float, parsed: bool) -> None:
    assert utils.score_response(output, "multiple choice", "<answer>B</answer>") == utils.Score(value, parsed)


# ---------------------------------------------------------------------------------------------- numbers


@pytest.mark.parametrize(
    ("output", "solution", "matches"),
    [
        ("3", "3", True),
        ("3.0", "3.0", True),
        ("3", "3.0", False),  # "." on one side only: 0 whatever the values (Video-R1)
        ("3.0", "3", False),
        ("1,000", "1000", False),  # "," counts as a decimal mark for this rule
        ("1,000", "1,000", True),
        ("1,000.5", "1000.5", True),  # both have a mark; commas dropped: 1000.5 = 1000.5
        ("3.14159", "3.14", True),  # round(3.14159, 2) = 3.14
        ("1.005", "1.01", False),  # binary float: round(1.005, 2) = 1.0 (1.005 is 1.00499999...)
        ("2.675", "2.68", False),  # round(2.675, 2) = 2.67, the classic binary case
        ("0.125", "0.12", True),  # 0.125 is exact in binary; round half to even gives 0.12
        ("3.16", "3.14", False),
        ("-2.5", "-2.50", True),
        ("1e3", "1000", True),  # Python float() reads "1e3"; neither side has a mark
        ("1_000", "1000", True),  # ... and "1_000"
    ],
)
def test_numerical_answers_follow_video_r1s_rule(output: str, solution: str, matches: bool) -> None:
    score = utils.score_response(f"<answer>{output}</answer>", "numerical", f"<answer>{solution}</answer>")
    assert score == utils.Score(100.0 if matches else 0.0, True)


def test_untagged_numerical_output_is_judged_whole() -> None:
    # No tag: the whole output is the answer; its "." makes it a decimal answer against gt "3" -> 0,
    # and float("The answer is 3.") fails anyway.
    assert utils.score_response("The answer is 3.", "numerical", "<answer>3</answer>").value == 0.0
    assert utils.score_response(" 3\n", "numerical", "<answer>3</answer>") == utils.Score(100.0, True)


@pytest.mark.parametrize(
    ("output", "solution", "matches"),
    [
        ("3.14159", "3.14", True),  # 3.14159 -> 3.14
        ("3.145", "3.15", True),  # exact decimal, half up: 3.145 -> 3.15 (binary float would give 3.14)
        ("3.144", "3.15", False),  # 3.144 -> 3.14
        ("3.16", "3.14", False),
        ("1,000", "1000", True),  # commas are thousands separators
        ("3", "3.0", True),  # equal after rounding, whatever the notation
        ("-2.5", "-2.50", True),
        ("1e3", "1000", True),
        ("0.005", "0.01", True),  # 0.005 -> 0.01 (half up)
        ("0.004", "0.01", False),  # 0.004 -> 0.00
    ],
)
def test_lenient_numerical_option_matches_after_exact_rounding(
    output: str, solution: str, matches: bool
) -> None:
    score = utils.score_response(
        f"<answer>{output}</answer>", "numerical", f"<answer>{solution}</answer>", numerical="lenient"
    )
    assert score == utils.Score(100.0 if matches else 0.0, True)


def test_lenient_option_is_a_task_function_and_changes_only_numerical_records() -> None:
    numerical = doc("numerical", "<answer>3.0</answer>")
    assert utils.process_results(numerical, ["<answer>3</answer>"])["accuracy"] == 0.0
    assert utils.process_results_lenient(numerical, ["<answer>3</answer>"])["accuracy"] == 100.0
    mc = utils.process_results_vsibench_mc_lenient(doc(), ["<answer>B</answer>"])
    assert mc == utils.process_results_vsibench_mc(doc(), ["<answer>B</answer>"])


@pytest.mark.parametrize("output", ["about 3", "3 apples", "three", "", "nan", "inf", "3/4", "--3"])
def test_non_numbers_are_unparsable(output: str) -> None:
    score = utils.score_response(f"<answer>{output}</answer>", "numerical", "<answer>3</answer>")
    assert score == utils.Score(0.0, False)


def test_parse_number_of_the_lenient_rule_is_exact() -> None:
    assert utils.parse_number(" 0.1 ") == Decimal("0.1")
    assert utils.parse_number("1,234.5") == Decimal("1234.5")
    assert utils.parse_number("12 m") is None


def test_huge_numbers_are_compared_exactly_by_the_lenient_rule() -> None:
    assert utils.numbers_match(Decimal("1e400"), Decimal("1e400"))
    assert not utils.numbers_match(Decimal("1e400"), Decimal("2e400"))


# float32 values used below (IEEE single precision, as torch and numpy both compute them):
#   1 - θ for θ = 0.50, 0.55, ..., 0.95 (θ = float32(0.5 + 0.05 i), then 1 - θ in float32):
#   0.5, 0.44999999, 0.39999998, 0.35000002, 0.30000001, 0.25, 0.19999999, 0.14999998,
#   0.10000002 (= 1 - 0.89999998), 0.05000001 (= 1 - 0.94999999)
@pytest.mark.parametrize(
    ("pred", "gt", "mra"),
    [
        ("10", "10", 100.0),  # error 0: below every 1 - θ
        ("9", "10", 90.0),  # rel = 1/10 -> float32 0.10000000 < 0.10000002: θ = 0.90 is a hit (float64: no)
        ("11", "10", 90.0),  # the same rel on the other side
        ("21", "20", 100.0),  # rel = 1/20 -> float32 0.05000000 < 0.05000001: even θ = 0.95 is a hit
        ("110", "100", 90.0),  # rel = 10/100 -> 0.10000000 < 0.10000002: 9 of 10
        ("1.1", "1.0", 80.0),  # float32(1.1) - 1 = 0.10000002, not < 0.10000002: 8 of 10
        ("0.9", "1.0", 80.0),  # 1 - float32(0.9) = 0.10000002, likewise 8 of 10
        ("10.5", "10", 100.0),  # rel = 0.05 -> 0.05000000 < 0.05000001: 10 of 10
        ("10.4", "10", 100.0),  # float32(10.4) - 10 = 0.39999962, / 10 = 0.03999996 < 0.05000001
        ("12", "10", 60.0),  # 0.2 -> 0.20000000 is not < 0.19999999: 0.5 ... 0.25, 6 of 10
        ("7", "10", 40.0),  # rel 0.3 -> float32 0.30000001 equals 1 - 0.7: not a hit; 4 of 10
        ("14.9", "10", 10.0),  # float32(14.9) = 14.8999996; rel 0.48999995 < 0.5 only
        ("15", "10", 0.0),  # 0.5 is not < 0.5
        ("-8", "-10", 60.0),  # |-8 - -10| / |-10| = 0.2
        ("6", "6.0", 100.0),
        ("0", "0", 100.0),  # gt 0: rel = 0 / (0 + 1e-8) = 0, every θ
        ("0.001", "0", 0.0),  # rel = 0.001 / 1e-8 = 1e5
        ("5", "0", 0.0),  # rel = 5e8
    ],
)
def test_mean_relative_accuracy_matches_hand_computation_in_float32(pred: str, gt: str, mra: float) -> None:
    score = utils.score_response(f"<answer>{pred}</answer>", "regression", f"<answer>{gt}</answer>")
    assert score.parsed
    assert score.value == pytest.approx(mra, abs=1e-12)


def video_r1_mra(pred: float, gt: float) -> float:
    """Video-R1's ``mean_relative_accuracy`` expression, in torch float32 (the reference)."""
    p, t = torch.tensor(pred, dtype=torch.float32), torch.tensor(gt, dtype=torch.float32)
    rel = torch.abs(p - t) / (torch.abs(t) + 1e-8)
    thresholds = torch.arange(0.5, 0.95 + 0.05 / 2, 0.05, dtype=torch.float32)
    return (rel < (1 - thresholds)).float().mean().item()


def test_mean_relative_accuracy_equals_video_r1s_torch_float32_expression() -> None:
    rng = np.random.default_rng(0)
    gts = np.concatenate([rng.integers(-50, 200, 300), np.round(rng.uniform(0, 30, 300), 1), [0, 0.0]])
    pairs = [(float(g) * (1 + k), float(g)) for g in gts for k in (-0.5, -0.1, -0.05, 0.05, 0.1, 0.5)]
    pairs += [(float(p), float(g)) for p, g in zip(rng.uniform(-10, 100, 2000), rng.uniform(-10, 100, 2000))]
    pairs += [(0.0, 1e-9), (1e-9, 0.0), (float("inf"), 3.0), (float("nan"), 3.0), (1e39, 1.0)]
    for pred, gt in pairs:
        ours = utils.mean_relative_accuracy(pred, gt)
        assert ours == pytest.approx(video_r1_mra(pred, gt), abs=1e-6), (pred, gt)
        assert round(ours * 10) == ours * 10  # whole hits out of 10


def test_regression_without_a_number_is_a_parse_failure() -> None:
    assert utils.score_response("<answer>far</answer>", "regression", "<answer>4</answer>") == utils.Score(
        0.0, False
    )


def test_free_form_and_ocr_score_zero_as_in_video_r1() -> None:
    for kind in ("free-form", "OCR"):
        score = utils.score_response("<answer>red</answer>", kind, "<answer>red</answer>")
        assert score == utils.Score(0.0, parsed=True, scored=False)
        assert utils.process_results(doc(kind, "<answer>red</answer>"), ["<answer>red</answer>"]) == {
            "accuracy": 0.0,
            "avg": 0.0,
            "avg_wo_mra": 0.0,
            "parse_failure_rate": 0.0,
            "media_error_rate": 0.0,
            "numeric_error_rate": 0.0,
        }


# ------------------------------------------------------------------------------------------- failures


def test_media_error_scores_zero_and_is_not_a_parse_failure() -> None:
    response = f"{MEDIA_ERROR_PREFIX}file not found: /data/x.mp4"
    metrics = utils.process_results(doc(), [response])
    assert metrics == {
        "accuracy": 0.0,
        "avg": 0.0,
        "avg_wo_mra": 0.0,
        "parse_failure_rate": 0.0,
        "media_error_rate": 100.0,
        "numeric_error_rate": 0.0,
    }


def test_media_error_survives_lmms_eval_stripping_the_response() -> None:
    assert utils.is_media_error(MEDIA_ERROR_PREFIX.strip())
    assert not utils.is_media_error("<answer>B</answer>")


def test_numeric_error_scores_zero_and_is_counted_apart() -> None:
    """NaN/inf logits (the backend's marker): wrong, not a parse failure, not a media error."""
    response = f"{NUMERIC_ERROR_PREFIX}non-finite logits (NaN/inf) at decoding step 1"
    assert utils.process_results(doc(), [response.strip()]) == {
        "accuracy": 0.0,
        "avg": 0.0,
        "avg_wo_mra": 0.0,
        "parse_failure_rate": 0.0,
        "media_error_rate": 0.0,
        "numeric_error_rate": 100.0,
    }
    assert not utils.is_numeric_error(MEDIA_ERROR_PREFIX) and not utils.is_media_error(response)


# ------------------------------------------------------------------------------------- per-sample metrics


def test_process_results_reports_score_and_rates_in_percent() -> None:
    assert utils.process_results(doc(), ["<answer>B</answer>"]) == {
        "accuracy": 100.0,
        "avg": 100.0,
        "avg_wo_mra": 100.0,
        "parse_failure_rate": 0.0,
        "media_error_rate": 0.0,
        "numeric_error_rate": 0.0,
    }
    assert utils.process_results(doc(), ["no idea"])["parse_failure_rate"] == 100.0


def test_vsibench_tasks_report_their_score_for_the_group_averages() -> None:
    mc = utils.process_results_vsibench_mc(doc(), ["<answer>B</answer>"])
    assert mc == {
        "accuracy": 100.0,
        "vsi_mean": 100.0,
        "avg": 100.0,
        "avg_wo_mra": 100.0,
        "parse_failure_rate": 0.0,
        "media_error_rate": 0.0,
        "numeric_error_rate": 0.0,
    }
    mra = utils.process_results_vsibench_mra(
        doc("regression", "<answer>10</answer>"), ["<answer>12</answer>"]
    )
    assert mra == {
        "mra": 60.0,
        "vsi_mean": 60.0,
        "avg": 60.0,
        "parse_failure_rate": 0.0,
        "media_error_rate": 0.0,
        "numeric_error_rate": 0.0,
    }
    assert "avg_wo_mra" not in mra  # Table 1's "Avg (wo mra)" leaves VSI MRA out


@pytest.mark.parametrize("duration", ["short", "medium", "long"])
def test_videomme_reports_accuracy_by_duration(duration: str) -> None:
    metrics = utils.process_results_videomme(doc(duration=duration), ["<answer>B</answer>"])
    assert metrics["accuracy"] == 100.0
    for other in ("short", "medium", "long"):
        assert metrics[f"accuracy_{other}"] == (100.0 if other == duration else None)


def test_mean_ignoring_none_averages_only_its_own_samples() -> None:
    assert utils.mean_ignoring_none([None, 100.0, 0.0, None, 100.0]) == pytest.approx(200 / 3)
    assert math.isnan(utils.mean_ignoring_none([None, None]))
