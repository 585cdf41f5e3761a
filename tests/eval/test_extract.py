"""Reading the chosen option out of messy generated answers."""

import pytest

from medtune.eval.extract import extract_choice

OPTIONS = {"A": "阳离子型", "B": "阴离子型", "C": "非离子型", "D": "两性离子型", "E": "皂类"}


@pytest.mark.parametrize(
    ("text", "letters", "how"),
    [
        ("答案是B", {"B"}, "explicit"),
        ("选B。", {"B"}, "explicit"),
        ("答案：C。因为非离子型表面活性剂毒性小。", {"C"}, "explicit"),
        ("正确答案为：A、C", {"A", "C"}, "explicit"),
        ("A项错误，B项也不对，故选D", {"D"}, "explicit"),
        ("The answer is E.", {"E"}, "explicit"),
        ("B和D", {"B", "D"}, "leading"),
        ("(C) 非离子型", {"C"}, "leading"),
        ("D", {"D"}, "leading"),
        ("非离子型", {"C"}, "option_text"),
        ("应该是两性离子型的吧", {"D"}, "option_text"),
        ("我觉得是 B 吧", {"B"}, "standalone"),
    ],
)
def test_messy_answers_are_read(text, letters, how):
    got = extract_choice(text, OPTIONS)
    assert got.letters == frozenset(letters) and got.how == how


@pytest.mark.parametrize(
    ("text", "how"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("抱歉，我无法回答这个问题。", "refusal"),
        ("这道题涉及ATP和DNA的知识", "none"),
        ("A和B都有可能，C也可以", "none"),
    ],
)
def test_no_answer_is_not_guessed(text, how):
    got = extract_choice(text, OPTIONS)
    assert got.how == how and got.letters is None


def test_letters_outside_the_items_options_are_ignored():
    got = extract_choice("答案是E", {"A": "是", "B": "否"})
    assert got.letters is None
