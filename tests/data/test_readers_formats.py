"""Readers on small files the tests write: CSV/TSV in several encodings, streamed JSON, tables, sources."""

import json

import pytest

from medtune.data import readers
from medtune.data.encoding import detect_encoding
from medtune.data.readers import ReadOptions, expand_sources, iter_records
from medtune.data.schema import DataError, QARecord
from tests.conftest import write_jsonl

TOYHOM = ReadOptions(
    question_fields=("title", "ask"), answer_fields=("answer",), department_field="department"
)


def _records(path, options=None):
    return list(iter_records(path, options=options))


def test_gb18030_csv_with_a_column_mapping(tmp_path):
    path = tmp_path / "neike.csv"
    text = (
        "department,title,ask,answer\n"
        '心血管科,高血压能吃党参吗？,"我有高血压，女婿拿了党参,\n泡水喝可以吗？",可以少量服用，注意监测血压。\n'
        "内分泌科,糖尿病会遗传吗？,我妈是糖尿病，我会得吗？,有一定遗传倾向，注意饮食和运动。\n"
    )
    path.write_bytes(text.encode("gb18030"))
    assert detect_encoding(path) == "gb18030"
    first, second = _records(path, TOYHOM)
    assert first.question == "高血压能吃党参吗？\n我有高血压，女婿拿了党参,\n泡水喝可以吗？"
    assert first.answer == "可以少量服用，注意监测血压。"
    assert first.department == "心血管科"
    # Provenance is the line the row starts on; the quoted field spans two lines.
    assert first.source == f"{path}:2" and second.source == f"{path}:4"


def test_utf8_bom_csv_and_tsv_are_read(tmp_path):
    bom = tmp_path / "excel.csv"
    bom.write_bytes("\ufeffquestion,answer\n头疼三天,多休息多喝水\n".encode())
    assert detect_encoding(bom) == "utf-8-sig"
    (rec,) = _records(bom)
    assert (rec.question, rec.answer) == ("头疼三天", "多休息多喝水")
    tsv = tmp_path / "dump.tsv"
    tsv.write_text("question\tanswer\n咳嗽, 有痰\t多喝水\n", encoding="utf-8")
    (rec,) = _records(tsv)
    assert (rec.question, rec.answer) == ("咳嗽, 有痰", "多喝水")


def test_utf16_is_refused_with_advice(tmp_path):
    path = tmp_path / "u16.csv"
    path.write_bytes("question,answer\n头疼,休息\n".encode("utf-16"))
    with pytest.raises(DataError, match="UTF-16.*convert"):
        _records(path)


def test_a_line_in_another_encoding_is_reported_with_its_line(tmp_path):
    path = tmp_path / "mixed.csv"
    path.write_bytes(
        "question,answer\n头疼三天,多休息\n".encode()
        + "胃疼一周,清淡饮食\n".encode("gbk")
        + "咳嗽两天,多喝水\n".encode()
    )
    items = _records(path)
    assert [type(i) for i in items] == [QARecord, DataError, QARecord]
    assert f"{path}:3" in str(items[1]) and "not valid utf-8" in str(items[1])
    assert items[2].source == f"{path}:4"


def test_missing_mapped_column_fails_for_the_whole_file(tmp_path):
    path = tmp_path / "cols.csv"
    path.write_text("department,title,answer\n内科,头疼,休息\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"cols\.csv:1: missing column\(s\) \['ask'\]") as exc:
        _records(path, TOYHOM)
    assert "department" in str(exc.value)


def test_unknown_columns_without_a_mapping_fail_once(tmp_path):
    path = tmp_path / "odd.csv"
    path.write_text("foo,bar\n1,2\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"odd\.csv:1: cannot tell the record format.*question_fields"):
        _records(path)


def test_row_with_a_wrong_number_of_fields_names_its_line(tmp_path):
    path = tmp_path / "ragged.csv"
    path.write_text("question,answer\n头疼,休息\n胃疼,清淡,多余\n咳嗽,喝水\n", encoding="utf-8")
    items = _records(path)
    assert isinstance(items[1], DataError) and "ragged.csv:3: 3 fields but the header has 2" in str(items[1])
    assert [i.question for i in items if isinstance(i, QARecord)] == ["头疼", "咳嗽"]


def test_title_and_ask_are_joined_by_default(tmp_path):
    path = tmp_path / "qa.csv"
    path.write_text("title,ask,answer\n头疼怎么办,头疼两天了,多休息\n", encoding="utf-8")
    (rec,) = _records(path)
    assert rec.question == "头疼怎么办\n头疼两天了"


def test_gb18030_jsonl_is_read(tmp_path):
    path = tmp_path / "gbk.jsonl"
    path.write_bytes(
        (json.dumps({"question": "头疼", "answer": "休息"}, ensure_ascii=False) + "\n").encode("gb18030")
    )
    (rec,) = _records(path)
    assert rec.answer == "休息"


def test_json_array_is_streamed_across_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "_CHUNK_CHARS", 7)  # every record crosses several chunk borders
    rows = [
        {"question": f'问题{i}，含[括号],逗号和"引号"', "answer": f"回答{i}", "n": 10**i} for i in range(5)
    ]
    path = tmp_path / "arr.json"
    path.write_text(json.dumps(rows, ensure_ascii=False, indent=1), encoding="utf-8")
    recs = _records(path)
    assert [r.question for r in recs] == [r["question"] for r in rows]
    assert recs[0].source == f"{path}:2:[0]" and recs[4].source.endswith(":[4]")
    wrapped = tmp_path / "wrapped.json"
    wrapped.write_text(
        json.dumps({"info": {"v": [1, 2]}, "data": rows[:2]}, ensure_ascii=False), encoding="utf-8"
    )
    assert [r.answer for r in _records(wrapped)] == ["回答0", "回答1"]


def test_malformed_json_array_element_names_its_line(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('[{"question": "头疼", "answer": "休息"},\n {"question": "胃疼", "answer": }]\n')
    first, err = _records(path)
    assert first.answer == "休息"
    assert isinstance(err, DataError) and "broken.json:2" in str(err) and "malformed JSON" in str(err)


def test_parquet_arrow_and_datasets_folder(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets import Dataset, DatasetDict

    table = pa.table(
        {"ask": ["头疼", "胃疼"], "answer": ["休息", "清淡饮食"], "department": ["神经内科", None]}
    )
    pq.write_table(table, tmp_path / "t.parquet")
    recs = _records(tmp_path / "t.parquet")
    assert [(r.question, r.department) for r in recs] == [("头疼", "神经内科"), ("胃疼", None)]
    assert recs[1].source == f"{tmp_path / 't.parquet'}:row 1"

    with pa.OSFile(str(tmp_path / "t.arrow"), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    assert [r.answer for r in _records(tmp_path / "t.arrow")] == ["休息", "清淡饮食"]

    ds = Dataset.from_dict({"instruction": ["咳嗽"], "input": [""], "output": ["多喝水"]})
    DatasetDict({"train": ds, "test": ds}).save_to_disk(str(tmp_path / "hf"))
    recs = _records(tmp_path / "hf")
    assert [r.source for r in recs] == [f"{tmp_path / 'hf'}/test:row 0", f"{tmp_path / 'hf'}/train:row 0"]
    assert [r.source for r in _records(tmp_path / "hf" / "train")] == [f"{tmp_path / 'hf' / 'train'}:row 0"]


def test_sources_expand_folders_and_globs_and_never_skip_a_typo(tmp_path):
    write_jsonl(tmp_path / "a" / "one.jsonl", [{"question": "q", "answer": "a"}])
    write_jsonl(tmp_path / "a" / "sub" / "two.jsonl", [{"question": "q", "answer": "a"}])
    (tmp_path / "a" / "notes.txt").write_text("x")
    assert expand_sources([str(tmp_path / "a")]) == [
        tmp_path / "a" / "one.jsonl",
        tmp_path / "a" / "sub" / "two.jsonl",
    ]
    assert expand_sources([str(tmp_path / "a" / "*.jsonl")]) == [tmp_path / "a" / "one.jsonl"]
    with pytest.raises(DataError, match="no file matches"):
        expand_sources([str(tmp_path / "a" / "*.csv")])
    with pytest.raises(DataError, match="not found"):
        expand_sources([str(tmp_path / "nope.jsonl")])


def test_empty_csv_and_unsupported_files_fail_clearly(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="empty"):
        _records(tmp_path / "empty.csv")
    (tmp_path / "x.xlsx").write_bytes(b"PK")
    with pytest.raises(DataError, match="unsupported file type"):
        _records(tmp_path / "x.xlsx")
