"""``prepare`` end to end on small planted data: report, dropped log, leakage, contamination, bad input."""

import json
import random

import pytest

from medtune.config import ConfigError, load_config
from medtune.data import prepare as prepare_module
from medtune.data.dedup import jaccard, shingles
from medtune.data.prepare import prepare
from medtune.data.report import explain_record
from medtune.data.schema import DataError
from tests.conftest import write_jsonl

SYMPTOMS = ["头疼", "咳嗽", "发烧", "胃疼", "腹泻", "失眠", "胸闷", "腰痛", "皮疹", "耳鸣", "鼻塞", "乏力"]
ADVICE = ["多喝温水", "注意休息", "清淡饮食", "按时复查", "避免熬夜", "适当运动", "戒烟限酒", "监测血压"]


def _qa(rng, i):
    s1, s2 = rng.sample(SYMPTOMS, 2)
    q = f"患者{i}号，{rng.randint(18, 80)}岁，{s1}{rng.randint(2, 30)}天，伴{s2}，编号{i * 7919 % 100003}，怎么办？"
    a = "，".join(rng.sample(ADVICE, 4)) + f"，第{i}例建议观察{rng.randint(3, 14)}天，必要时就医。"
    return q, a


def _config(tmp_path, raw, *overrides):
    return load_config(None, [f"data.raw_file={raw}", f"output_root={tmp_path}", "run_name=t", *overrides])


def _jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture
def planted(tmp_path):
    """60 distinct records, 5 exact copies (of o0-o4), 5 near copies (of o10-o14), a phone number in o30,
    one question too short."""
    rng = random.Random(0)
    rows = [dict(zip(("question", "answer"), _qa(rng, i)), id=f"o{i}") for i in range(60)]
    rows[30]["question"] += "我的电话13812345678"
    extra = [
        {"id": f"e{i}", "question": rows[i]["question"], "answer": rows[i]["answer"] + " "} for i in range(5)
    ]
    extra += [
        {
            "id": f"n{i}",
            "question": rows[10 + i]["question"],
            "answer": rows[10 + i]["answer"].replace("必要时", "必要的时候"),
        }
        for i in range(5)
    ]
    extra.append({"id": "short", "question": "头疼", "answer": "多喝水多休息注意观察"})
    return write_jsonl(tmp_path / "raw.jsonl", rows + extra)


def test_report_explains_every_decision(tmp_path, planted):
    cfg = _config(tmp_path, planted)
    result = prepare(cfg)
    out = cfg.data_dir
    assert {p.name for p in out.iterdir()} == {
        "train.jsonl", "val.jsonl", "stats.json", "data_report.json", "data_report.md", "lengths.png", "dropped.jsonl",
    }  # fmt: skip
    counts = result.stats["counts"]
    assert counts["read"] == 71 and counts["kept"] == 60
    assert counts["dropped_exact_duplicate"] == 5 and counts["dropped_near_duplicate"] == 5
    assert counts["dropped_question_too_short"] == 1
    dropped = {row["id"]: row for row in _jsonl(out / "dropped.jsonl")}
    assert len(dropped) == 11
    assert dropped["e2"]["rule"] == "exact_duplicate" and dropped["e2"]["kept"] == "o2"
    assert dropped["n1"]["rule"] == "near_duplicate" and dropped["n1"]["kept"] == "o11"
    assert dropped["n1"]["source"].endswith("raw.jsonl:67")
    report = json.loads((out / "data_report.json").read_text(encoding="utf-8"))
    rules = report["rules"]
    for prev, row in zip(rules, rules[1:]):  # what leaves one rule enters the next
        assert row["in"] == prev["out"], (prev, row)
    assert rules[0]["in"] == 71 and rules[-1]["out"] == 60
    assert report["pii"] == {"mobile": 1}
    assert report["near_duplicates"]["clusters"] == 5
    assert report["dropped_examples"]["near_duplicate"][0]["kept"].startswith("o1")
    assert sum(report["question_chars"]["histogram"].values()) == 60
    assert (out / "lengths.png").read_bytes()[:4] == b"\x89PNG"
    summary = (out / "data_report.md").read_text(encoding="utf-8")
    assert "| near_duplicate | 65 | 60 | 5 |" in summary
    assert any("<PHONE>" in r.question for r in result.train + result.val)
    # "Why did record X disappear?"
    assert "near_duplicate" in explain_record(cfg, "n1") and "o11" in explain_record(cfg, "n1")
    assert "too_short" in explain_record(cfg, f"{planted}:71")
    assert "train.jsonl" in explain_record(cfg, "o0") or "val.jsonl" in explain_record(cfg, "o0")
    assert "no record" in explain_record(cfg, "nope")


def _leaky_rows(rng):
    """30 groups of 4 records whose questions are near-duplicates of each other (answers differ)."""
    rows = []
    for g in range(30):
        q, _ = _qa(rng, g)
        for k in range(4):
            _, a = _qa(rng, 1000 + 4 * g + k)
            rows.append({"id": f"g{g}-{k}", "question": q + "谢谢" * (k % 2), "answer": a})
    return rows


def _leaks(result, threshold):
    train_sh = [shingles(r.question, 3) for r in result.train]
    return sum(any(jaccard(shingles(v.question, 3), t) >= threshold for t in train_sh) for v in result.val)


def test_no_validation_question_is_a_near_duplicate_of_a_training_question(tmp_path):
    raw = write_jsonl(tmp_path / "leaky.jsonl", _leaky_rows(random.Random(1)))
    result = prepare(_config(tmp_path, raw, "data.val_ratio=0.2"))
    assert len(result.val) > 0 and _leaks(result, 0.8) == 0
    report = result.stats["counts"]
    assert report["kept"] == 120
    # Without the grouping the same data leaks: the check above can fail.
    naive = prepare(
        _config(tmp_path, raw, "data.val_ratio=0.2", "data.leakage_threshold=null", "run_name=naive")
    )
    assert _leaks(naive, 0.8) > 0


def test_evaluation_set_contamination_is_dropped(tmp_path, planted):
    question = _jsonl(planted)[20]["question"]
    leaked = question.replace("怎么办", "怎么办呢")
    assert jaccard(shingles(leaked, 3), shingles(question, 3)) >= 0.8
    exam = write_jsonl(
        tmp_path / "exam.jsonl",
        [
            {"question": leaked, "options": {"A": "x"}, "answer": "A"},
            {"question": "下列哪项不是糖尿病的典型症状", "options": {"A": "多饮"}, "answer": "A"},
        ],
    )
    cfg = _config(tmp_path, planted, f"data.eval_sets=[{exam}]")
    result = prepare(cfg)
    assert result.stats["counts"]["dropped_eval_contamination"] == 1
    (row,) = [r for r in _jsonl(cfg.data_dir / "dropped.jsonl") if r["rule"] == "eval_contamination"]
    assert row["id"] == "o20" and f"{exam}:1" in row["detail"]


def test_sources_of_several_kinds_keep_their_provenance(tmp_path):
    jsonl = write_jsonl(
        tmp_path / "a.jsonl", [{"id": "x", "question": "头疼三天了怎么办", "answer": "多喝水多休息注意观察"}]
    )
    csv = tmp_path / "b.csv"
    csv.write_bytes(
        "id,title,ask,answer\nx,胃疼,胃疼一周了吃什么药,清淡饮食按时吃饭少吃辣\n".encode("gb18030")
    )
    cfg = _config(tmp_path, jsonl, f"data.extra_files=[{csv}]")
    result = prepare(cfg)
    recs = sorted(result.train + result.val, key=lambda r: r.source)
    assert [r.source for r in recs] == [f"{jsonl}:1", f"{csv}:2"]
    assert recs[1].id == f"x@{csv}:2" and recs[1].question == "胃疼\n胃疼一周了吃什么药"
    assert result.stats["counts"]["renamed_duplicate_ids"] == 1


def test_quarantine_collects_bad_records_and_bad_files(tmp_path, planted):
    bad_csv = tmp_path / "bad.csv"
    good = "question,answer\n咳嗽两天了怎么办,多喝水多休息\n头晕一周了,注意测量血压\n"
    bad_csv.write_bytes(good.encode() + "胃疼一周,清淡饮食\n".encode("gbk"))
    (tmp_path / "empty.jsonl").write_text("")
    extra = f"data.extra_files=[{bad_csv},{tmp_path / 'empty.jsonl'}]"
    with pytest.raises(DataError, match=r"bad\.csv:4: not valid utf-8"):
        prepare(_config(tmp_path, planted, extra))
    cfg = _config(tmp_path, planted, extra, "data.on_error=skip")
    result = prepare(cfg)
    assert result.stats["counts"]["quarantined"] == 2
    rows = _jsonl(cfg.data_dir / "quarantine.jsonl")
    assert [r["source"] for r in rows] == [f"{bad_csv}:4", str(tmp_path / "empty.jsonl")]
    assert "reads as gb18030" in rows[0]["error"] and rows[0]["raw"] == "胃疼一周,清淡饮食"
    assert "could not be read" in explain_record(cfg, f"{bad_csv}:4")


def test_a_failed_run_leaves_the_previous_outputs_untouched(tmp_path, planted, monkeypatch):
    cfg = _config(tmp_path, planted)
    prepare(cfg)
    before = {p.name: p.read_bytes() for p in cfg.data_dir.iterdir()}

    def broken(*args):
        raise OSError("disk full")

    monkeypatch.setattr(prepare_module, "render_summary", broken)
    with pytest.raises(OSError, match="disk full"):
        prepare(_config(tmp_path, planted, "data.seed=7"))
    assert {p.name: p.read_bytes() for p in cfg.data_dir.iterdir()} == before  # no temp files, nothing new


def test_max_records_drops_are_logged(tmp_path, planted):
    cfg = _config(tmp_path, planted, "data.max_records=50")
    result = prepare(cfg)
    assert len(result.train) + len(result.val) == 50
    assert sum(r["rule"] == "max_records" for r in _jsonl(cfg.data_dir / "dropped.jsonl")) == 10


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.boilerplate_patterns=['(unclosed']", r"boilerplate_patterns\[0\]: invalid regex"),
        ("data.question_fields=[title]", "set together"),
        ("data.pii_kinds=[phone,passport]", "unknown.*passport"),
        ("data.near_dup_threshold=1.5", "near_dup_threshold"),
        ("data.encoding=klingon", "unknown encoding"),
        ("data.max_answer_chars=5", "below data.min_answer_chars"),
    ],
)
def test_bad_data_settings_fail_at_load(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_safety_screen_counts_and_optionally_excludes_dangerous_answers(tmp_path):
    import json as _json

    from medtune.config import load_config as _load
    from medtune.data.prepare import prepare as _prepare

    rows = [
        {
            "question": f"孩子{i}岁发烧39度怎么办啊",
            "answer": "可以给孩子吃阿司匹林退烧，多喝水，注意观察体温变化。",
        }
        for i in (2, 3)
    ]
    rows += [
        {
            "question": f"大人头疼第{i}天了怎么办",
            "answer": f"建议多休息，保证睡眠，第{i}天仍不缓解请到神经内科就诊。",
        }
        for i in range(8)
    ]
    raw = tmp_path / "raw.jsonl"
    raw.write_text("".join(_json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    base = [f"data.raw_file={raw}", f"output_root={tmp_path}", "data.dedup_near=false"]
    counted = _prepare(_load(None, [*base, "run_name=count"]))
    assert len(counted.train) + len(counted.val) == 10
    report = _json.loads((tmp_path / "count" / "data" / "data_report.json").read_text(encoding="utf-8"))
    table = {r["rule"]: r for r in report["rules"]}
    assert table["safety_screen"]["counts"]["flagged_blocking"] == 2
    assert table["safety_screen"]["dropped"] == 0
    excluded = _prepare(_load(None, [*base, "run_name=exclude", "data.safety_screen=exclude"]))
    assert len(excluded.train) + len(excluded.val) == 8
    assert excluded.stats["counts"]["dropped_safety_screen"] == 2


def test_cleaning_in_worker_processes_gives_the_serial_outputs(tmp_path, planted, monkeypatch):
    """Chunks of 7 records over 2 workers (several chunks in flight): every output file is the serial one."""
    monkeypatch.setattr(prepare_module._CleaningPool, "CHUNK", 7)
    outs = {}
    for workers in (1, 2):
        cfg = _config(tmp_path / f"w{workers}", planted, f"data.workers={workers}", "data.report_examples=2")
        prepare(cfg)
        outs[workers] = cfg.data_dir
    for name in ("train.jsonl", "val.jsonl", "dropped.jsonl", "stats.json"):
        assert (outs[1] / name).read_bytes() == (outs[2] / name).read_bytes(), name
    serial, parallel = (
        json.loads((outs[w] / "data_report.json").read_text(encoding="utf-8")) for w in (1, 2)
    )
    for key in ("rules", "counts", "dropped_examples"):
        if key in serial:
            assert serial[key] == parallel[key], key
    assert prepare_module._WORKER_PIPELINE is None  # nothing left behind for the next run
