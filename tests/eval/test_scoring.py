"""Paired comparisons read the per-item scores that belong to each metric."""

from medtune.eval.scoring import add_paired
from medtune.eval.stats import rate


def test_each_exam_scorer_is_paired_on_its_own_per_item_results():
    # Likelihood: tuned gains items 1 and 2; generation: tuned loses items 0 and 1.
    base = {"0": {"correct": False, "correct_generate": True}, "1": {"correct": False, "correct_generate": True},
            "2": {"correct": False, "correct_generate": False}}  # fmt: skip
    tuned = {"0": {"correct": False, "correct_generate": False}, "1": {"correct": True, "correct_generate": False},
             "2": {"correct": True, "correct_generate": False}}  # fmt: skip
    metrics = {
        "base": {"accuracy": rate(0, 3), "accuracy_generate": rate(2, 3)},
        "tuned": {"accuracy": rate(2, 3), "accuracy_generate": rate(0, 3)},
    }
    add_paired(metrics, {"base": base, "tuned": tuned}, "base")
    lik, gen = metrics["tuned"]["accuracy"], metrics["tuned"]["accuracy_generate"]
    assert (lik["gained_vs_base"], lik["lost_vs_base"]) == (2, 0)
    assert (gen["gained_vs_base"], gen["lost_vs_base"]) == (0, 2)
    assert "delta_vs_base" not in metrics["base"]["accuracy"]
