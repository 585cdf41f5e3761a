"""Each cleaning rule on its own, the rule switches, and the place where extra rules plug in."""

import json
from collections import Counter

import pytest

from medtune.config import DataConfig, load_config
from medtune.data.clean import (
    Drop,
    Rule,
    RulePipeline,
    build_rules,
    chinese_ratio,
    is_mojibake,
    mojibake_score,
    normalize_unicode,
    strip_boilerplate,
    strip_html,
    strip_urls,
)
from medtune.data.schema import QARecord

REAL = "高血压患者首先要注意控制食盐摄入量，每天不超过六克，多吃新鲜的绿色蔬菜水果，效果不佳的话可以配合降压药物治疗。"


def _rec(question="头疼三天了怎么办", answer="注意休息，多喝水，如果加重请及时就医。"):
    return QARecord("r1", question, answer, source="f.jsonl:1")


def _run(rule_name, rec, **cfg):
    (rule,) = [r for r in build_rules(DataConfig(**cfg)) if r.name == rule_name]
    return rule.fn(rec, Counter())


def test_nfkc_keeps_chinese_punctuation_and_medical_notation():
    assert normalize_unicode("ＣＴ显示１２ｍｍ结节，怎么办？") == "CT显示12mm结节，怎么办？"
    assert normalize_unicode("头疼,发烧:三天了?") == "头疼，发烧：三天了？"
    assert (
        normalize_unicode("白细胞5.2×10⁹/L，体温38.5℃，①头痛②发热……")
        == "白细胞5.2×10⁹/L，体温38.5℃，①头痛②发热……"
    )
    assert normalize_unicode("剂量3,5 mg, BP:120/80") == "剂量3,5 mg, BP:120/80"
    assert normalize_unicode("每次10㎎") == "每次10mg"


def test_html_tags_and_entities_are_removed():
    assert (
        strip_html("多喝水<br/>多休息&nbsp;&lt;观察&gt;<script>x()</script><b>好</b>")
        == "多喝水\n多休息\xa0<观察>好"
    )
    assert strip_html("血压<140/90") == "血压<140/90"  # not a tag


def test_urls_are_removed():
    assert strip_urls("详见https://www.haodf.com/a/1.html或www.120ask.com。") == "详见或。"
    assert strip_urls("体温38.5度，服用0.5g") == "体温38.5度，服用0.5g"


def test_boilerplate_variants_are_stripped_and_content_kept():
    cases = {
        "你好，多喝水。感谢您的咨询，希望我的回答对您有帮助。": "多喝水。",
        "党参可以降血脂。感谢您的进行咨询，期望我的解释对你有所帮助。": "党参可以降血脂。",
        "注意饮食。上述的答案期望可以协助到您，谢谢。": "注意饮食。",
        "按时服药，祝您早日康复！": "按时服药",
        "多休息，以上是我的建议，仅供参考。": "多休息",
    }
    for text, expected in cases.items():
        assert strip_boilerplate(text) == expected
    assert strip_boilerplate(REAL) == REAL


def test_custom_boilerplate_patterns_replace_the_builtin_list():
    rec = _rec(answer="多喝水。本回答由某某平台提供。感谢您的咨询")
    _run("boilerplate", rec, boilerplate_patterns=["本回答由.{1,10}提供"])
    assert rec.answer == "多喝水。感谢您的咨询"


def test_mojibake_is_detected_and_real_text_is_not():
    assert mojibake_score(REAL) < 0.05
    garbled = [
        REAL.encode("utf-8").decode("gbk", errors="replace"),
        REAL.encode("gbk").decode("utf-8", errors="replace"),
        REAL.encode("utf-8").decode("latin-1"),
        "检查结果锟斤拷锟斤拷",
    ]
    assert all(is_mojibake(t, 0.3) for t in garbled)
    assert not is_mojibake("吃了布洛芬还是头疼😣，体温37.8℃，μg/L偏高", 0.3)
    verdict = _run("mojibake", _rec(answer=garbled[0]))
    assert verdict.startswith("answer looks garbled")


def test_chinese_ratio_counts_letters_not_digits():
    assert chinese_ratio("乙肝两对半结果：HBsAg(+), HBeAb(+), HBcAb(+)，ALT 32 U/L，正常吗？") > 0.3
    assert chinese_ratio("What should I do about a headache that lasts three days?") == 0.0
    assert _run("question_not_chinese", _rec(question="How to treat a cold quickly?")).startswith(
        "question is 0%"
    )
    assert _run("question_not_chinese", _rec()) is None
    assert _run("answer_not_chinese", _rec(answer="Drink water, rest, see a doctor.")) is not None


def test_length_rules_use_their_limits():
    assert _run("question_too_short", _rec(question="头疼")).startswith("question has 2 characters")
    assert _run("answer_too_long", _rec(answer="多喝水" * 10), max_answer_chars=20).startswith(
        "answer has 30"
    )
    names = [r.name for r in build_rules(DataConfig(max_answer_chars=None))]
    assert "answer_too_long" not in names and "question_too_long" in names


def test_referral_only_answers_are_dropped_and_real_answers_kept():
    for answer in (
        "你好，建议去医院就诊。",
        "您好，根据您的描述，这种情况建议您尽快到正规医院消化内科就诊，具体请遵医嘱。",
        "网上无法确诊，需要面诊。",
    ):
        assert _run("referral_only", _rec(answer=answer)) is not None, answer
    for answer in ("考虑是胃炎，建议到医院做胃镜检查。", REAL, "可以口服布洛芬退热，建议去医院查血常规。"):
        assert _run("referral_only", _rec(answer=answer)) is None, answer


def test_every_rule_can_be_switched_off():
    all_on = [r.name for r in build_rules(DataConfig())]
    assert all_on[:7] == ["mojibake", "html", "unicode", "urls", "pii", "boilerplate", "whitespace"]
    off = DataConfig(
        drop_mojibake=False,
        strip_html=False,
        normalize_unicode=False,
        strip_urls=False,
        scrub_pii=False,
        strip_boilerplate=False,
        normalize_whitespace=False,
        min_chinese_ratio_question=0,
        min_chinese_ratio_answer=0,
        drop_referral_only=False,
        max_question_chars=None,
        max_answer_chars=None,
    )
    assert [r.name for r in build_rules(off)] == ["question_too_short", "answer_too_short"]


def test_text_rules_rewrite_history_too_and_count_changes():
    rec = QARecord("r", "ＡＢ头疼", "好的", history=[{"role": "user", "content": "电话13812345678"}])
    pipeline = RulePipeline([r for r in build_rules(DataConfig()) if r.name in ("unicode", "pii")])
    assert pipeline(rec) is None
    assert rec.question == "AB头疼" and rec.history[0]["content"] == "电话<PHONE>"
    assert pipeline.stats["unicode"].counts["changed"] == 1
    assert pipeline.stats["pii"].counts == Counter({"changed": 1, "mobile": 1})


def test_pipeline_stops_at_the_first_drop_and_keeps_examples():
    pipeline = RulePipeline(build_rules(DataConfig()), examples=1)
    for i in range(3):
        assert (
            pipeline(QARecord(f"r{i}", "头疼", "多喝水多休息注意观察", source=f"f:{i}"))[0]
            == "question_too_short"
        )
    st = pipeline.stats["question_too_short"]
    assert (st.seen, st.dropped, len(st.examples)) == (3, 3, 1)
    assert pipeline.stats["answer_too_short"].seen == 0
    with pytest.raises(ValueError, match="already"):
        pipeline.add(Rule("pii", lambda r, c: None))


def test_an_extra_rule_runs_in_prepare_and_is_reported(tmp_path):
    from medtune.data.prepare import prepare
    from tests.conftest import SAMPLE_THREE_PART

    def no_antibiotics(rec, counts):
        counts["checked"] += 1
        return Drop("mentions antibiotics") if "抗生素" in rec.answer else None

    cfg = load_config(None, [f"data.raw_file={SAMPLE_THREE_PART}", f"output_root={tmp_path}"])
    result = prepare(cfg, extra_rules=[Rule("safety_screen", no_antibiotics)])
    dropped = result.stats["counts"]["dropped_safety_screen"]
    assert dropped > 0
    assert not any("抗生素" in r.answer for r in result.train + result.val)
    report = json.loads((cfg.data_dir / "data_report.json").read_text(encoding="utf-8"))
    (row,) = [r for r in report["rules"] if r["rule"] == "safety_screen"]
    assert row["dropped"] == dropped and row["counts"]["checked"] == row["in"]
