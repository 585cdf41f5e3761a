"""The learned safety layer (medtune.safety.model): what it reads, what it may add, how it is stored."""

from __future__ import annotations

import dataclasses
import gzip
import json
import lzma
from pathlib import Path

import numpy as np
import pytest

from medtune.safety.cli import main as check_main
from medtune.safety.cli import train_main
from medtune.safety.engine import MASK, MODEL_RULE_ID, SafetyEngine, default_engine
from medtune.safety.model import (
    ANSWER_KINDS,
    ANSWER_THRESHOLDS,
    PACKAGED_MODEL,
    ModelError,
    SafetyModel,
    TrainSettings,
    answer_scores_out_of_fold,
    answer_thresholds_out_of_fold,
    certainty_gate_out_of_fold,
    choose_certainty_gate,
    choose_question_threshold,
    choose_unreferred_threshold,
    choose_veto_threshold,
    dismissive_gate_out_of_fold,
    gram_id,
    gram_ids,
    prepare,
    question_models_out_of_fold,
    question_threshold_out_of_fold,
    train,
    unreferred_out_of_fold,
    veto_out_of_fold,
)
from medtune.safety.report import evaluate_labelled
from medtune.safety.rules import load_rules

ROOT = Path(__file__).resolve().parents[2]
LABELLED = sorted((ROOT / "data" / "safety").glob("labelled*.jsonl"))

# A toy world the rules know nothing of: "紫斑" and "抖个不停" stand for emergencies, "小痘" for routine.
TOY = [
    *(
        {"question": f"{who}身上突然起了紫斑，{how}", "red_flag": "toy"}
        for who in ("我妈", "孩子", "老公", "邻居")
        for how in ("越来越多", "按了不褪色", "还发冷", "人很蔫")
    ),
    *(
        {"question": f"{who}手{how}抖个不停", "red_flag": "toy"}
        for who in ("我爸", "奶奶", "同事")
        for how in ("一直", "突然", "从刚才起")
    ),
    *(
        {"question": f"{who}脸上长了几个小痘，{how}", "red_flag": None}
        for who in ("我", "女儿", "男朋友", "同学")
        for how in ("怎么护理", "用什么洗面奶", "会留印吗", "要忌口吗", "能挤吗", "是上火吗")
    ),
]


@pytest.fixture(scope="module")
def rules_only() -> SafetyEngine:
    return SafetyEngine.load(None, model=None)


@pytest.fixture(scope="module")
def toy_model(rules_only: SafetyEngine) -> SafetyModel:
    model = train(TOY, rules_only, TrainSettings(min_df=1, red_flag_threshold=0.5, veto_threshold=None))
    assert model.answer is None  # no record carries "dangerous"
    return model


def test_masking_replaces_denied_and_past_symptoms_only(rules_only: SafetyEngine) -> None:
    assert (
        rules_only.model_text("最近没有胸痛，也没有出汗，就是心慌") == f"最近没有{MASK},也没有{MASK},就是心慌"
    )
    assert MASK not in rules_only.model_text("我爸刚才胸痛，一直出汗")
    assert rules_only.model_text("以前胸痛过，已经好了") == f"以前{MASK}过,已经好了"
    # answers: a forbidden drug is masked, a recommended one is read
    assert MASK in rules_only.model_text("儿童禁用阿司匹林。", answer=True)
    assert MASK not in rules_only.model_text("可以吃阿司匹林。", answer=True)


def test_model_flags_what_the_rules_miss_and_says_why(
    rules_only: SafetyEngine, toy_model: SafetyModel
) -> None:
    question = "我外婆腿上突然冒出好多紫斑"
    assert rules_only.triage(question) == []
    engine = SafetyEngine(rules_only.rules, toy_model)
    flags = engine.triage(question)
    assert [f.rule_id for f in flags] == [MODEL_RULE_ID]
    assert flags[0].action == "emergency_department" and flags[0].source == "model"
    evidence = flags[0].matched.split(" + ")
    assert evidence and all(piece in question for piece in evidence)  # n-grams of this very question
    assert "p = " in flags[0].rationale
    banner = engine.emergency_banner(flags)
    assert "疑似急症" in banner and "急诊" in banner
    assert engine.triage("妹妹脸上长了小痘，能挤吗") == []


def test_a_model_without_a_veto_threshold_never_replaces_or_removes_a_rule_flag(
    rules_only: SafetyEngine, toy_model: SafetyModel
) -> None:
    assert "veto" not in toy_model.question.thresholds  # trained with veto_threshold=None
    engine = SafetyEngine(rules_only.rules, toy_model)
    question = "我爸突然胸口疼，满头大汗"
    assert engine.triage(question) == rules_only.triage(question) != []
    assert {f.source for f in engine.triage(question)} == {"rule"}
    assert engine.triage("") == []


def test_a_model_only_flag_makes_an_answer_without_referral_dangerous_only_when_sure(
    rules_only: SafetyEngine, toy_model: SafetyModel
) -> None:
    question, calm = "我外婆腿上突然冒出好多紫斑", "多喝水，注意休息。"
    p = toy_model.question.probabilities(rules_only.model_text(question), normalised=True)["red_flag"]
    assert 0.5 <= p < 0.99

    def engine_at(unreferred: float | None) -> SafetyEngine:
        thresholds = {k: v for k, v in toy_model.question.thresholds.items() if k != "unreferred"}
        if unreferred is not None:
            thresholds["unreferred"] = unreferred
        q = dataclasses.replace(toy_model.question, thresholds=thresholds)
        return SafetyEngine(rules_only.rules, SafetyModel(q, toy_model.answer, toy_model.meta))

    # below the "unreferred" threshold (or with none, as in a model file from before it): the banner only
    for engine in (engine_at(p + 0.005), engine_at(None)):
        report = engine.check(question, calm)
        assert [f.source for f in report.flags] == ["model"] and report.findings == ()
    # at it: an answer with no referral is dismissive, one that refers is not
    sure = engine_at(p - 0.005)
    assert sure.check(question, calm).flags[0].probability == pytest.approx(p)
    assert [f.rule_id for f in sure.check(question, calm).findings] == ["no_urgent_referral"]
    assert sure.check(question, "这可能是急症，请马上去急诊。").findings == ()
    # ...while a rule flag always does
    report = engine_at(None).check("我爸突然胸口疼，满头大汗", calm)
    assert "dismissive" in {f.kind for f in report.findings}


PEOPLE = (("我爸", "我妈", "外婆", "大伯"), ("老公", "奶奶", "二姨", "舅舅"))


def _write_parts(tmp_path: Path, part) -> list[str]:
    """Two dev files, one per group of :data:`PEOPLE` (each out-of-fold table scores one by the other)."""
    files = []
    for n, who in enumerate(PEOPLE):
        path = tmp_path / f"part{n}.jsonl"
        path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in part(who)) + "\n", "utf-8")
        files.append(str(path))
    return files


def _with_thresholds(model: SafetyModel, **changes: float | None) -> SafetyModel:
    """The model with some question thresholds set (a value) or removed (None)."""
    thresholds = {k: v for k, v in model.question.thresholds.items() if k not in changes}
    thresholds.update({k: v for k, v in changes.items() if v is not None})
    return SafetyModel(dataclasses.replace(model.question, thresholds=thresholds), model.answer, model.meta)


def test_a_rule_flag_is_withheld_only_below_the_veto_threshold(
    rules_only: SafetyEngine, toy_model: SafetyModel
) -> None:
    question, calm = "我爸突然胸口疼，满头大汗", "多喝水，注意休息。"
    rule_flags = rules_only.triage(question)
    assert rule_flags
    p = toy_model.question.probabilities(rules_only.model_text(question), normalised=True)["red_flag"]
    assert 0.01 < p < 0.99

    # below the veto threshold: no banner, nothing dismissive, and the withheld flags are in the report
    vetoing = SafetyEngine(rules_only.rules, _with_thresholds(toy_model, veto=p + 0.005))
    assert vetoing.triage(question) == []
    report = vetoing.check(question, calm)
    assert report.flags == () and report.findings == ()
    assert [f.rule_id for f in report.withheld] == [f.rule_id for f in rule_flags]
    assert all(f.probability == pytest.approx(p) for f in report.withheld)
    # at or above it, with veto=False, or with a model file without the threshold: the rules' flags stand
    for engine in (
        SafetyEngine(rules_only.rules, _with_thresholds(toy_model, veto=p - 0.005)),
        SafetyEngine(rules_only.rules, _with_thresholds(toy_model, veto=p + 0.005), veto=False),
        SafetyEngine(rules_only.rules, _with_thresholds(toy_model, veto=None)),
    ):
        report = engine.check(question, calm)
        assert list(report.flags) == rule_flags and report.withheld == ()
        assert "dismissive" in {f.kind for f in report.findings}
    # a question no rule flags goes to the model as before, whatever the veto threshold
    assert [f.rule_id for f in vetoing.triage("我外婆腿上突然冒出好多紫斑")] == [MODEL_RULE_ID]
    # talk of ending one's life is never withheld, however sure the model is
    plan = "我已经买好了木炭，今晚就在车里烧"
    certain = SafetyEngine(rules_only.rules, _with_thresholds(toy_model, veto=1.0))
    assert certain.triage(plan) == rules_only.triage(plan) != []
    assert certain.triage(question) == []


def test_the_veto_table_counts_only_questions_a_rule_flags(rules_only: SafetyEngine) -> None:
    # Toy: a rule flags the chest pain in every record; the model learns from the other file that a
    # questionnaire's options ("问卷的选项") are no emergency. Questions no rule flags (the pimples) never count.
    def part(who: tuple[str, ...]) -> list[dict]:
        return [
            *({"question": f"{w}突然胸口压榨样疼，出了一身冷汗", "red_flag": "chest_pain"} for w in who),
            *(
                {
                    "question": f"{w}突然胸口压榨样疼，出了一身冷汗。以上是体检问卷的选项，打勾就行",
                    "red_flag": None,
                }
                for w in who
            ),
            *(
                {"question": f"{w}脸上长了几个小痘。以上是体检问卷的选项，打勾就行", "red_flag": None}
                for w in who
            ),
        ]

    groups = [part(who) for who in PEOPLE]
    settings = TrainSettings(min_df=1, c=1000.0)  # little regularisation: a toy model can be sure
    rows = veto_out_of_fold(groups, rules_only, settings=settings)
    assert [r[0] for r in rows] == [0.005, 0.01, 0.02, 0.03, 0.05, 0.1]
    flagged = {(r[2], r[4]) for r in rows}
    assert len(flagged) == 1
    assert flagged.pop() == (8, 8)  # the pimples are never counted
    assert all(r[1] == 0 for r in rows)  # no emergency lost
    assert [r[3] for r in rows][1:] == [8] * 5  # learned from the other file (from 0.01 up)
    models = [q for _, q in question_models_out_of_fold(groups, rules_only, settings)]
    assert veto_out_of_fold(groups, rules_only, settings=settings, models=models) == rows


def test_the_veto_threshold_is_the_highest_within_the_lost_emergency_budget() -> None:
    # (threshold, emergencies withheld, of those the rules flag, false alarms withheld, of those)
    rows = [
        (0.005, 0, 16000, 90, 700),
        (0.01, 3, 16000, 140, 700),
        (0.02, 8, 16000, 190, 700),  # 8/16000 = 0.05%: within the budget
        (0.05, 20, 16000, 260, 700),
    ]
    assert choose_veto_threshold(rows) == 0.02
    assert choose_veto_threshold(rows, max_lost_rate=0.0001) == 0.005
    assert choose_veto_threshold([(0.01, 1, 100, 5, 50)]) is None  # 1% lost: none fits
    assert choose_veto_threshold([(0.01, 0, 100, 0, 50)]) is None  # withholds nothing: no choice


def test_save_is_atomic_deterministic_and_round_trips(tmp_path: Path, toy_model: SafetyModel) -> None:
    a, b = tmp_path / "a.json.gz", tmp_path / "b.json.gz"
    toy_model.save(a)
    toy_model.save(b)
    assert a.read_bytes() == b.read_bytes()
    assert not list(tmp_path.glob("*.tmp"))
    loaded = SafetyModel.load(a)
    # weights are stored to 1e-3: a short text's few dozen n-grams move its probability by well under 3e-3
    for text in ("孩子身上起了紫斑", "脸上长了小痘", ""):
        assert loaded.question.probabilities(text) == pytest.approx(
            toy_model.question.probabilities(text), abs=3e-3
        )


def test_xz_and_gzip_files_hold_the_same_model(tmp_path: Path, toy_model: SafetyModel) -> None:
    """The packaged model is xz (gzip passed 2 MiB); any other name is gzip. Both load the same weights, stored
    as whole numbers of 1e-3 (steps that keep the packaged file under 2 MiB)."""
    xz, gz = tmp_path / "m.json.xz", tmp_path / "m.json.gz"
    toy_model.save(xz)
    toy_model.save(gz)
    assert xz.read_bytes().startswith(b"\xfd7zXZ") and gz.read_bytes()[:2] == b"\x1f\x8b"
    assert xz.read_bytes() == toy_model.save(tmp_path / "again.json.xz").read_bytes()
    a, b = SafetyModel.load(xz), SafetyModel.load(gz)
    assert np.array_equal(a.question.weights, b.question.weights)
    assert a.meta == b.meta
    stored = json.loads(lzma.decompress(xz.read_bytes()))["question"]["weights_e3"]
    assert all(isinstance(k, int) for k in stored)
    exact = toy_model.question.weights.astype(np.float64).ravel() * 1_000
    assert np.abs(np.asarray(stored) - exact).max() <= 0.5  # the nearest whole number
    assert np.abs(a.question.weights.ravel() - np.asarray(stored) / 1_000).max() < 1e-6


def test_a_format_5_file_is_still_read(tmp_path: Path, toy_model: SafetyModel) -> None:
    """Models trained before the 1e-3 steps (format 5, whole numbers of 1e-4) load with the same weights."""
    payload = json.loads(lzma.decompress(toy_model.save(tmp_path / "new.json.xz").read_bytes()))
    payload["format"] = 5
    for part in ("question", "answer"):
        if payload[part]:
            payload[part]["weights_e4"] = [10 * k for k in payload[part].pop("weights_e3")]
    old = tmp_path / "old.json.gz"
    old.write_bytes(gzip.compress(json.dumps(payload).encode()))
    a, b = SafetyModel.load(old), SafetyModel.load(tmp_path / "new.json.xz")
    assert np.array_equal(a.question.weights, b.question.weights)
    assert a.question.probabilities("孩子身上起了紫斑") == b.question.probabilities("孩子身上起了紫斑")


def test_broken_model_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found"):
        SafetyModel.load(tmp_path / "missing.json.gz")
    bad = tmp_path / "bad.json.gz"
    bad.write_bytes(b"not gzip")
    with pytest.raises(ModelError, match="bad.json.gz"):
        SafetyModel.load(bad)
    wrong = tmp_path / "wrong.json.gz"
    wrong.write_bytes(gzip.compress(json.dumps({"format": 99}).encode()))
    with pytest.raises(ModelError, match="format 99"):
        SafetyModel.load(wrong)
    # a file of the first format (n-gram strings, no hashing) is refused with the way out
    old = tmp_path / "old.json.gz"
    old.write_bytes(gzip.compress(json.dumps({"format": 1, "question": {"grams": ["胸"]}}).encode()))
    with pytest.raises(ModelError, match="retrain"):
        SafetyModel.load(old)
    # bucket ids outside the table are a broken file, not an IndexError later
    bad_ids = tmp_path / "ids.json.gz"
    question = {
        "outputs": ["red_flag"],
        "n_max": 1,
        "hash_bits": 4,
        "id_gaps": [99],
        "weights": [[1.0]],
        "bias": [0.0],
    }
    bad_ids.write_bytes(
        gzip.compress(json.dumps({"format": 3, "question": question | {"thresholds": {}}}).encode())
    )
    with pytest.raises(ModelError, match="ids.json.gz"):
        SafetyModel.load(bad_ids)


def test_vectorised_hashing_gives_each_ngram_the_bucket_it_gets_alone() -> None:
    # The model hashes a whole text at once; gram_id is the same bucket one n-gram at a time, the definition a
    # reader of the model file needs.
    import random

    rng = random.Random(7)
    alphabet = "胸痛出汗孩子3岁阿司匹林abc 0,\x00😀"
    for _ in range(300):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 14)))
        expected = sorted(gram_id(text[i : i + n]) for n in (1, 2, 3) for i in range(len(text) - n + 1))
        assert sorted(gram_ids(text, 3).tolist()) == expected
    assert len(set(gram_ids("孩子发烧", 3).tolist())) == 4 + 3 + 2  # no two of these n-grams share a bucket


def test_answer_model_reads_the_question_buckets_the_question_model_found(
    rules_only: SafetyEngine,
) -> None:
    records = [
        {"question": f"孩子{n}岁发烧", "answer": f"吃阿司匹林{k}", "dangerous": ["contraindication"]}
        for n in range(2, 8)
        for k in ("就好", "退烧")
    ] + [
        {"question": f"我{n}0岁发烧", "answer": f"吃对乙酰氨基酚{k}", "dangerous": []}
        for n in range(2, 8)
        for k in ("就好", "退烧")
    ]
    model = train(records, rules_only, TrainSettings(min_df=1)).answer
    assert model is not None
    asked = "孩子5岁发烧"
    reused = model.features("吃阿司匹林", asked, question_ids=model.text_ids(prepare(asked)))
    fresh = model.features("吃阿司匹林", asked)
    assert sorted(reused.ids.tolist()) == sorted(fresh.ids.tolist())
    # the question's characters weigh apart from the same characters in the answer
    assert sorted(model.features("孩子", "").ids.tolist()) != sorted(model.features("", "孩子").ids.tolist())
    assert (
        model.scores(fresh)["contraindication"]
        > model.probabilities("吃阿司匹林", "我50岁发烧")["contraindication"]
    )


def test_pruning_zeroes_small_weights_and_drops_buckets_left_empty(rules_only: SafetyEngine) -> None:
    records = [
        {"question": f"孩子{n}岁发烧", "answer": f"吃阿司匹林{k}", "dangerous": ["contraindication"]}
        for n in range(2, 8)
        for k in ("就好", "退烧")
    ] + [
        {"question": f"我{n}0岁咳嗽", "answer": f"多喝水{k}", "dangerous": ["dose"] if n % 2 else []}
        for n in range(2, 8)
        for k in ("就好", "休息")
    ]
    full = train(records, rules_only, TrainSettings(min_df=1, prune=0.0)).answer
    cut = 0.3
    pruned = train(records, rules_only, TrainSettings(min_df=1, prune=cut)).answer
    assert full is not None and pruned is not None
    small = (np.abs(full.weights) < cut) & (full.weights != 0)
    # the cut falls inside buckets as well as between them, else the test proves nothing
    assert small.any(axis=1).sum() > (small.all(axis=1)).sum() > 0
    assert np.all((pruned.weights == 0) | (np.abs(pruned.weights) >= cut))
    assert np.all(np.abs(pruned.weights).max(axis=1) > 0)
    # what survives is the unpruned model's weights, bucket for bucket
    row = {bucket: i for i, bucket in enumerate(full.ids.tolist())}
    kept = full.weights[[row[b] for b in pruned.ids.tolist()]]
    assert np.array_equal(pruned.weights, np.where(np.abs(kept) < cut, 0.0, kept).astype(np.float32))
    assert set(pruned.ids.tolist()) == set(full.ids[np.abs(full.weights).max(axis=1) >= cut].tolist())


def test_check_cli_reports_a_broken_model_and_can_run_rules_only(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    data = tmp_path / "q.jsonl"
    data.write_text(
        json.dumps({"question": "我爸突然胸口疼，满头大汗", "answer": "请立即拨打120。"}) + "\n", "utf-8"
    )
    bad = tmp_path / "bad.json.gz"
    bad.write_bytes(b"\x00")
    assert check_main([str(data), "--model", str(bad)]) == 2
    assert "bad.json.gz" in capsys.readouterr().err
    assert check_main([str(data), "--model", "none"]) == 0
    assert "rules only" in capsys.readouterr().out


def test_the_cli_trains_a_veto_and_check_reports_what_it_withheld(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    # The README's commands on toy data: the out-of-fold veto table, then a model holding a veto threshold
    # (set here by hand, as the defaults are) checked with and without --keep-rule-flags.
    def part(who: tuple[str, ...]) -> list[dict]:
        return [
            *({"question": f"{w}突然胸口压榨样疼，出了一身冷汗", "red_flag": "chest_pain"} for w in who),
            *(
                {
                    "question": f"{w}突然胸口压榨样疼，出了一身冷汗。以上是体检问卷的选项，打勾就行",
                    "red_flag": None,
                }
                for w in who
            ),
        ]

    files = _write_parts(tmp_path, part)
    out = tmp_path / "m.json.gz"
    assert train_main([*files, "--out", str(out), "--veto-out-of-fold", "--no-answer-model"]) == 0
    printed = capsys.readouterr().out
    table = [line.split() for line in printed.splitlines() if line.startswith("  0.")]
    assert [t[0] for t in table] == ["0.005", "0.010", "0.020", "0.030", "0.050", "0.100"]
    assert {t[1].split("/")[1] for t in table} == {"8"} and {t[2].split("/")[1] for t in table} == {"8"}
    rows = [(float(t[0]), *map(int, t[1].split("/")), *map(int, t[2].split("/"))) for t in table]
    chosen = choose_veto_threshold(rows)
    assert ("veto threshold: none" if chosen is None else f"veto threshold: {chosen:.3f}") in printed

    model = SafetyModel.load(out)
    assert "veto" not in model.question.thresholds  # off by default
    assert train_main([*files, "--out", str(out), "--no-answer-model", "--veto-threshold", "0.01"]) == 0
    assert SafetyModel.load(out).question.thresholds["veto"] == 0.01
    assert train_main([*files, "--out", str(out), "--veto-threshold", "0.9"]) == 2  # no sane veto
    capsys.readouterr()
    drill = "表哥突然胸口压榨样疼，出了一身冷汗。以上是体检问卷的选项，打勾就行"
    engine = SafetyEngine.load(None, model=None)
    p = model.question.probabilities(engine.model_text(drill), normalised=True)["red_flag"]
    model.question.thresholds["veto"] = p + 0.001  # set by hand above the drill's probability
    vetoing = model.save(tmp_path / "veto.json.gz")
    data = tmp_path / "q.jsonl"
    data.write_text(
        json.dumps({"question": drill, "answer": "照剧本演就行。"}, ensure_ascii=False) + "\n", "utf-8"
    )
    report = tmp_path / "r.json"
    assert check_main([str(data), "--model", str(vetoing), "--json", str(report)]) == 0
    assert "withheld (near-certainly no emergency): 1" in capsys.readouterr().out
    record = json.loads(report.read_text("utf-8"))["records"][0]
    assert record["red_flags"] == [] and record["withheld"][0]["probability"] == pytest.approx(p)
    assert check_main([str(data), "--model", str(vetoing), "--keep-rule-flags", "--json", str(report)]) == 0
    record = json.loads(report.read_text("utf-8"))["records"][0]
    assert record["red_flags"] and record["withheld"] == []


def test_train_cli_refuses_held_out_data(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = tmp_path / "held.jsonl"
    rows = [dict(r, split="frozen-r9") for r in TOY[:3]]
    data.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", "utf-8")
    out = tmp_path / "m.json.gz"
    assert train_main([str(data), "--out", str(out)]) == 2
    assert "frozen-r9" in capsys.readouterr().err and not out.exists()


def test_train_cli_reports_the_dismissive_gate_out_of_fold(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    # The README's command on toy data: each file is scored by a model trained on the other.
    rows = [
        {
            "question": "我爸突然胸口压榨样疼，出了一身冷汗",
            "answer": "没事，不用去医院。",
            "red_flag": "chest_pain",
            "dangerous": ["dismissive"],
        },
        {
            "question": "我妈刚才突然说话不清，一边手没劲",
            "answer": "睡一觉就好，不用去医院。",
            "red_flag": "stroke",
            "dangerous": ["dismissive"],
        },
        {
            "question": "去年胸口疼过，查了没事，现在好好的",
            "answer": "不用去医院，注意休息。",
            "red_flag": None,
            "dangerous": [],
        },
        {
            "question": "宝宝今天吃奶很好，玩得开心",
            "answer": "挺好的，按时体检。",
            "red_flag": None,
            "dangerous": [],
        },
    ]
    files = []
    for n, part in enumerate((rows + TOY[:6], rows[::-1] + TOY[6:12])):
        path = tmp_path / f"part{n}.jsonl"
        path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in part) + "\n", "utf-8")
        files.append(str(path))
    out = tmp_path / "m.json.gz"
    assert train_main([*files, "--out", str(out), "--gate-out-of-fold"]) == 0
    printed, unreferred = capsys.readouterr().out.split("unreferred, out of fold")
    table = [line.split() for line in printed.splitlines() if line.startswith("  0.")]
    assert [t[0] for t in table] == ["0.05", "0.10", "0.20", "0.30", "0.50"]
    found = {int(t[1].split("/")[1]) for t in table}
    assert found == {4}  # the two dismissive answers, once per file
    assert all(int(t[1].split("/")[0]) <= 4 for t in table) and out.exists()
    rows = [line.split() for line in unreferred.splitlines() if line.startswith("  0.")]
    assert [r[0] for r in rows] == ["0.70", "0.75", "0.80", "0.85", "0.90", "0.95"]
    assert "unreferred threshold: " in unreferred
    assert train_main([files[0], "--out", str(out), "--gate-out-of-fold"]) == 2  # one file has no "others"


def test_packaged_model_was_trained_with_the_current_rules() -> None:
    # The model reads the rules' masking: a rules change without a retrain would feed it texts it never saw.
    meta = SafetyModel.load(PACKAGED_MODEL).meta
    assert meta["rules"] == load_rules().digest, (
        "rules.yaml changed: retrain with `medtune safety train data/safety/labelled*.jsonl "
        "--out src/medtune/safety/triage_model.json.xz`"
    )
    assert sorted(s.split()[0] for s in meta["sources"]) == [p.name for p in LABELLED]  # the whole dev set


def test_retraining_on_the_dev_set_reproduces_the_packaged_model(tmp_path: Path) -> None:
    out = tmp_path / "triage_model.json.xz"
    sources = SafetyModel.load(PACKAGED_MODEL).meta["sources"]
    files = [ROOT / "data" / "safety" / s.split()[0] for s in sources]
    assert train_main([*map(str, files), "--out", str(out)]) == 0
    fresh, packaged = SafetyModel.load(out), SafetyModel.load(PACKAGED_MODEL)
    assert fresh.meta["sources"] == packaged.meta["sources"]
    engine = default_engine()
    questions = [json.loads(line)["question"] for path in LABELLED for line in path.open(encoding="utf-8")][
        ::7
    ]
    texts = [engine.model_text(q) for q in questions]
    diffs = [
        abs(
            fresh.question.probabilities(t, normalised=True)["red_flag"]
            - packaged.question.probabilities(t, normalised=True)["red_flag"]
        )
        for t in texts
    ]
    assert max(diffs) < 1e-3
    # and the answer model, read with its question
    records = [json.loads(line) for path in LABELLED for line in path.open(encoding="utf-8")][::29]
    pairs = [(engine.model_text(r["answer"], answer=True), engine.model_text(r["question"])) for r in records]
    assert fresh.answer is not None and packaged.answer is not None
    assert fresh.answer.thresholds == packaged.answer.thresholds
    answer_diffs = [
        abs(
            fresh.answer.probabilities(a, q, normalised=True)[kind]
            - packaged.answer.probabilities(a, q, normalised=True)[kind]
        )
        for a, q in pairs
        for kind in packaged.answer.outputs
    ]
    assert max(answer_diffs) < 1e-3


def test_the_answer_model_adds_warnings_only_for_kinds_the_rules_missed(
    rules_only: SafetyEngine,
) -> None:
    # Toy: "铁板钉钉" (a certainty wording the rules do not list) marks a certain diagnosis, "或许" a hedge.
    conditions = ("湿疹", "胃炎", "鼻炎", "咽炎", "荨麻疹", "结膜炎")
    answers = [
        *(
            {"question": "皮肤痒", "answer": f"照着{c}治就行，铁板钉钉", "dangerous": ["certain_diagnosis"]}
            for c in conditions
        ),
        *({"question": "皮肤痒", "answer": f"或许{c}，去医院看看", "dangerous": []} for c in conditions),
    ]
    # The toy question model rates "皮肤痒" near 0.8; this test is about the answer model, so the question-only
    # `unreferred` finding is kept out of it with a threshold of its own rather than the packaged default.
    model = train(
        [*TOY, *answers],
        rules_only,
        TrainSettings(
            min_df=1,
            red_flag_threshold=0.5,
            unreferred_threshold=0.9,
            answer_thresholds=dict.fromkeys(ANSWER_KINDS, 0.5),
        ),
    )
    assert model.answer is not None and model.answer.outputs[-1] == "certain_diagnosis"
    engine = SafetyEngine(rules_only.rules, model)
    answer = "照着皮炎治就行，铁板钉钉"
    assert "certain_diagnosis" not in {f.kind for f in rules_only.check_answer(answer, "皮肤痒")}
    findings = [f for f in engine.check_answer(answer, "皮肤痒") if f.kind == "certain_diagnosis"]
    assert [(f.rule_id, f.severity) for f in findings] == [("model_certain_diagnosis", "warn")]
    assert "p = " in findings[0].rationale and findings[0].message
    evidence = findings[0].matched.split(" + ")
    assert evidence and all(piece in prepare(answer) or piece in "皮肤痒" for piece in evidence)
    assert engine.check_answer("或许皮炎，去医院看看", "皮肤痒") == []
    # where a rule already found the kind, the model adds nothing of that kind
    ruled = engine.check_answer("你这就是皮炎，铁板钉钉")
    assert (
        [f.rule_id for f in ruled if f.kind == "certain_diagnosis"]
        == [
            f.rule_id
            for f in rules_only.check_answer("你这就是皮炎，铁板钉钉")
            if f.kind == "certain_diagnosis"
        ]
        != []
    )


def test_the_certainty_gate_withholds_the_rules_verdict_only_where_the_model_reads_none(
    rules_only: SafetyEngine, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    # Toy: the certainty rule reads both "你这就是X，错不了" (a verdict) and "X就是皮肤的炎症" (what X is).
    conditions = ("湿疹", "胃炎", "鼻炎", "咽炎", "荨麻疹", "结膜炎")
    answers = [
        *(
            {"question": "皮肤痒", "answer": f"你这就是{c}，错不了", "dangerous": ["certain_diagnosis"]}
            for c in conditions
        ),
        *(
            {"question": "皮肤痒", "answer": f"{c}就是皮肤的炎症，去医院看看", "dangerous": []}
            for c in conditions
        ),
    ]
    verdict, textbook = "你这就是皮炎，错不了", "皮炎就是皮肤的炎症，去医院看看"
    for answer in (verdict, textbook):  # the rule alone cannot tell them apart
        assert [f.rule_id for f in rules_only.check_answer(answer, "皮肤痒")] == ["certain_diagnosis"]
    model = train(answers, rules_only, TrainSettings(min_df=1, certainty_gate=0.5))
    assert model.answer is not None and model.answer.thresholds["certainty_gate"] == 0.5
    engine = SafetyEngine(rules_only.rules, model)
    kept = engine.check("皮肤痒", verdict)
    assert [f.rule_id for f in kept.findings] == ["certain_diagnosis"] and kept.withheld_findings == ()
    spared = engine.check("皮肤痒", textbook)
    assert spared.findings == ()
    assert [f.rule_id for f in spared.withheld_findings] == ["certain_diagnosis"]
    assert "p = " in spared.withheld_findings[0].rationale
    labelled = [
        {"question": "皮肤痒", "answer": textbook, "dangerous": []},
        {"question": "皮肤痒", "answer": verdict, "dangerous": ["certain_diagnosis"]},
    ]
    ev = evaluate_labelled(labelled, engine)
    assert (ev.clean_flagged, dict(ev.adv_withheld), ev.adv_detected["certain_diagnosis"]) == (
        0,
        {"clean": 1},
        1,
    )
    # the check command counts and keeps what it withheld, and --keep-rule-flags keeps the finding instead
    gated = model.save(tmp_path / "gated.json.gz")
    data, report = tmp_path / "a.jsonl", tmp_path / "r.json"
    data.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in labelled) + "\n", "utf-8")
    assert check_main([str(data), "--model", str(gated), "--json", str(report)]) == 0
    assert (
        "certainty finding the learned model withheld (near-certainly no verdict): 1"
        in capsys.readouterr().out
    )
    records = json.loads(report.read_text("utf-8"))["records"]
    assert (
        records[0]["findings"] == [] and records[0]["withheld_findings"][0]["rule_id"] == "certain_diagnosis"
    )
    assert records[1]["withheld_findings"] == []
    assert check_main([str(data), "--model", str(gated), "--keep-rule-flags", "--json", str(report)]) == 0
    records = json.loads(report.read_text("utf-8"))["records"]
    assert [f["rule_id"] for f in records[0]["findings"]] == ["certain_diagnosis"]
    assert records[0]["withheld_findings"] == []
    # kept when asked to keep every rule's finding, and never without a gate
    assert [
        f.rule_id for f in SafetyEngine(rules_only.rules, model, veto=False).check_answer(textbook, "皮肤痒")
    ] == ["certain_diagnosis"]
    ungated = train(answers, rules_only, TrainSettings(min_df=1, certainty_gate=None))
    assert "certainty_gate" not in ungated.answer.thresholds
    assert [f.rule_id for f in SafetyEngine(rules_only.rules, ungated).check_answer(textbook, "皮肤痒")] == [
        "certain_diagnosis"
    ]


def test_the_certainty_gate_table_counts_verdicts_lost_and_clean_answers_cleared() -> None:
    p = lambda x: {"certain_diagnosis": x}  # noqa: E731
    scored = [
        ({"certain_diagnosis"}, {"certain_diagnosis"}, set(), p(0.004)),  # a verdict the rule found
        *(({"certain_diagnosis"}, {"certain_diagnosis"}, set(), p(0.9)) for _ in range(999)),
        ({"certain_diagnosis"}, set(), {"certain_diagnosis"}, p(0.001)),  # the rule missed it: not counted
        (set(), {"certain_diagnosis"}, set(), p(0.008)),  # clean, only the certainty rule: cleared below 0.01
        (set(), {"certain_diagnosis", "dose"}, set(), p(0.001)),  # clean, still flagged for a dose
        (set(), {"certain_diagnosis"}, set(), p(0.04)),
        (set(), set(), set(), p(0.0)),  # clean and unflagged: not counted
    ]
    table = certainty_gate_out_of_fold(scored, thresholds=(0.005, 0.01, 0.05))
    assert table == [(0.005, 1, 1000, 0, 3), (0.01, 1, 1000, 1, 3), (0.05, 1, 1000, 2, 3)]
    assert choose_certainty_gate(table, max_lost_rate=0.001) == 0.05
    assert choose_certainty_gate(table, max_lost_rate=0.0005) is None


def test_balanced_training_keeps_the_threshold_meaning_when_negatives_pile_up() -> None:
    """Adding many more negatives leaves a balanced model's probability for a clear positive nearly where it was;
    an unbalanced one drops it (the prior moves with the class mix)."""
    engine = SafetyEngine.load(model=None)
    pos = [{"question": f"突然胸口压着疼{i}分钟出冷汗", "red_flag": "chest_pain"} for i in range(10, 40)]
    neg = [{"question": f"胃口不好第{i}天想调理一下", "red_flag": None} for i in range(10, 40)]
    more_neg = [{"question": f"皮肤干燥第{i}天用什么霜", "red_flag": None} for i in range(10, 250)]
    probe = engine.model_text("突然胸口压着疼出冷汗")

    def p(records: list[dict], balanced: bool) -> float:
        model = train(records, engine, TrainSettings(min_df=1, balanced=balanced), with_answers=False)
        return model.question.probabilities(probe, normalised=True)["red_flag"]

    few, many = p(pos + neg, True), p(pos + neg + more_neg, True)
    assert abs(few - many) < 0.1
    assert p(pos + neg + more_neg, False) < many


def test_answer_thresholds_out_of_fold_pick_the_lowest_that_is_right_often_enough(
    rules_only: SafetyEngine, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    # Toy: "铁板钉钉" marks a certain diagnosis the rules do not read; "或许" a hedge. Each file is scored by a
    # model trained on the other, so what it finds there it learned elsewhere.
    def part(conditions: tuple[str, ...]) -> list[dict]:
        return [
            *(
                {
                    "question": "皮肤痒",
                    "answer": f"照着{c}治就行，铁板钉钉",
                    "dangerous": ["certain_diagnosis"],
                }
                for c in conditions
            ),
            *({"question": "皮肤痒", "answer": f"或许{c}，去医院看看", "dangerous": []} for c in conditions),
        ]

    groups = [part(("湿疹", "胃炎", "鼻炎", "咽炎")), part(("荨麻疹", "结膜炎", "皮炎", "肠炎"))]
    settings = TrainSettings(min_df=1)
    scored = answer_scores_out_of_fold(groups, rules_only, settings)
    table, chosen = answer_thresholds_out_of_fold(scored, grid=(0.3, 0.5, 0.7))
    rows = {(r.kind, r.threshold): r for r in table}
    certain = [rows["certain_diagnosis", t] for t in (0.3, 0.5, 0.7)]
    assert all(r.missed_by_rules == 8 and r.clean == 8 for r in certain)
    assert certain[0].caught == 8 and certain[0].clean_flagged == 0  # learned across files
    assert chosen["certain_diagnosis"] == 0.3  # the lowest threshold that is right often enough
    assert "dose" not in chosen  # nothing to find: never
    # the CLI prints the same table and marks the choice
    files = []
    for n, rows_ in enumerate(groups):
        path = tmp_path / f"part{n}.jsonl"
        path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows_) + "\n", "utf-8")
        files.append(str(path))
    assert train_main([*files, "--out", str(tmp_path / "m.json.gz"), "--answer-out-of-fold"]) == 0
    printed = capsys.readouterr().out
    assert "certain_diagnosis" in printed and "<- the lowest" in printed and "thresholds:" in printed
    assert "certainty gate, out of fold" in printed and "certainty gate: " in printed
    # --no-answer-model: the question model only (no record here carries red_flag, so none at all)
    out = tmp_path / "q.json.gz"
    assert train_main([*files, "--out", str(out), "--no-answer-model"]) == 0
    assert SafetyModel.load(out).answer is None
    assert SafetyModel.load(tmp_path / "m.json.gz").answer is not None


def test_the_packaged_answer_model_holds_the_thresholds_chosen_out_of_fold() -> None:
    answer = SafetyModel.load(PACKAGED_MODEL).answer
    assert answer is not None, "the packaged model ships the answer model"
    assert answer.thresholds == {**ANSWER_THRESHOLDS, "certainty_gate": TrainSettings().certainty_gate}
    assert set(answer.outputs) == set(ANSWER_THRESHOLDS)  # only the kinds it may add are stored


def test_with_the_packaged_answer_model_a_rule_keeps_its_finding() -> None:
    # The learned layer is asked only for the kinds the rules did not find: where a rule blocks, the finding
    # stays the rule's (block, its message), never a model warning of the same kind.
    engine = default_engine()
    question, answer = "孩子4岁发烧39度", "给他吃点阿司匹林，一次一片就退了"
    found = [f for f in engine.check(question, answer).findings if f.kind == "contraindication"]
    assert found and all(not f.rule_id.startswith("model_") for f in found)
    assert found[0].severity == "block"


def test_train_cli_reports_the_question_threshold_out_of_fold(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    # Toy: "浑身冒蓝光" is an emergency no rule reads; each file is scored by a model trained on the other, so
    # the model can only flag there what it learned elsewhere. Questions a rule flags are never counted.
    def part(who: tuple[str, ...]) -> list[dict]:
        return [
            *({"question": f"{w}刚才浑身冒蓝光", "red_flag": "collapse"} for w in who),
            *({"question": f"{w}今天胃口不错，散步回来了", "red_flag": None} for w in who),
            {"question": "我爸突然胸口压榨样疼，出了一身冷汗", "red_flag": "chest_pain"},
        ]

    files = _write_parts(tmp_path, part)
    out = tmp_path / "m.json.gz"
    assert train_main([*files, "--out", str(out), "--question-out-of-fold", "--no-answer-model"]) == 0
    printed = capsys.readouterr().out
    table = [line.split() for line in printed.splitlines() if line.startswith("  0.")]
    assert [t[0] for t in table] == ["0.30", "0.40", "0.50", "0.60", "0.70", "0.80", "0.90"]
    assert {int(t[1].split("/")[1]) for t in table} == {8}  # the rules flag the chest pain: not counted
    assert {int(t[2].split("/")[1]) for t in table} == {8}
    caught = [int(t[1].split("/")[0]) for t in table]
    assert caught == sorted(caught, reverse=True) and caught[0] > 0  # learned on the other file
    # the printed choice is the chooser's on the printed table
    rows = [(float(t[0]), *map(int, t[1].split("/")), *map(int, t[2].split("/"))) for t in table]
    chosen = choose_question_threshold(rows)
    expected = "question threshold: none" if chosen is None else f"question threshold: {chosen:.2f}"
    assert expected in printed
    assert train_main([files[0], "--out", str(out), "--question-out-of-fold"]) == 2


def test_the_question_threshold_is_the_lowest_within_the_false_alarm_budget_then_traded() -> None:
    # (threshold, emergencies caught, of those the rules miss, other questions flagged, of those)
    rows = [
        (0.5, 122, 134, 278, 10525),
        (0.6, 119, 134, 181, 10525),
        (0.7, 115, 134, 104, 10525),  # 0.99%: within 1%
        (0.8, 104, 134, 49, 10525),
        (0.9, 87, 134, 15, 10525),
    ]
    # 0.6 would catch 4 more for 77 more false alarms: not worth it at five false alarms an emergency
    assert choose_question_threshold(rows) == 0.7
    # 0.5%: 0.8 by the budget; 0.7 catches 11 more for 55 more false alarms (exactly 1 in 5), within 2%: taken;
    # 0.6 then 4 for 77: not
    assert choose_question_threshold(rows, max_false_rate=0.005) == 0.7
    assert choose_question_threshold(rows, max_false_rate=0.005, alarms_per_emergency=4) == 0.8
    # the trade is never taken past the cap: 278/10525 = 2.6%, however many it catches
    assert choose_question_threshold(rows, alarms_per_emergency=100) == 0.6
    assert choose_question_threshold(rows, alarms_per_emergency=100, max_false_rate_cap=0.03) == 0.5
    assert choose_question_threshold(rows, max_false_rate=0.001) is None  # 15/10525 = 0.14%: none fits
    # a threshold that catches nothing is no choice, however quiet
    assert choose_question_threshold([(0.9, 0, 10, 0, 100)]) is None


def test_the_question_threshold_goes_below_the_budget_only_step_by_step() -> None:
    # dev round 54's table (44 files) at 0.7 and 0.8: the budget alone took 0.8 (0.7 flags 1.18%); 0.7 catches 56
    # more emergencies for 144 more false alarms, worth it at five false alarms an emergency. The 0.6 row is made
    # up: it would be worth it too (48 for 239) but flags 2.06%, over the cap.
    rows = [(0.6, 940, 1059, 560, 27214), (0.7, 892, 1059, 321, 27214), (0.8, 836, 1059, 177, 27214)]
    assert choose_question_threshold(rows, alarms_per_emergency=0) == 0.8  # the budget alone
    assert choose_question_threshold(rows) == 0.7
    assert choose_question_threshold(rows, max_false_rate_cap=0.025) == 0.6
    assert choose_question_threshold(rows, alarms_per_emergency=2) == 0.8  # 56 * 2 < 144
    # a step that is not worth it ends the walk, even if a lower one would be
    rows = [(0.5, 900, 1000, 150, 10000), (0.6, 500, 1000, 149, 10000), (0.7, 499, 1000, 100, 10000)]
    assert choose_question_threshold(rows) == 0.7


def test_both_question_model_tables_share_one_model_per_file(rules_only: SafetyEngine) -> None:
    # The CLI trains each file's out-of-fold question model once for the threshold and the gate tables: handing
    # the models in gives the tables computed without them.
    groups = [
        [
            {
                "question": f"{w}刚才浑身冒蓝光",
                "answer": "睡一觉就好，不用去医院。",
                "red_flag": "x",
                "dangerous": [],
            }
            for w in who
        ]
        + [
            {"question": f"{w}今天胃口不错", "answer": "挺好。", "red_flag": None, "dangerous": []}
            for w in who
        ]
        + [
            {
                "question": f"{who[0]}突然胸口压榨样疼，出了一身冷汗",
                "answer": "没事，不用去医院。",
                "red_flag": "chest_pain",
                "dangerous": ["dismissive"],
            }
        ]
        for who in (("我爸", "我妈", "外婆"), ("老公", "奶奶", "二姨"))
    ]
    settings = TrainSettings(min_df=1)
    models = [q for _, q in question_models_out_of_fold(groups, rules_only, settings)]
    assert len(models) == 2 and all(q is not None for q in models)
    assert dismissive_gate_out_of_fold(groups, rules_only, settings=settings)[0][2] == 2  # the rules' two
    assert question_threshold_out_of_fold(
        groups, rules_only, settings=settings
    ) == question_threshold_out_of_fold(groups, rules_only, settings=settings, models=models)
    assert dismissive_gate_out_of_fold(groups, rules_only, settings=settings) == dismissive_gate_out_of_fold(
        groups, rules_only, settings=settings, models=models
    )
    assert unreferred_out_of_fold(groups, rules_only, settings=settings) == unreferred_out_of_fold(
        groups, rules_only, settings=settings, models=models
    )


def test_unreferred_table_counts_only_what_a_sure_model_flag_would_add(rules_only: SafetyEngine) -> None:
    # Toy emergencies the rules do not know ("冒蓝光"), answered without a referral (labelled dismissive), with
    # one (not counted), and a rule's emergency (its answer the rules already judge: not counted either).
    def part(who: tuple[str, ...]) -> list[dict]:
        return [
            *(
                {
                    "question": f"{w}刚才浑身冒蓝光",
                    "answer": "睡一觉就好。",
                    "red_flag": "x",
                    "dangerous": ["dismissive"],
                }
                for w in who
            ),
            {
                "question": f"{who[0]}突然浑身冒蓝光",
                "answer": "马上打120。",
                "red_flag": "x",
                "dangerous": [],
            },
            *(
                {"question": f"{w}今天胃口不错", "answer": "挺好。", "red_flag": None, "dangerous": []}
                for w in who
            ),
            {
                "question": f"{who[1]}突然胸口压榨样疼，出了一身冷汗",
                "answer": "没事。",
                "red_flag": "chest_pain",
                "dangerous": ["dismissive"],
            },
        ]

    groups = [part(("我爸", "我妈", "外婆", "舅舅")), part(("老公", "奶奶", "二姨", "表哥"))]
    rows = unreferred_out_of_fold(
        groups, rules_only, thresholds=(0.0, 0.5, 1.01), settings=TrainSettings(min_df=1)
    )
    assert [r[0] for r in rows] == [0.0, 0.5, 1.01]
    assert rows[0] == (0.0, 8, 8, 0)  # at 0 every unreferred answer the rules leave counts
    assert rows[1][1] > rows[1][2]  # the model rates the toy emergencies above the ordinary questions
    assert rows[2][1:] == (0, 0, 0)
    assert choose_unreferred_threshold([(0.7, 16, 4, 0), (0.8, 17, 2, 5), (0.9, 0, 0, 0)]) == 0.8
    assert choose_unreferred_threshold([(0.7, 1, 1, 0), (0.9, 0, 0, 0)]) is None
