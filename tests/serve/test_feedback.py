"""Web UI feedback: the store (scrubbed, any SQLAlchemy URL), the like/comment handlers, the export."""

import json
from types import SimpleNamespace

import pytest

from medtune.serve.engine import GenerationSettings
from medtune.serve.feedback import Feedback, FeedbackStore, export_preferences, unpaired_path
from tests.conftest import THREE_PART_ANSWER


@pytest.fixture
def store(tmp_path):
    return FeedbackStore(f"sqlite:///{tmp_path / 'fb' / 'feedback.db'}")


def test_personal_data_is_scrubbed_before_it_is_stored(store):
    row = store.add(
        Feedback("我叫张伟，电话13812345678，头疼怎么办", "请拨打13812345678", -1, "m", {"t": 0.7})
    )
    store.comment(row, "联系我 test@example.com")
    [item] = store.all()
    assert "13812345678" not in item.question + item.answer and "<PHONE>" in item.question
    assert "<EMAIL>" in item.comment and "example.com" not in item.comment
    assert item.rating == -1 and item.settings == {"t": 0.7} and item.created_at is not None


def test_export_pairs_liked_with_disliked_and_keeps_single_ratings(store, tmp_path):
    store.add(Feedback("头疼", "好回答", 1, "m", {}))
    store.add(Feedback("头疼", "坏回答", -1, "m", {}))
    store.add(Feedback("头疼", "坏回答", -1, "m", {}))  # rated twice: one answer
    store.add(Feedback("咳嗽", "只有赞", 1, "m", {}))
    store.add(Feedback("胃疼", "只有踩", -1, "m", {}))
    out = tmp_path / "prefs.jsonl"
    assert export_preferences(store, out) == {"pairs": 1, "unpaired": 2}
    assert [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()] == [
        {"prompt": "头疼", "chosen": "好回答", "rejected": "坏回答"}
    ]
    single = [json.loads(x) for x in unpaired_path(out).read_text(encoding="utf-8").splitlines()]
    assert {(r["prompt"], r["label"]) for r in single} == {("咳嗽", True), ("胃疼", False)}


def test_pairs_are_what_trl_dpo_takes():
    trl = pytest.importorskip("trl")
    from datasets import Dataset

    rows = [{"prompt": "头疼", "chosen": "好", "rejected": "坏"}]
    ds = Dataset.from_list(rows)
    from trl.data_utils import is_conversational

    assert not is_conversational(ds[0]) and {"prompt", "chosen", "rejected"} <= set(ds.column_names)
    assert trl.__version__


def test_like_and_comment_handlers_store_the_raw_answer(engine, store):
    from medtune.serve.webui import RawAnswers, chat_handler, feedback_handler, render_sections

    settings = GenerationSettings(max_new_tokens=4)
    answers = RawAnswers()
    shown = list(chat_handler(engine, settings, answers)("头疼怎么办", [], True))[-1]
    answers.put(render_sections(THREE_PART_ANSWER), THREE_PART_ANSWER)
    on_like, on_comment = feedback_handler(engine, store, settings, answers)
    history = [
        {"role": "user", "content": "头疼怎么办"},
        {"role": "assistant", "content": [{"type": "text", "text": shown}]},
        {"role": "user", "content": "咳嗽"},
        {"role": "assistant", "content": render_sections(THREE_PART_ANSWER)},
    ]
    message, row = on_like(history, True, SimpleNamespace(index=3, liked=True, value=None))
    assert row is not None and "已记录" in message
    assert on_comment("很有帮助", row)[1] == "意见已保存，谢谢！"
    assert on_comment("x", None)[1].startswith("请先")
    _, row2 = on_like(history, False, SimpleNamespace(index=1, liked=False, value=None))
    first, second = store.all()
    assert (first.question, first.answer, first.rating, first.comment) == (
        "咳嗽",
        THREE_PART_ANSWER,
        1,
        "很有帮助",
    )
    assert "(tuned)" in first.model and first.settings["max_new_tokens"] == 4
    assert second.question == "头疼怎么办" and second.rating == -1 and "(base)" in second.model
    assert on_like(history, True, SimpleNamespace(index=0, liked=True, value=None)) == ("", None)
