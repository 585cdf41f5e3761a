"""A second opinion on triage from a language model, for questions the rules do not flag.

The rules are the safety layer; this is an optional extra look. For a question without a red flag it sends
a short triage prompt to an OpenAI-compatible endpoint (the served model or any other) and asks for one
JSON object::

    {"emergency": true, "row": "acute_abdomen", "action": "emergency_department"}

It can only **add** an emergency banner, never remove one: a question the rules flag is not sent, and an
answer that is late, malformed or not ``true`` adds nothing. Replies are cached on disk by the hash of the
prompt, model and question, so a repeated question costs no second call. Off unless
``serve.triage_second_opinion`` is true; the key is read from the environment variable that
``serve.triage_api_key_env`` names, never from the config file. ``medtune serve`` wires it into the
shared ChatEngine (the banner streams first, as for the rules).

    opinion = SecondOpinion.from_config(cfg.serve)
    flags = opinion.triage(question, engine.triage(question)) if opinion else engine.triage(question)
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from medtune.safety.engine import RedFlag, SafetyEngine, default_engine

logger = logging.getLogger(__name__)

PROMPT_VERSION = "triage-v2"
SYSTEM_PROMPT = (
    "你是急诊预检分诊护士。判断用户的问题是否描述了一个真实的人**现在**正处于需要立即拨打120、立即去急诊、"
    "联系心理危机热线或中毒急救的情况。一般知识提问、考试题、影视小说情节、已经处理过的既往情况、宠物都不算。"
    '只输出一个JSON对象，不要输出其他文字：{"emergency": true或false, "row": 简短英文类别或null, '
    '"action": "call_120"、"emergency_department"、"crisis_line"、"poison_control"之一或null}'
)
RULE_ID = "second_opinion"
_JSON_OBJECT = re.compile(r"\{.*\}", re.S)


@dataclass(frozen=True)
class Verdict:
    """What the endpoint said about one question."""

    emergency: bool
    row: str | None
    action: str | None


def parse_verdict(text: str) -> Verdict | None:
    """The verdict in a reply, or None when the reply is not one JSON object of the agreed form.

    A reply wrapped in a Markdown code fence is accepted; anything else (prose, two objects, a string for
    ``emergency``) is refused, since a loose reading could invent an emergency or miss one silently.
    """
    match = _JSON_OBJECT.search(text.strip())
    if match is None:
        return None
    try:
        data = json.loads(match.group())
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("emergency"), bool):
        return None
    row = data.get("row")
    action = data.get("action")
    return Verdict(
        data["emergency"],
        row if isinstance(row, str) and row else None,
        action if isinstance(action, str) and action else None,
    )


class SecondOpinion:
    """Ask an OpenAI-compatible endpoint about questions the rules leave unflagged; cache the answers."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout_s: float = 5.0,
        cache_dir: str | Path | None = None,
        engine: SafetyEngine | None = None,
        client: httpx.Client | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.timeout_s = timeout_s
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.engine = engine or default_engine()
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = client or httpx.Client(timeout=timeout_s, headers=headers)

    @classmethod
    def from_config(cls, serve_cfg: Any, engine: SafetyEngine | None = None) -> SecondOpinion | None:
        """The second opinion configured in ``serve``, or None when ``triage_second_opinion`` is off."""
        if not serve_cfg.triage_second_opinion:
            return None
        api_key = os.environ.get(serve_cfg.triage_api_key_env) if serve_cfg.triage_api_key_env else None
        return cls(
            serve_cfg.triage_base_url,
            serve_cfg.triage_model,
            api_key=api_key,
            timeout_s=serve_cfg.triage_timeout_s,
            cache_dir=serve_cfg.triage_cache_dir,
            engine=engine,
        )

    def close(self) -> None:
        self._client.close()

    # ------------------------------------------------------------------------------------------ cache
    def _key(self, question: str) -> str:
        text = "\x00".join((PROMPT_VERSION, self.model, SYSTEM_PROMPT, question))
        return hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()

    def _cached(self, key: str) -> Verdict | None:
        if self.cache_dir is None:
            return None
        path = self.cache_dir / f"{key}.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, json.JSONDecodeError) as exc:
            logger.warning("second opinion: unreadable cache entry %s (%s); asking again", path, exc)
            return None
        return Verdict(bool(data["emergency"]), data.get("row"), data.get("action"))

    def _store(self, key: str, verdict: Verdict) -> None:
        if self.cache_dir is None:
            return
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        path = self.cache_dir / f"{key}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(verdict.__dict__, ensure_ascii=False), encoding="utf-8")
        tmp.replace(path)

    # -------------------------------------------------------------------------------------- the call
    def ask(self, question: str) -> Verdict | None:
        """The endpoint's verdict (cached), or None when it could not be had in time or in the agreed form."""
        key = self._key(question)
        cached = self._cached(key)
        if cached is not None:
            return cached
        body = {
            "model": self.model,
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                # The instructions are repeated in the user turn: medtune's own API (and other guarded servers)
                # drop a client's system message and keep theirs, and the verdict format must still arrive.
                {"role": "user", "content": f"{SYSTEM_PROMPT}\n\n问题：{question}"},
            ],
            "temperature": 0,
            "max_tokens": 64,
        }
        try:
            response = self._client.post(
                f"{self.base_url}/chat/completions", json=body, timeout=self.timeout_s
            )
            response.raise_for_status()
            content = response.json()["choices"][0]["message"]["content"]
        except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError) as exc:
            logger.warning("second opinion: no usable reply from %s (%s)", self.base_url, exc)
            return None
        verdict = parse_verdict(str(content))
        if verdict is None:
            logger.warning("second opinion: reply not in the agreed JSON form: %.200s", content)
            return None
        self._store(key, verdict)
        return verdict

    def triage(self, question: str, flags: list[RedFlag] | tuple[RedFlag, ...]) -> list[RedFlag]:
        """``flags`` unchanged when the rules found any; otherwise the endpoint's emergency, if it sees one."""
        if flags:
            return list(flags)
        verdict = self.ask(question)
        if verdict is None or not verdict.emergency:
            return []
        actions = self.engine.rules.actions
        action = verdict.action if verdict.action in actions else "emergency_department"
        label = f"模型复核提示可能属于急症：{verdict.row}" if verdict.row else "模型复核提示可能属于急症"
        logger.warning("second opinion flagged a question the rules did not (%s, %s)", verdict.row, action)
        return [
            RedFlag(
                rule_id=RULE_ID,
                category=label,
                action=action,
                action_text=actions[action].text,
                matched=verdict.row or "",
                rationale="规则未命中；由语言模型复核判断为急症，仅用于增加提示，不会取消规则给出的提示。",
                source="second_opinion",
            )
        ]
