import pytest

from medtune.data.structure import compliance_rate, parse_answer
from tests.conftest import THREE_PART_ANSWER


def test_the_canonical_form_is_fully_compliant():
    parsed = parse_answer(THREE_PART_ANSWER)
    assert parsed.compliant
    assert parsed.score == pytest.approx(1.0)
    assert parsed.order == ["病情分析", "原因分析", "治疗建议"]
    assert all(parsed.subsections.values())


@pytest.mark.parametrize(
    "text",
    [
        "### 1. 病情分析\n咳嗽一周，考虑支气管炎可能\n### 2. 原因分析\n多为病毒感染所致的炎症\n### 3. 治疗建议\n多喝水，必要时就医",
        "**病情分析**：咳嗽一周，考虑支气管炎可能\n**原因分析**：多为病毒感染所致的炎症\n**治病建议**：多喝水，必要时就医",
        "【病情分析】咳嗽一周，考虑支气管炎可能\n【病因分析】多为病毒感染所致的炎症\n【就医建议】多喝水，必要时就医",
        "一、病情分析：咳嗽一周，考虑支气管炎可能\n二、原因分析：多为病毒感染所致的炎症\n三、处理建议：多喝水，必要时就医",
    ],
)
def test_common_heading_spellings_are_recognised(text):
    parsed = parse_answer(text)
    assert parsed.compliant, parsed.problems


def test_missing_section_is_not_compliant():
    parsed = parse_answer("一、病情分析\n咳嗽一周考虑感冒\n二、原因分析\n病毒感染引起的")
    assert not parsed.compliant
    assert "missing section 治疗建议" in parsed.problems


def test_wrong_order_is_not_compliant():
    text = "一、治疗建议\n多喝水多休息注意\n二、病情分析\n咳嗽一周考虑感冒\n三、原因分析\n病毒感染引起的炎症"
    parsed = parse_answer(text)
    assert not parsed.compliant
    assert any(p.startswith("out of order") for p in parsed.problems)


def test_empty_section_is_not_compliant():
    parsed = parse_answer(
        "一、病情分析\n咳嗽一周考虑感冒\n二、原因分析\n\n三、治疗建议\n多喝水多休息注意观察"
    )
    assert not parsed.compliant
    assert "empty section 原因分析" in parsed.problems


def test_plain_answer_scores_zero():
    parsed = parse_answer("你好，这个情况考虑是感冒，多喝水，注意休息。")
    assert not parsed.compliant and parsed.score == 0.0


def test_compliance_rate_counts_compliant_answers():
    assert compliance_rate([THREE_PART_ANSWER, "随便说说", THREE_PART_ANSWER, ""]) == 0.5


@pytest.mark.parametrize(
    "text",
    [
        "**一、病情分析**\n咳嗽一周，考虑支气管炎可能\n**二、原因分析**\n多为病毒感染所致的炎症\n**三、治疗建议**\n多喝水，必要时就医",
        "1、病情解读：咳嗽一周，考虑支气管炎可能\n2、原因解析：多为病毒感染所致的炎症\n3、就诊建议：多喝水，必要时就医",
        "（一）病情分析\n咳嗽一周，考虑支气管炎可能\n（二）病因分析\n多为病毒感染所致的炎症\n（三）处理意见\n多喝水，必要时就医",
    ],
)
def test_more_heading_spellings_are_recognised(text):
    parsed = parse_answer(text)
    assert parsed.compliant, parsed.problems


def test_sub_labels_are_not_read_as_sections():
    parsed = parse_answer(THREE_PART_ANSWER)
    assert parsed.order == ["病情分析", "原因分析", "治疗建议"]
    assert parsed.sections["治疗建议"].startswith("就医指导：")


def test_a_section_eight_times_longer_than_another_is_unbalanced():
    text = (
        "一、病情分析\n咳嗽一周考虑感冒\n二、原因分析\n病毒感染引起的炎症\n三、治疗建议\n"
        + "多喝水多休息。" * 30
    )
    parsed = parse_answer(text)
    assert parsed.compliant  # balance lowers the score but is not part of compliance
    assert "unbalanced sections (one is over 8x another)" in parsed.problems
    assert parsed.score < parse_answer(THREE_PART_ANSWER).score


def test_canonical_text_rewrites_only_the_headings():
    from medtune.data.structure import canonical_text

    text = "### 1. **病情分析**\n咳嗽一周\n### 2. **病因分析**\n病毒感染\n### 3. **治病建议**\n多喝水"
    assert (
        canonical_text(parse_answer(text))
        == "一、病情分析\n咳嗽一周\n\n二、原因分析\n病毒感染\n\n三、治疗建议\n多喝水"
    )
    with pytest.raises(ValueError, match="治疗建议"):
        canonical_text(parse_answer("一、病情分析\n咳嗽\n二、原因分析\n感染"))
