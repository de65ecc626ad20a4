"""The Video-R1 evaluation protocol of the task pack (SPEC §3): prompts, extraction, scoring.

Expected strings are written out here from SPEC §3, not taken from the code under test; expected
scores are computed by hand (the arithmetic is in the comments).
"""

from __future__ import annotations

import math
from decimal import Decimal
from pathlib import Path

import pytest
from lmms_eval.protocol import ChatMessages
from lmms_vreason.tasks import utils

from lmms_vreason.benchmarks import MEDIA_ERROR_PREFIX

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

SPEC = Path(__file__).resolve().parents[2] / "shared" / "SPEC.md"


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
    [("numerical", NUMBER_SUFFIX), ("regression", NUMBER_SUFFIX), ("free-form", FREE_SUFFIX)],
)
def test_non_choice_prompts_are_byte_exact(problem_type: str, suffix: str) -> None:
    assert utils.build_prompt("How far?", problem_type, None) == "How far?\n" + TEMPLATE_TAIL + suffix


def test_prompt_strings_are_the_ones_in_the_spec() -> None:
    if not SPEC.is_file():
        pytest.skip(f"{SPEC} is not beside the repository")
    text = SPEC.read_text(encoding="utf-8")
    assert f'"{{Question}}\\n{TEMPLATE_TAIL}"' in text
    for suffix in (MC_SUFFIX, NUMBER_SUFFIX, FREE_SUFFIX):
        assert f'"{suffix}"' in text


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


def test_unknown_problem_type_is_refused() -> None:
    with pytest.raises(ValueError, match="OCR"):
        utils.build_prompt("Read it", "OCR", None)


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
def test_numerical_answers_match_after_rounding_to_two_decimals(
    output: str, solution: str, matches: bool
) -> None:
    score = utils.score_response(f"<answer>{output}</answer>", "numerical", f"<answer>{solution}</answer>")
    assert score == utils.Score(100.0 if matches else 0.0, True)


@pytest.mark.parametrize("output", ["about 3", "3 apples", "three", "", "nan", "inf", "1_000", "3/4", "--3"])
def test_non_numbers_are_unparsable(output: str) -> None:
    score = utils.score_response(f"<answer>{output}</answer>", "numerical", "<answer>3</answer>")
    assert score == utils.Score(0.0, False)


def test_parse_number_is_exact() -> None:
    assert utils.parse_number(" 0.1 ") == Decimal("0.1")
    assert utils.parse_number("1,234.5") == Decimal("1234.5")
    assert utils.parse_number("12 m") is None


def test_huge_numbers_are_compared_exactly() -> None:
    assert utils.numbers_match(Decimal("1e400"), Decimal("1e400"))
    assert not utils.numbers_match(Decimal("1e400"), Decimal("2e400"))


@pytest.mark.parametrize(
    ("pred", "gt", "mra"),
    [
        ("10", "10", 100.0),  # error 0: below every 1 - θ
        ("10.4", "10", 100.0),  # relative error 0.04 < 0.05 = the smallest 1 - θ
        ("10.5", "10", 90.0),  # 0.05 is not < 0.05 (θ = 0.95 fails): 9 of 10
        ("9.5", "10", 90.0),
        ("12", "10", 60.0),  # 0.2 < 0.5, 0.45, 0.4, 0.35, 0.3, 0.25: 6 of 10
        ("7", "10", 40.0),  # 0.3 < 0.5, 0.45, 0.4, 0.35: 4 of 10
        ("14.9", "10", 10.0),  # 0.49 < 0.5 only
        ("15", "10", 0.0),  # 0.5 is not < 0.5
        ("-8", "-10", 60.0),  # |-8 - -10| / |-10| = 0.2
        ("6", "6.0", 100.0),
        ("0", "0", 100.0),  # gt 0: right only when exactly 0
        ("0.001", "0", 0.0),
    ],
)
def test_mean_relative_accuracy_matches_hand_computation(pred: str, gt: str, mra: float) -> None:
    score = utils.score_response(f"<answer>{pred}</answer>", "regression", f"<answer>{gt}</answer>")
    assert score.parsed
    assert score.value == pytest.approx(mra)


def test_regression_without_a_number_is_a_parse_failure() -> None:
    assert utils.score_response("<answer>far</answer>", "regression", "<answer>4</answer>") == utils.Score(
        0.0, False
    )


def test_free_form_is_an_exact_match() -> None:
    assert utils.score_response("<answer>red</answer>", "free-form", "<answer>red</answer>").value == 100.0
    assert utils.score_response("<answer>Red</answer>", "free-form", "<answer>red</answer>").value == 0.0


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
    }


def test_media_error_survives_lmms_eval_stripping_the_response() -> None:
    assert utils.is_media_error(MEDIA_ERROR_PREFIX.strip())
    assert not utils.is_media_error("<answer>B</answer>")


# ------------------------------------------------------------------------------------- per-sample metrics


def test_process_results_reports_score_and_rates_in_percent() -> None:
    assert utils.process_results(doc(), ["<answer>B</answer>"]) == {
        "accuracy": 100.0,
        "avg": 100.0,
        "avg_wo_mra": 100.0,
        "parse_failure_rate": 0.0,
        "media_error_rate": 0.0,
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
