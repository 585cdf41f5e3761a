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


def test_titles_sub_labels_and_notice_markers_are_declared_only_in_structure():
    import medtune.data.restructure.offline
    import medtune.data.structure as structure
    import medtune.eval.metrics
    import medtune.eval.scoring
    import medtune.prompts
    import medtune.safety.engine
    import medtune.serve.engine
    import medtune.serve.webui

    users = {
        medtune.eval.metrics: ["SECTION_TITLES"],
        medtune.eval.scoring: ["SECTION_TITLES"],
        medtune.serve.webui: ["SECTION_TITLES", "SUBLABELS", "NOTICE_MARKERS"],
        medtune.serve.engine: ["NOTICE_MARKERS"],
        medtune.safety.engine: ["DISCLAIMER_NOTICE", "EMERGENCY_NOTICE", "SAFETY_NOTICE"],
        medtune.data.restructure.offline: ["SECTION_TITLES", "SUBSECTIONS"],
    }
    for module, names in users.items():
        for name in names:
            assert getattr(module, name, None) is getattr(structure, name), f"{module.__name__}.{name}"
    assert not hasattr(medtune.prompts, "SECTION_TITLES"), "declared once, in medtune.data.structure"


def test_every_notice_the_safety_layer_adds_is_known_to_serving_and_the_ui():
    from medtune.data.structure import NOTICE_MARKERS, SECTION_TITLES, SUBLABELS
    from medtune.safety import default_engine
    from medtune.serve.engine import strip_safety_text
    from medtune.serve.webui import render_sections

    answer = "\n\n".join(
        f"{n}、{t}\n" + "\n".join(f"{label}：内容" for label in SUBLABELS)
        for n, t in zip("一二三", SECTION_TITLES)
    )
    guarded = default_engine().guard("胸口疼还出冷汗", answer + "\n\n不用去医院，休息一下就好。").text
    notices = [p for p in guarded.split("\n\n") if p.startswith(NOTICE_MARKERS)]
    assert {p[:6] for p in notices} == set(NOTICE_MARKERS), "banner, safety note and disclaimer"
    assert strip_safety_text({"role": "assistant", "content": guarded})["content"].startswith("一、")
    md = render_sections(guarded)
    assert all(f"> {p.splitlines()[0]}" in md for p in notices)
    assert all(f"#### {n}、{t}" in md for n, t in zip("一二三", SECTION_TITLES))
    assert all(f"**{label}**：" in md for label in SUBLABELS)
