import pytest

from medtune.eval.metrics import bleu4, rouge_l, structure_metrics
from tests.conftest import THREE_PART_ANSWER


def test_rouge_l_is_one_for_identical_and_zero_for_disjoint_text():
    assert rouge_l("多喝水注意休息", "多喝水注意休息") == pytest.approx(1.0)
    assert rouge_l("甲乙丙", "丁戊己") == 0.0


def test_rouge_l_uses_the_longest_common_subsequence():
    # LCS of 多喝水休息 and 多喝温水多休息 is 多喝水休息 (5): P=5/5, R=5/7.
    assert rouge_l("多喝水休息", "多喝温水多休息") == pytest.approx(2 * 1 * (5 / 7) / (1 + 5 / 7))


def test_bleu_is_one_for_identical_text_and_penalises_brevity():
    ref = "建议多喝水注意休息必要时就医"
    assert bleu4(ref, ref) == pytest.approx(1.0)
    assert bleu4(ref[:6], ref) < bleu4(ref[:12], ref) < 1.0
    assert bleu4("完全不同的字符", ref) == 0.0


def test_structure_metrics_separate_three_part_and_full_form():
    loose = (
        "一、病情分析\n咳嗽一周考虑感冒\n二、原因分析\n病毒感染引起的炎症\n三、治疗建议\n多喝水多休息注意观察"
    )
    m = structure_metrics([THREE_PART_ANSWER, loose, "随便说两句"])
    assert m["compliance_rate"] == pytest.approx(2 / 3)
    assert m["full_form_rate"] == pytest.approx(1 / 3)
    assert m["has_治疗建议"] == pytest.approx(2 / 3)
