"""The one system prompt shared by training, evaluation, terminal chat, the web UI and the API.

Training and inference must see the same prompt: a model tuned under one system prompt and served under
another loses much of what it learned. Everything that builds a conversation calls ``build_messages``.
"""

from __future__ import annotations

SYSTEM_PROMPT = (
    "你是一名严谨的医学科普助手。请按“一、病情分析 二、原因分析 三、治疗建议”三部分回答患者的问题；"
    "不给出处方剂量，不做确定诊断；出现急危重症表现时，明确建议立即就医或拨打120。"
)


def build_messages(
    question: str,
    answer: str | None = None,
    system_prompt: str | None = None,
    history: list[dict] | None = None,
) -> list[dict[str, str]]:
    """Messages for one exchange: system, optional earlier turns, the user question, and the answer if given."""
    messages = [{"role": "system", "content": system_prompt or SYSTEM_PROMPT}]
    messages.extend(history or [])
    messages.append({"role": "user", "content": question})
    if answer is not None:
        messages.append({"role": "assistant", "content": answer})
    return messages
