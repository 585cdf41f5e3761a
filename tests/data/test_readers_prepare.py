import json

import pytest

from medtune.config import load_config
from medtune.data.prepare import load_split, normalize_text, prepare, strip_boilerplate
from medtune.data.readers import iter_records
from medtune.data.schema import DataError
from tests.conftest import SAMPLE_THREE_PART, write_jsonl


def _records(path, fmt="auto"):
    return [r for r in iter_records(path, fmt)]


def test_alpaca_messages_and_qa_forms_are_read(tmp_path):
    path = write_jsonl(
        tmp_path / "mixed.jsonl",
        [
            {"instruction": "头疼怎么办", "input": "两天了", "output": "多休息"},
            {
                "messages": [
                    {"role": "system", "content": "x"},
                    {"role": "user", "content": "胃疼"},
                    {"role": "assistant", "content": "清淡饮食"},
                ]
            },
            {"conversations": [{"from": "human", "value": "咳嗽"}, {"from": "gpt", "value": "多喝水"}]},
            {"question": "发烧", "answer": "测体温"},
        ],
    )
    recs = _records(path)
    assert [(r.question, r.answer) for r in recs] == [
        ("头疼怎么办\n两天了", "多休息"),
        ("胃疼", "清淡饮食"),
        ("咳嗽", "多喝水"),
        ("发烧", "测体温"),
    ]
    assert recs[0].source.endswith("mixed.jsonl:1") and recs[3].source.endswith("mixed.jsonl:4")


def test_json_array_files_are_read(tmp_path):
    path = tmp_path / "data.json"
    path.write_text(json.dumps([{"question": "q1", "answer": "a1"}], ensure_ascii=False), encoding="utf-8")
    assert [r.answer for r in _records(path)] == ["a1"]


def test_malformed_line_is_reported_with_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"question": "q", "answer": "a"}\n{"question": "q2", "answer": \n', encoding="utf-8")
    items = _records(path)
    assert isinstance(items[1], DataError)
    assert "bad.jsonl:2" in str(items[1]) and "malformed JSON" in str(items[1])


def test_missing_field_names_the_field(tmp_path):
    path = write_jsonl(tmp_path / "f.jsonl", [{"instruction": "q", "output": None}])
    (item,) = _records(path, "alpaca")
    assert isinstance(item, DataError) and "f.jsonl:1" in str(item) and "'output'" in str(item)


def test_missing_and_empty_files_fail_clearly(tmp_path):
    with pytest.raises(DataError, match="not found"):
        _records(tmp_path / "nope.jsonl")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(DataError, match="empty"):
        _records(empty)


def test_boilerplate_and_whitespace_are_cleaned():
    assert strip_boilerplate("多喝水。希望我的回答对您有帮助。") == "多喝水。"
    assert normalize_text("  头疼\u3000\u3000两天 \r\n\n\n\n了 ") == "头疼 两天\n\n了"


def test_prepare_on_the_shipped_sample_splits_90_10(tmp_path):
    cfg = load_config(None, [f"data.raw_file={SAMPLE_THREE_PART}", f"output_root={tmp_path}", "run_name=t"])
    result = prepare(cfg)
    total = len(result.train) + len(result.val)
    assert total >= 300
    assert abs(len(result.val) / total - 0.1) < 0.01
    assert not {r.id for r in result.train} & {r.id for r in result.val}
    stats = json.loads((cfg.data_dir / "stats.json").read_text(encoding="utf-8"))
    assert stats["counts"]["train"] == len(result.train)
    assert len(stats["departments"]) >= 8
    assert [r.id for r in load_split(cfg, "val")] == [r.id for r in result.val]


def test_split_is_deterministic_and_seed_dependent(tmp_path):
    def val_ids(seed, name):
        cfg = load_config(
            None,
            [
                f"data.raw_file={SAMPLE_THREE_PART}",
                f"output_root={tmp_path}",
                f"run_name={name}",
                f"data.seed={seed}",
            ],
        )
        return [r.id for r in prepare(cfg).val]

    assert val_ids(1, "a") == val_ids(1, "b")
    assert val_ids(1, "a") != val_ids(2, "c")


def test_exact_duplicates_are_dropped_and_counted(tmp_path):
    rows = [{"question": "头疼两天", "answer": "多休息，多喝水，观察"}] * 3 + [
        {"question": "咳嗽一周了", "answer": "多喝水，注意休息观察"}
    ]
    raw = write_jsonl(tmp_path / "dup.jsonl", rows)
    cfg = load_config(None, [f"data.raw_file={raw}", f"output_root={tmp_path}", "run_name=d"])
    result = prepare(cfg)
    assert result.stats["counts"]["dropped_exact_duplicate"] == 2
    assert len(result.train) + len(result.val) == 2


def test_on_error_fail_stops_without_writing_outputs(tmp_path):
    raw = tmp_path / "bad.jsonl"
    raw.write_text('{"question": "头疼两天", "answer": "多休息多喝水"}\nnot json\n', encoding="utf-8")
    cfg = load_config(None, [f"data.raw_file={raw}", f"output_root={tmp_path}", "run_name=f"])
    with pytest.raises(DataError, match="bad.jsonl:2"):
        prepare(cfg)
    assert not cfg.data_dir.exists() or not any(cfg.data_dir.iterdir())


def test_on_error_skip_quarantines_bad_records(tmp_path):
    raw = tmp_path / "bad.jsonl"
    good = [
        json.dumps({"question": f"问题{i}很长", "answer": f"回答{i}，多喝水多休息"}, ensure_ascii=False)
        for i in range(5)
    ]
    raw.write_text("\n".join(good + ["not json"]) + "\n", encoding="utf-8")
    cfg = load_config(
        None, [f"data.raw_file={raw}", f"output_root={tmp_path}", "run_name=s", "data.on_error=skip"]
    )
    result = prepare(cfg)
    assert result.stats["counts"]["quarantined"] == 1
    quarantine = (cfg.data_dir / "quarantine.jsonl").read_text(encoding="utf-8")
    assert "bad.jsonl:6" in quarantine
