"""The teacher prompt: a versioned template file, rendered into chat messages for one record.

The template is plain text with three parts opened by ``[[system]]``, ``[[user]]`` and ``[[retry]]`` lines
(see ``prompt_v1.md``). Its sha256 is the prompt version: it is recorded with every output and is part of
every journal key, so editing the prompt re-requests every record instead of mixing two prompts' outputs.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from medtune.data.schema import QARecord

PARTS = ("system", "user", "retry")
ALLOWED = {"system": set(), "user": {"question", "answer", "history", "department"}, "retry": {"reasons"}}
REQUIRED = {"system": set(), "user": {"question", "answer"}, "retry": {"reasons"}}
_PART_RE = re.compile(r"^\[\[(\w+)\]\]\s*$")
_PLACEHOLDER_RE = re.compile(r"\{\{(\w+)\}\}")
DEFAULT_PROMPT = "prompt_v1.md"


class PromptError(ValueError):
    """A malformed prompt template; the message names file:line."""


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    """File name, for display."""
    system: str
    user: str
    retry: str
    hash: str
    """First 16 hex digits of the sha256 of the whole file."""

    @classmethod
    def load(cls, path: str | Path | None = None) -> PromptTemplate:
        """Read and check a template; ``None`` loads the packaged default."""
        if path is None:
            data = resources.files("medtune.data.restructure").joinpath(DEFAULT_PROMPT).read_bytes()
            where = DEFAULT_PROMPT
        else:
            p = Path(path)
            if not p.is_file():
                raise PromptError(f"{p}: prompt file not found; check restructure.prompt_file")
            data = p.read_bytes()
            where = str(p)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise PromptError(f"{where}: the prompt file is not UTF-8 text") from None
        parts = _split_parts(text, where)
        return cls(
            name=Path(where).name,
            system=parts.get("system", ""),
            user=parts["user"],
            retry=parts["retry"],
            hash=hashlib.sha256(data).hexdigest()[:16],
        )

    def messages(self, record: QARecord) -> list[dict[str, str]]:
        """System and user messages asking the teacher to rewrite ``record.answer``."""
        history = "\n".join(
            f"{'患者' if turn.get('role') == 'user' else '医生'}：{turn.get('content', '')}"
            for turn in record.history
        )
        values = {
            "question": record.question.strip(),
            "answer": record.answer.strip(),
            "history": history or "无",
            "department": record.department or "未注明",
        }
        out = []
        if self.system:
            out.append({"role": "system", "content": _fill(self.system, values)})
        out.append({"role": "user", "content": _fill(self.user, values)})
        return out

    def retry_message(self, reasons: list[str]) -> dict[str, str]:
        """The follow-up user turn after a rewrite failed the gate."""
        return {"role": "user", "content": _fill(self.retry, {"reasons": "；".join(reasons)})}


def _fill(text: str, values: dict[str, str]) -> str:
    # One pass, so a question that happens to contain "{{answer}}" is never expanded itself.
    return _PLACEHOLDER_RE.sub(lambda m: values[m.group(1)], text)


def _split_parts(text: str, where: str) -> dict[str, str]:
    parts: dict[str, list[str]] = {}
    starts: dict[str, int] = {}
    current: str | None = None
    for lineno, line in enumerate(text.splitlines(), start=1):
        m = _PART_RE.match(line)
        if m:
            name = m.group(1)
            if name not in PARTS:
                raise PromptError(
                    f"{where}:{lineno}: unknown part [[{name}]]; use [[system]], [[user]], [[retry]]"
                )
            if name in parts:
                raise PromptError(f"{where}:{lineno}: part [[{name}]] appears twice")
            current, parts[name], starts[name] = name, [], lineno
            continue
        if current is None:
            continue  # notes above the first part are not sent
        for ph in _PLACEHOLDER_RE.findall(line):
            if ph not in ALLOWED[current]:
                allowed = ", ".join(f"{{{{{a}}}}}" for a in sorted(ALLOWED[current])) or "none"
                raise PromptError(
                    f"{where}:{lineno}: placeholder {{{{{ph}}}}} is not allowed in [[{current}]] (allowed: {allowed})"
                )
        parts[current].append(line)
    out = {name: "\n".join(lines).strip() for name, lines in parts.items()}
    for name in ("user", "retry"):
        if name not in out:
            raise PromptError(f"{where}: the template has no [[{name}]] part")
    for name, body in out.items():
        missing = REQUIRED[name] - set(_PLACEHOLDER_RE.findall(body))
        if missing:
            raise PromptError(
                f"{where}:{starts[name]}: [[{name}]] must contain "
                + ", ".join(f"{{{{{m}}}}}" for m in sorted(missing))
            )
        if not body:
            raise PromptError(f"{where}:{starts[name]}: [[{name}]] is empty")
    return out
