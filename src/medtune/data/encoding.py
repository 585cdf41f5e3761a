"""Text encoding of user files: detect it from a sample, then decode line by line.

Chinese medical dumps come as UTF-8, UTF-8 with a BOM (Excel exports) or GB18030/GBK (older Windows tools).
Detection reads at most ``SAMPLE_BYTES`` from the start; each line is then decoded on its own, so a single
line in another encoding is reported with its line number instead of aborting the whole file.
"""

from __future__ import annotations

import codecs
import logging
from collections.abc import Iterator
from pathlib import Path

from medtune.data.schema import DataError

logger = logging.getLogger(__name__)

SAMPLE_BYTES = 1 << 20
_UNSUPPORTED_BOMS = {
    codecs.BOM_UTF32_LE: "UTF-32",
    codecs.BOM_UTF32_BE: "UTF-32",
    codecs.BOM_UTF16_LE: "UTF-16",
    codecs.BOM_UTF16_BE: "UTF-16",
}


def _decodes(sample: bytes, encoding: str) -> bool:
    # Incremental, not final: the sample may end in the middle of a multi-byte character.
    try:
        codecs.getincrementaldecoder(encoding)(errors="strict").decode(sample, final=False)
    except UnicodeDecodeError:
        return False
    return True


def _line_safe(encoding: str) -> bool:
    """True when splitting the raw bytes at b'\\n' never cuts a character (ASCII-compatible encodings)."""
    try:
        return "a\n".encode(encoding) == b"a\n"
    except (LookupError, UnicodeEncodeError):
        return False


def detect_encoding(path: str | Path, configured: str = "auto") -> str:
    """The encoding to read ``path`` with: ``configured`` unless it is ``auto``.

    UTF-8 is tried first because GB18030 accepts almost any byte string; a UTF-8 file essentially never
    decodes as GB18030 text that also decodes as UTF-8, so the order is safe.
    """
    p = Path(path)
    if configured != "auto":
        if not _line_safe(configured):
            raise DataError(f"{p}: encoding {configured!r} is not line-based; convert the file to UTF-8")
        return configured
    with open(p, "rb") as f:
        sample = f.read(SAMPLE_BYTES)
    for bom, name in _UNSUPPORTED_BOMS.items():
        if sample.startswith(bom):
            raise DataError(f"{p}: the file is {name}; convert it to UTF-8 (or GB18030)", where=str(p))
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    for candidate in ("utf-8", "gb18030"):
        if _decodes(sample, candidate):
            return candidate
    # A few lines in another encoding (pasted from elsewhere) must not decide for the whole file: vote by
    # line, so that those lines are reported one by one with their numbers.
    lines = [line for line in sample.split(b"\n")[:-1] if not line.isascii()]
    for candidate in ("utf-8", "gb18030"):
        good = sum(_decodes(line, candidate) for line in lines)
        if lines and good > len(lines) / 2:
            logger.warning(
                "%s: %d of %d sampled lines are not %s", p, len(lines) - good, len(lines), candidate
            )
            return candidate
    from charset_normalizer import from_bytes

    best = from_bytes(sample).best()
    if best is None or not _line_safe(best.encoding):
        raise DataError(
            f"{p}: cannot tell the text encoding (not UTF-8 or GB18030); set data.encoding", where=str(p)
        )
    logger.warning("%s: neither UTF-8 nor GB18030; reading it as %s (detected)", p, best.encoding)
    return best.encoding


def decode_line(raw: bytes, encoding: str, where: str) -> str:
    """Decode one raw line, or raise a DataError naming the first bad byte (and the encoding the line is
    probably in, when UTF-8 or GB18030 reads it)."""
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        byte = raw[exc.start]
        hint, preview = "", raw[:200].decode(encoding, errors="replace")
        for other in ("utf-8", "gb18030"):
            if codecs.lookup(other).name != codecs.lookup(encoding).name:
                try:
                    preview = raw.decode(other)[:200]
                except UnicodeDecodeError:
                    continue
                hint = f"; this line reads as {other}"
                break
        raise DataError(
            f"{where}: not valid {encoding} text (byte 0x{byte:02x} at byte {exc.start + 1}){hint}; the file mixes "
            "encodings or is not in the detected one: convert it or set data.encoding",
            where=where,
            raw=preview,
        ) from None


def iter_lines(path: str | Path, encoding: str) -> Iterator[tuple[int, bytes]]:
    """(line number, raw bytes without the line ending) for every line, streaming."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            if lineno == 1 and encoding == "utf-8-sig" and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8) :]
            yield lineno, raw.rstrip(b"\r\n")
