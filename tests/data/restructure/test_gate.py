"""The quality gate and the faithfulness check, on hand-made rewrites and on the shipped sample."""

from __future__ import annotations

import pytest

from medtune.data.restructure.faithfulness import measures, unsupported
from medtune.data.restructure.gate import Gate, copy_ratio
from tests.data.restructure.conftest import sample_rows

QUESTION = "宝宝2岁半，发烧39度8，咳嗽三天了，能吃扑热息痛吗"
SOURCE = "考虑急性支气管炎可能，多由病毒感染引起。体温超过38.5度可以用对乙酰氨基酚退热，多喝水。如果出现气促请及时就医。"
GOOD = (
    "### 1. **病情分析**\n症状评估：2岁半幼儿发热39.8℃伴咳嗽3天。\n可能疾病：考虑急性支气管炎可能。\n\n"
    "### 2. **原因分析**\n主要病因：多由病毒感染引起。\n鉴别要点：需要医生面诊判断。\n\n"
    "### 3. **治疗建议**\n就医指导：如果出现气促请及时就医。\n治疗与生活建议：体温超过38.5℃可以用扑热息痛退热，多喝水。"
)


def test_a_faithful_three_part_rewrite_passes_with_canonical_headings():
    verdict = Gate().check(QUESTION, SOURCE, GOOD)
    assert verdict.ok, verdict.reasons
    assert verdict.flags == []
    assert verdict.answer.startswith("一、病情分析\n症状评估：")
    assert "\n\n二、原因分析\n" in verdict.answer and "\n\n三、治疗建议\n" in verdict.answer
    assert "###" not in verdict.answer and "**" not in verdict.answer


def test_an_unstructured_answer_fails_with_the_missing_sections():
    verdict = Gate().check(QUESTION, SOURCE, SOURCE)
    assert not verdict.ok
    assert "missing section 病情分析" in verdict.reasons
    assert verdict.answer is None


def test_chatter_before_the_first_section_fails():
    verdict = Gate().check(QUESTION, SOURCE, "好的，以下是改写后的回答：\n" + GOOD)
    assert not verdict.ok
    assert any(r.startswith("text before the first section") for r in verdict.reasons)


def test_an_answer_cut_at_max_tokens_fails_even_if_it_parses():
    verdict = Gate().check(QUESTION, SOURCE, GOOD, finish_reason="length")
    assert not verdict.ok and verdict.reasons[0].startswith("cut off")


def test_unbalanced_sections_fail():
    lopsided = GOOD.replace("多喝水。", "多喝水。" + "注意休息，观察体温变化，" * 40)
    verdict = Gate().check(QUESTION, SOURCE + "注意休息，观察体温变化", lopsided)
    assert not verdict.ok
    assert any(r.startswith("unbalanced") for r in verdict.reasons)


def test_invented_drug_dose_and_diagnosis_are_rejected_by_default():
    invented = GOOD.replace("多喝水。", "多喝水。可口服阿莫西林500mg，连用7天，警惕肺炎。")
    verdict = Gate().check(QUESTION, SOURCE, invented)
    assert not verdict.ok
    assert set(verdict.flags) == {"drug: 阿莫西林", "diagnosis: 肺炎", "measure: 500mg", "measure: 7天"}
    assert any(r.startswith("not in the question or source answer") for r in verdict.reasons)


def test_the_mark_policy_keeps_the_rewrite_and_lists_the_flags():
    invented = GOOD.replace("多喝水。", "多喝水。可口服阿莫西林500mg。")
    verdict = Gate(faithfulness="mark").check(QUESTION, SOURCE, invented)
    assert verdict.ok
    assert verdict.flags == ["drug: 阿莫西林", "measure: 500mg"]


def test_only_the_configured_kinds_are_checked():
    invented = GOOD.replace("多喝水。", "多喝水。可口服阿莫西林500mg。")
    assert Gate(checks=["measure"]).check(QUESTION, SOURCE, invented).flags == ["measure: 500mg"]


@pytest.mark.parametrize(
    ("source", "rewrite"),
    [
        ("可以吃扑热息痛", "可用对乙酰氨基酚"),  # one drug, two names
        ("发烧39度8", "体温39.8℃"),  # 39度8 is 39.8℃
        ("女 45，高烧39.8", "45岁女性，体温39.8℃"),  # ages and temperatures written bare
        ("一周左右会好", "病程1周左右"),  # Chinese numerals
        ("十几分钟后好了", "持续十余分钟"),  # vague amounts compare by their base
        ("考虑普通感冒", "考虑急性上呼吸道感染"),  # a synonym group
        ("说明神经根受压", "神经根受压"),  # no entity at all
    ],
)
def test_rephrasings_are_not_flagged(source, rewrite):
    assert unsupported("", source, rewrite) == []


@pytest.mark.parametrize(
    ("source", "rewrite", "finding"),
    [
        ("考虑鼻炎", "考虑过敏性鼻炎", "diagnosis: 过敏性鼻炎"),  # more specific than the source
        ("多喝水", "可服用奥司他韦", "drug: 奥司他韦"),
        ("多喝水", "可用替卡沙星治疗", "drug: 替卡沙星"),  # not in the lexicon: caught by its suffix
        ("多喝水", "需排除寰枢关节综合征", "diagnosis: 寰枢关节综合征"),
        ("每天两次", "每天三次", "measure: 3次"),
        ("体温38度", "体温超过38.5℃", "measure: 38.5℃"),
    ],
)
def test_inventions_are_flagged(source, rewrite, finding):
    assert finding in [str(f) for f in unsupported("", source, rewrite)]


def test_common_words_are_not_mistaken_for_names():
    text = "炎症消退后可定期复查，注意情绪安定，消炎药不要乱用，一次性说清楚"
    assert unsupported("", "多休息", text) == []


def test_measures_are_normalised():
    got = measures("39度8，每日3次，每次500毫克，3-5天，半小时，一百八十次，两三个钟头，一个多月")
    assert got == {"39.8℃", "3次", "500mg", "3天", "5天", "0.5小时", "180次", "两三小时", "1月"}


def test_no_answer_is_unfaithful_to_itself():
    rows = sample_rows()
    assert all(unsupported(r["instruction"], r["output"], r["output"]) == [] for r in rows)


def test_sample_three_part_rewrites_are_mostly_flagged_for_added_diagnoses():
    """The shipped three-part answers add differential diagnoses (鉴别要点) the raw answers never named.

    This pins the check's behaviour on real data: diagnoses dominate, invented doses are rare."""
    import json

    from tests.data.restructure.conftest import ROOT

    three = [
        json.loads(x) for x in (ROOT / "data/sample/medqa_three_part.jsonl").read_text("utf-8").splitlines()
    ]
    kinds = {"drug": 0, "measure": 0, "diagnosis": 0}
    for raw, rewritten in zip(sample_rows(), three):
        for kind in {f.kind for f in unsupported(raw["instruction"], raw["output"], rewritten["output"])}:
            kinds[kind] += 1
    assert kinds["diagnosis"] > 150 and kinds["measure"] < 60 and kinds["drug"] < 20, kinds


def test_a_section_that_repeats_the_question_is_rejected_as_copied():
    # Split over the sub-labels and re-punctuated, it is still the question word for word.
    parroted = GOOD.replace(
        "症状评估：2岁半幼儿发热39.8℃伴咳嗽3天。\n可能疾病：考虑急性支气管炎可能。",
        "症状评估：宝宝2岁半，发烧39度8。\n可能疾病：咳嗽三天了，能吃扑热息痛吗？",
    )
    verdict = Gate().check(QUESTION, SOURCE, parroted)
    assert not verdict.ok
    assert len(verdict.reasons) == 1, verdict.reasons
    assert verdict.reasons[0].startswith("copied section: 病情分析 repeats the question (100% of it")


def test_the_source_answer_pasted_whole_into_one_section_is_rejected_as_copied():
    pasted = (
        f"一、病情分析\n{SOURCE}\n\n二、原因分析\n主要病因：病毒感染，需要医生面诊判断。\n\n"
        "三、治疗建议\n就医指导：气促时及时就医。\n治疗与生活建议：多喝水，注意休息。"
    )
    verdict = Gate().check(QUESTION, SOURCE, pasted)
    assert any(
        r.startswith("copied section: 病情分析 holds the source answer pasted whole") for r in verdict.reasons
    )


def test_regrouping_the_source_sentences_is_not_copying():
    # GOOD takes whole sentences from the source (如果出现气促请及时就医), spread over the sections.
    assert not Gate().copied_sections(QUESTION, SOURCE, {"治疗建议": "如果出现气促请及时就医。多喝水。"})
    assert Gate().check(QUESTION, SOURCE, GOOD).ok


def test_max_copy_ratio_1_turns_the_check_off():
    assert Gate(max_copy_ratio=1.0).copied_sections(QUESTION, SOURCE, {"病情分析": QUESTION}) == []


@pytest.mark.parametrize(
    ("text", "reference", "ratio"),
    [
        ("宝宝2岁半，发烧39度8", "宝宝 2岁半 发烧39度8！", 1.0),  # spacing and punctuation do not count
        ("多喝水注意休息", "多喝水注意休息", 0.0),  # shorter than a copied run
        ("咳嗽三天了能吃扑热息痛吗考虑急性支气管炎", "咳嗽三天了，能吃扑热息痛吗", 0.6),
        ("考虑急性支气管炎可能", "宝宝2岁半，发烧39度8", 0.0),
    ],
)
def test_copy_ratio_is_the_share_covered_by_shared_runs(text, reference, ratio):
    assert copy_ratio(text, reference) == pytest.approx(ratio)


def test_the_shipped_sample_rewrites_copy_no_section():
    """The default threshold passes every good rewrite of the sample (the numbers are in config.py)."""
    import json

    from medtune.data.structure import parse_answer
    from tests.data.restructure.conftest import ROOT

    three = [
        json.loads(x) for x in (ROOT / "data/sample/medqa_three_part.jsonl").read_text("utf-8").splitlines()
    ]
    gate = Gate()
    for raw, rewritten in zip(sample_rows(), three):
        sections = parse_answer(rewritten["output"]).sections
        assert gate.copied_sections(raw["instruction"], raw["output"], sections) == [], raw["id"]
