"""Readers: turn a user's raw files into ``QARecord``s, with file:line provenance and clear errors.

Layouts: alpaca (``instruction``/``input``/``output``), messages/ShareGPT (``messages`` or ``conversations``
with ``role``/``from`` keys), plain ``question``/``answer``, or any columns named in config
(``data.question_fields`` ...). File types: JSONL, JSON (an array, or an object holding a ``data``/``records``
array), CSV/TSV with encoding detection, Parquet, Arrow and Hugging Face ``datasets`` folders. Everything
streams: JSON arrays are decoded element by element, tables batch by batch.

Readers yield a record or a ``DataError`` per entry; the caller decides whether an error stops the run
(``on_error: fail``) or is quarantined (``skip``). Problems with a whole file (empty, missing columns,
unknown encoding) are raised.
"""

from __future__ import annotations

import csv
import glob
import io
import json
import logging
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from medtune.data.encoding import decode_line, detect_encoding, iter_lines
from medtune.data.schema import DataError, QARecord

logger = logging.getLogger(__name__)

_ROLE_MAP = {
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "gpt": "assistant",
    "system": "system",
}
_QUESTION_KEYS = ("question", "ask", "query", "prompt")
_ANSWER_KEYS = ("answer", "response", "reply", "chosen")  # chosen: a preference pair's liked answer
_META_KEYS = ("condition",)
JSONL_SUFFIXES = (".jsonl", ".ndjson")
CSV_SUFFIXES = (".csv", ".tsv", ".tab")
TABLE_SUFFIXES = (".parquet", ".pq", ".arrow")
SUPPORTED_SUFFIXES = (".json", *JSONL_SUFFIXES, *CSV_SUFFIXES, *TABLE_SUFFIXES)


@dataclass(frozen=True)
class ReadOptions:
    """How to read every source of one config (from ``DataConfig``)."""

    fmt: str = "auto"
    question_fields: tuple[str, ...] = ()
    answer_fields: tuple[str, ...] = ()
    department_field: str | None = None
    id_field: str | None = None
    encoding: str = "auto"
    csv_delimiter: str | None = None

    @classmethod
    def from_config(cls, dcfg: Any) -> ReadOptions:
        return cls(
            fmt=dcfg.format,
            question_fields=tuple(dcfg.question_fields),
            answer_fields=tuple(dcfg.answer_fields),
            department_field=dcfg.department_field,
            id_field=dcfg.id_field,
            encoding=dcfg.encoding,
            csv_delimiter=dcfg.csv_delimiter,
        )

    @property
    def mapped(self) -> bool:
        return bool(self.question_fields)

    def required_columns(self) -> list[str]:
        return [*self.question_fields, *self.answer_fields]


class Row(NamedTuple):
    where: str
    """``file:line`` (text files) or ``file:row N`` (tables): the provenance every record keeps."""
    default_id: str
    obj: Any


def detect_format(obj: dict[str, Any]) -> str:
    if "messages" in obj or "conversations" in obj:
        return "messages"
    if "instruction" in obj and "output" in obj:
        return "alpaca"
    if any(k in obj for k in _QUESTION_KEYS) and any(k in obj for k in _ANSWER_KEYS):
        return "qa"
    raise DataError(
        "cannot tell the record format from its keys "
        f"{sorted(obj)}; expected alpaca (instruction/output), messages/conversations, or question/answer "
        "(or name the columns with data.question_fields / data.answer_fields)"
    )


def _text(obj: dict[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if value is None:
        raise DataError(f"{where}: field {key!r} is missing", where=where)
    if not isinstance(value, str):
        raise DataError(f"{where}: field {key!r} must be a string, got {type(value).__name__}", where=where)
    return value


def _joined(obj: dict[str, Any], keys: tuple[str, ...], where: str) -> str:
    """Join mapped columns line by line (``title`` + ``ask``); empty cells and repeats are left out."""
    parts: list[str] = []
    for key in keys:
        if key not in obj:
            raise DataError(f"{where}: column {key!r} is missing (have {sorted(obj)})", where=where)
        value = obj[key]
        if value is None:
            continue
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            raise DataError(
                f"{where}: column {key!r} must hold text, got {type(value).__name__}", where=where
            )
        value = value.strip()
        if value and value not in parts:
            parts.append(value)
    return "\n".join(parts)


def _optional_str(obj: dict[str, Any], key: str | None, fallback: str) -> str | None:
    value = obj.get(key if key else fallback)
    if value is None or isinstance(value, (dict, list)):
        return None
    value = str(value).strip()
    return value or None


def record_from_obj(
    obj: Any, fmt: str, where: str, default_id: str, options: ReadOptions | None = None
) -> QARecord:
    """Convert one parsed row into a QARecord; ``where`` is ``file:line`` for errors and provenance."""
    opts = options or ReadOptions(fmt=fmt)
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(obj).__name__}", where=where)
    rid = _optional_str(obj, opts.id_field, "id") or default_id
    dept = _optional_str(obj, opts.department_field, "department")
    if dept is not None:
        dept = sys.intern(dept)  # a handful of departments shared by a million records
    meta = {k: obj[k] for k in _META_KEYS if k in obj}
    if opts.mapped:
        question = _joined(obj, opts.question_fields, where)
        answer = _joined(obj, opts.answer_fields, where)
        return QARecord(rid, question, answer, dept, where, meta=meta)
    if fmt == "auto":
        try:
            fmt = detect_format(obj)
        except DataError as exc:
            raise DataError(f"{where}: {exc}", where=where) from None
    if fmt == "alpaca":
        instruction = _text(obj, "instruction", where)
        extra = obj.get("input") or ""
        question = f"{instruction}\n{extra}".strip() if extra else instruction
        return QARecord(rid, question, _text(obj, "output", where), dept, where, meta=meta)
    if fmt == "qa":
        qkey = next((k for k in _QUESTION_KEYS if k in obj), "question")
        akey = next((k for k in _ANSWER_KEYS if k in obj), "answer")
        question = _text(obj, qkey, where)
        if qkey == "ask" and isinstance(obj.get("title"), str):
            # Q&A-site dumps (department,title,ask,answer): the title is the patient's own summary line.
            question = _joined(obj, ("title", "ask"), where)
        return QARecord(rid, question, _text(obj, akey, where), dept, where, meta=meta)
    if fmt == "messages":
        turns = obj.get("messages", obj.get("conversations"))
        if not isinstance(turns, list) or not turns:
            raise DataError(f"{where}: field 'messages' must be a non-empty list", where=where)
        msgs = []
        for i, turn in enumerate(turns):
            if not isinstance(turn, dict):
                raise DataError(f"{where}: messages[{i}] must be an object", where=where)
            role = _ROLE_MAP.get(str(turn.get("role", turn.get("from", ""))).lower())
            content = turn.get("content", turn.get("value"))
            if role is None or not isinstance(content, str):
                raise DataError(
                    f"{where}: messages[{i}] needs role/from and content/value strings", where=where
                )
            msgs.append({"role": role, "content": content})
        msgs = [
            m for m in msgs if m["role"] != "system"
        ]  # our own system prompt is the single source of truth
        if len(msgs) < 2 or msgs[-1]["role"] != "assistant" or msgs[-2]["role"] != "user":
            raise DataError(
                f"{where}: a conversation must end with a user turn followed by an assistant turn",
                where=where,
            )
        return QARecord(
            rid, msgs[-2]["content"], msgs[-1]["content"], dept, where, history=msgs[:-2], meta=meta
        )
    raise DataError(f"{where}: unknown format {fmt!r}", where=where)


# ---------------------------------------------------------------------------------------------
# Sources


def is_hf_dataset_dir(path: Path) -> bool:
    return path.is_dir() and any(
        (path / name).is_file() for name in ("dataset_info.json", "state.json", "dataset_dict.json")
    )


def expand_sources(specs: list[str]) -> list[Path]:
    """Files (and ``datasets`` folders) named by config: plain paths, folders (searched recursively for
    supported files) and globs. A name that matches nothing is an error, never silently skipped."""
    out: list[Path] = []
    for spec in specs:
        if any(ch in spec for ch in "*?["):
            matches = sorted(Path(m) for m in glob.glob(spec, recursive=True))
            if not matches:
                raise DataError(
                    f"{spec}: no file matches this pattern; check data.raw_file / data.extra_files"
                )
            out.extend(m for m in matches if m.is_file() or is_hf_dataset_dir(m))
            continue
        p = Path(spec)
        if is_hf_dataset_dir(p) or p.is_file():
            out.append(p)
        elif p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in SUPPORTED_SUFFIXES)
            if not found:
                raise DataError(f"{p}: folder holds no {', '.join(SUPPORTED_SUFFIXES)} files")
            out.extend(found)
        else:
            raise DataError(f"{p}: data file not found; check data.raw_file / data.extra_files")
    unique: list[Path] = []
    for p in out:
        if p not in unique:
            unique.append(p)
    return unique


def source_kind(path: Path) -> str:
    if is_hf_dataset_dir(path):
        return "hf_datasets"
    suffix = path.suffix.lower()
    if suffix in JSONL_SUFFIXES:
        return "jsonl"
    if suffix == ".json":
        return "json"
    if suffix in CSV_SUFFIXES:
        return "csv"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix == ".arrow":
        return "arrow"
    raise DataError(
        f"{path}: unsupported file type {suffix!r}; use {', '.join(SUPPORTED_SUFFIXES)} or a datasets folder"
    )


def iter_rows(path: str | Path, options: ReadOptions | None = None) -> Iterator[Row | DataError]:
    """Yield every entry of one source as a Row (or a DataError for an entry that cannot be parsed)."""
    opts = options or ReadOptions()
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: data file not found; check data.raw_file")
    kind = source_kind(p)
    if p.is_file() and p.stat().st_size == 0:
        raise DataError(f"{p}: data file is empty", where=str(p))
    if kind == "jsonl":
        yield from _iter_jsonl(p, opts)
    elif kind == "json":
        yield from _iter_json(p, opts)
    elif kind == "csv":
        yield from _iter_csv(p, opts)
    else:
        from medtune.data.tables import iter_table_rows

        yield from iter_table_rows(p, kind, opts)


def iter_records(
    path: str | Path, fmt: str = "auto", options: ReadOptions | None = None
) -> Iterator[QARecord | DataError]:
    """Yield a record per entry, or a DataError (naming file:line) for an entry that cannot be read."""
    opts = options or ReadOptions(fmt=fmt)
    for row in iter_rows(path, opts):
        if isinstance(row, DataError):
            yield row
            continue
        try:
            yield record_from_obj(row.obj, opts.fmt, row.where, row.default_id, opts)
        except DataError as exc:
            if exc.raw is None:
                exc.raw = _preview(row.obj)
            yield exc


def _preview(obj: Any) -> str:
    try:
        return json.dumps(obj, ensure_ascii=False, default=str)[:200]
    except (TypeError, ValueError):
        return repr(obj)[:200]


def check_columns(columns: list[str], opts: ReadOptions, where: str) -> None:
    """Fail once for a whole table whose header cannot give records, instead of once per row."""
    if opts.mapped:
        missing = [c for c in opts.required_columns() if c not in columns]
        if missing:
            raise DataError(
                f"{where}: missing column(s) {missing} named in data.question_fields/answer_fields; "
                f"the file has {columns}",
                where=where,
            )
    elif opts.fmt == "auto":
        try:
            detect_format(dict.fromkeys(columns, ""))
        except DataError as exc:
            raise DataError(f"{where}: {exc}", where=where) from None


# ---------------------------------------------------------------------------------------------
# JSON and JSONL


def _iter_jsonl(p: Path, opts: ReadOptions) -> Iterator[Row | DataError]:
    encoding = detect_encoding(p, opts.encoding)
    for lineno, raw in iter_lines(p, encoding):
        where = f"{p}:{lineno}"
        if not raw.strip():
            continue
        try:
            text = decode_line(raw, encoding, where)
        except DataError as exc:
            yield exc
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            yield DataError(
                f"{where}: malformed JSON ({exc.msg} at column {exc.colno})", where=where, raw=text[:200]
            )
            continue
        yield Row(where, f"{p.stem}-{lineno}", obj)


_WS_RE = re.compile(r"[ \t\n\r]*")
_CHUNK_CHARS = 1 << 20
_MAX_ELEMENT_CHARS = 256 << 20


class _JsonStream:
    """Incremental reader of one JSON document: values are decoded one at a time from a sliding buffer."""

    def __init__(self, f: io.TextIOBase, path: Path) -> None:
        self.f = f
        self.path = path
        self.buf = ""
        self.pos = 0
        self.line = 1
        self.eof = False
        self.decoder = json.JSONDecoder()

    def _advance(self, new_pos: int) -> None:
        self.line += self.buf.count("\n", self.pos, new_pos)
        self.pos = new_pos

    def _fill(self) -> bool:
        try:
            chunk = self.f.read(_CHUNK_CHARS)
        except UnicodeDecodeError as exc:
            raise DataError(
                f"{self.path}:{self.line}: not valid text in the detected encoding ({exc.reason}); "
                "convert the file or set data.encoding",
                where=f"{self.path}:{self.line}",
            ) from None
        if not chunk:
            self.eof = True
            return False
        self.buf = self.buf[self.pos :] + chunk
        self.pos = 0
        return True

    def peek(self) -> str:
        """The next non-blank character ('' at the end), without consuming it."""
        while True:
            self._advance(_WS_RE.match(self.buf, self.pos).end())  # type: ignore[union-attr]
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self._fill():
                return ""

    def expect(self, chars: str, what: str) -> str:
        c = self.peek()
        if not c or c not in chars:
            found = repr(c) if c else "the end of the file"
            where = f"{self.path}:{self.line}"
            raise DataError(f"{where}: malformed JSON: expected {what}, found {found}", where=where)
        self._advance(self.pos + 1)
        return c

    def value(self) -> Any:
        self.peek()
        while True:
            try:
                obj, end = self.decoder.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as exc:
                if self.eof or len(self.buf) - self.pos > _MAX_ELEMENT_CHARS:
                    line = self.line + self.buf.count("\n", self.pos, exc.pos)
                    raise DataError(
                        f"{self.path}:{line}: malformed JSON ({exc.msg}); the rest of this file is not read",
                        where=f"{self.path}:{line}",
                        raw=self.buf[self.pos : self.pos + 200],
                    ) from None
                self._fill()
                continue
            if end == len(self.buf) and not self.eof and self._fill():
                continue  # a number or literal may go on in the next chunk
            self._advance(end)
            return obj


def _iter_json(p: Path, opts: ReadOptions) -> Iterator[Row | DataError]:
    encoding = detect_encoding(p, opts.encoding)
    with open(p, encoding=encoding, newline="") as f:
        stream = _JsonStream(f, p)
        first = stream.peek()
        if first == "[":
            yield from _iter_json_array(stream, p)
            return
        if first != "{":
            where = f"{p}:{stream.line}"
            raise DataError(f"{where}: a .json file must hold a list of records (or use JSONL)", where=where)
        # {"data": [...], "info": ...}: stream the records list, decode the other (small) members whole.
        stream.expect("{", "'{'")
        found = False
        while stream.peek() not in ("}", ""):
            key = stream.value()
            stream.expect(":", "':'")
            if key in ("data", "records") and stream.peek() == "[":
                found = True
                yield from _iter_json_array(stream, p)
            else:
                stream.value()
            if stream.expect(",}", "',' or '}'") == "}":
                break
        if not found:
            raise DataError(
                f"{p}: a .json file must hold a list of records (or an object with a 'data' list)"
            )


def _iter_json_array(stream: _JsonStream, p: Path) -> Iterator[Row | DataError]:
    stream.expect("[", "'['")
    if stream.peek() == "]":
        stream.expect("]", "']'")
        return
    i = 0
    while True:
        try:
            stream.peek()
            line = stream.line
            obj = stream.value()
        except DataError as exc:
            yield exc  # the stream cannot find the next element after a broken one
            return
        yield Row(f"{p}:{line}:[{i}]", f"{p.stem}-{i}", obj)
        i += 1
        try:
            if stream.expect(",]", "',' or ']'") == "]":
                return
        except DataError as exc:
            yield exc
            return


# ---------------------------------------------------------------------------------------------
# CSV / TSV

_FIELD_LIMIT = 64 << 20


def _iter_csv(p: Path, opts: ReadOptions) -> Iterator[Row | DataError]:
    encoding = detect_encoding(p, opts.encoding)
    delimiter = opts.csv_delimiter or ("\t" if p.suffix.lower() in (".tsv", ".tab") else ",")
    # Answers can be long; the default limit (128 KiB) would abort a whole file on one long cell.
    csv.field_size_limit(max(csv.field_size_limit(), _FIELD_LIMIT))
    bad_lines: dict[int, DataError] = {}

    def lines() -> Iterator[str]:
        for lineno, raw in iter_lines(p, encoding):
            try:
                text = decode_line(raw, encoding, f"{p}:{lineno}")
            except DataError as exc:
                bad_lines[lineno] = exc
                text = raw.decode(encoding, errors="replace")
            yield text + "\n"

    reader = csv.reader(lines(), delimiter=delimiter)
    try:
        header = next(reader, None)
        if header is None or not any(h.strip() for h in header):
            raise DataError(f"{p}:1: no header row (the first line must name the columns)", where=f"{p}:1")
        if 1 in bad_lines:
            raise bad_lines[1]
        header = [h.strip() for h in header]
        check_columns(header, opts, f"{p}:1")
        last = reader.line_num
        for row in reader:
            start, last = last + 1, reader.line_num
            where = f"{p}:{start}"
            errors = [bad_lines.pop(n) for n in range(start, last + 1) if n in bad_lines]
            if errors:
                yield errors[0]
                continue
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                yield DataError(
                    f"{where}: {len(row)} fields but the header has {len(header)} "
                    f"(a stray {delimiter!r} or quote?)",
                    where=where,
                    raw=delimiter.join(row)[:200],
                )
                continue
            yield Row(where, f"{p.stem}-{start}", dict(zip(header, row)))
    except csv.Error as exc:
        where = f"{p}:{reader.line_num}"
        raise DataError(f"{where}: unreadable CSV ({exc})", where=where) from None
