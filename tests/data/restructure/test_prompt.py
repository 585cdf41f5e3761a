"""The prompt template file: parts, placeholders, version hash, and errors naming file:line."""

from __future__ import annotations

import pytest

from medtune.data.restructure.prompt import PromptError, PromptTemplate
from medtune.data.schema import QARecord


def test_the_default_template_asks_for_the_three_parts_and_six_subsections():
    template = PromptTemplate.load()
    for word in (
        "一、病情分析",
        "二、原因分析",
        "三、治疗建议",
        "症状评估",
        "可能疾病",
        "主要病因",
        "鉴别要点",
        "就医指导",
    ):
        assert word in template.system
    messages = template.messages(QARecord("1", "咳嗽三天 {{answer}}", "多喝水", "呼吸内科"))
    assert [m["role"] for m in messages] == ["system", "user"]
    assert "<question>\n咳嗽三天 {{answer}}\n</question>" in messages[1]["content"]  # data is never expanded
    assert "科室：呼吸内科" in messages[1]["content"]


def test_the_hash_changes_with_the_file(tmp_path):
    body = "[[user]]\n{{question}} {{answer}}\n[[retry]]\n{{reasons}}\n"
    a, b = tmp_path / "a.md", tmp_path / "b.md"
    a.write_text(body, encoding="utf-8")
    b.write_text(body + "再简洁些\n", encoding="utf-8")
    assert PromptTemplate.load(a).hash != PromptTemplate.load(b).hash
    assert PromptTemplate.load(a).hash == PromptTemplate.load(a).hash


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (
            "[[user]]\n{{question}} {{answer}} {{answr}}\n[[retry]]\n{{reasons}}\n",
            r"p\.md:2: placeholder \{\{answr\}\}",
        ),
        (
            "[[user]]\n{{question}}\n[[retry]]\n{{reasons}}\n",
            r"p\.md:1: \[\[user\]\] must contain \{\{answer\}\}",
        ),
        ("[[user]]\n{{question}} {{answer}}\n", r"no \[\[retry\]\] part"),
        ("[[user]]\n{{question}} {{answer}}\n[[retry]]\n{{reasons}}\n[[usr]]\n", r"p\.md:5: unknown part"),
    ],
)
def test_template_mistakes_name_the_line(tmp_path, text, error):
    path = tmp_path / "p.md"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PromptError, match=error):
        PromptTemplate.load(path)
