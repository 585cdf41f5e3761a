"""A learned layer under the rules: character n-gram logistic regression over labelled safety records.

The rules cover the wordings somebody thought of; patients find others. This model reads the same
normalised text (OpenCC simplified, temperatures as digits) as bags of character 1- to 3-grams, hashed into
2**20 buckets, and gives the probability that a question is an emergency and, for an answer read with its
question, that it advises something contraindicated for this patient, a prescription dose or antibiotics
without a doctor, or states a diagnosis as certain. The engine consults it where the
rules found nothing (and, for answers, where the rules leave it room: see
:meth:`~medtune.safety.engine.SafetyEngine._model_may_add`), where it may **add** a flag or a warning; each
names the n-grams that weighed most, so a reviewer sees why it fired. It removes one thing: the certainty rule's
finding on an answer it rates near-certainly no verdict (:attr:`TrainSettings.certainty_gate`); and, in a model
trained with a veto threshold (off by default: :attr:`TrainSettings.veto_threshold`), a rule's flag on a question
it rates near-certainly no emergency. Both are withheld and kept in the report.

It is trained on the development set only (``data/safety/labelled*.jsonl``), with a
fixed regulariser and solver, so ``medtune safety train`` reproduces the packaged file bit for bit. The
question threshold was chosen on the first frozen round (``frozen.jsonl``), which therefore no longer
measures it, and is now held to a rule out of fold on the dev set (:data:`QUESTION_MAX_FALSE_RATE`,
:data:`QUESTION_ALARMS_PER_EMERGENCY`); the
answer thresholds are chosen out of fold too (:data:`ANSWER_THRESHOLDS`); the later frozen rounds measure
both (``data/safety/README.md``).

Text is read up to :data:`MAX_MODEL_CHARS` (head and tail), which bounds the cost of a 1 MB input.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import lzma
import math
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medtune.safety.rules import normalize

if TYPE_CHECKING:  # the engine imports this module
    from medtune.safety.engine import SafetyEngine

logger = logging.getLogger(__name__)

FORMAT = 6
"""6: weights stored as whole numbers of 1e-3 (5: of 1e-4, still read), one flat list (4 wrote decimals, one list
per bucket); n-grams hashed into buckets with one multiplier for every length, stored as the gaps between them (3 had
a multiplier per length, 2 stored the buckets, 1 the n-gram strings); retrain a file older than 5."""
READABLE_FORMATS = (5, 6)
WEIGHT_SCALE = 1_000
"""Weights are kept to 3 decimals (steps of 1e-3): a text reads a few hundred buckets, so its logit moves by a few
thousandths at most; on the 40,875 labelled records no probability moved by more than 3e-4 and no verdict moved.
Every bit dropped here is ~150 kB of the packaged file."""
_STORED_WEIGHTS = {"weights_e3": 1_000, "weights_e4": 10_000}
PACKAGED_MODEL = Path(__file__).with_name("triage_model.json.xz")
"""xz, not gzip: with four answer kinds the gzip file passed 2 MiB (2.2 MB); xz with 1e-3 steps is ~1.6 MB."""
_XZ_MAGIC = b"\xfd7zXZ\x00"
MAX_MODEL_CHARS = 4_000
# The answer kinds a model may add. ``dismissive`` is left to the rules: it depends on the triage of the
# question, which the question model already extends.
ANSWER_KINDS = ("contraindication", "dose", "antibiotic", "certain_diagnosis")
HASH_BITS = 20
"""n-grams are hashed into 2**20 buckets: ~150,000 n-grams carry weight, so few share a bucket, and finding a
text's weights is a handful of array operations instead of a dictionary lookup per n-gram (what keeps 10,000
checks with both models under the 2 s budget)."""

_DIGITS = re.compile(r"\d+(?:\.\d+)?")
_SPACES = re.compile(r"\s+")
_M64 = (1 << 64) - 1
_BASE = 1_000_003
"""Rolling hash of an n-gram: h = c0, h = h * _BASE + c_i (mod 2**64)."""
_MIX = 0x9E3779B97F4A7C15
"""Multiplicative hashing: the top bits of h * _MIX (mod 2**64) are the bucket. One multiplier serves every
length, since n-grams of different lengths already have different rolling values (a 2-gram's is at least
_BASE, above every code point outside the private-use planes; a 3-gram's does not wrap), and one multiply over
the whole buffer is what the budget allows."""
_QUESTION_MIX = 0x5BD1E995
"""A question's n-gram read beside an answer goes to bucket (b * _QUESTION_MIX + 1) mod 2**bits, b its bucket
as a question: a permutation of the buckets, so the same characters in the question and in the answer weigh
apart, and the question's buckets, already found for the question model, are reused."""


class ModelError(ValueError):
    """A model file that cannot be used (missing, wrong format, broken JSON)."""


def prepare(text: str, normalised: bool = False) -> str:
    """The text the model reads: normalised, lower-case, every number one symbol, spaces collapsed."""
    if len(text) > MAX_MODEL_CHARS:
        text = text[: MAX_MODEL_CHARS // 2] + "\n" + text[-MAX_MODEL_CHARS // 2 :]
    if not normalised:
        text = normalize(text)
    return _SPACES.sub(" ", _DIGITS.sub("0", text.lower()))


_BASE_U64 = np.uint64(_BASE)
_MIX_U64 = np.uint64(_MIX)
_SHIFTS = [np.uint64(64 - bits) for bits in range(65)]


def _hashed(points: np.ndarray, n_max: int, bits: int) -> np.ndarray:
    """Buckets of all n-grams of a code-point array: the 1-grams in order, then the 2-grams, ...

    Written into one buffer in place: at ten thousand checks a second the temporaries (and even the numpy
    scalars, made once above) would cost more than the arithmetic.
    """
    length = len(points)
    sizes = [length - n + 1 for n in range(1, n_max + 1) if length - n + 1 > 0]
    out = np.empty(sum(sizes), dtype=np.uint64)
    if not sizes:
        return out.view(np.int64)
    out[:length] = points
    previous = points = out[:length]
    start = length
    for n, size in enumerate(sizes[1:], 2):
        # rolling[i] = rolling_{n-1}[i] * _BASE + points[i + n - 1], wrapping mod 2**64 like gram_id
        segment = out[start : start + size]
        np.multiply(previous[:size], _BASE_U64, out=segment)
        np.add(segment, points[n - 1 :], out=segment)
        previous = segment
        start += size
    np.multiply(out, _MIX_U64, out=out)
    np.right_shift(out, _SHIFTS[bits], out=out)
    return out.view(np.int64)  # every bucket is below 2**bits: the same numbers, as indices


def gram_ids(text: str, n_max: int, bits: int = HASH_BITS) -> np.ndarray:
    """The bucket of every character n-gram of a prepared text, n = 1 .. n_max (repeats kept), vectorised."""
    # the code points go straight into _hashed's 64-bit buffer: no converted copy
    return _hashed(np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32), n_max, bits)


def as_question(ids: np.ndarray, bits: int = HASH_BITS) -> np.ndarray:
    """A question's buckets (:func:`gram_ids`) as the answer model reads them: see :data:`_QUESTION_MIX`."""
    out = ids * _QUESTION_MIX  # below 2**51: no wrapping
    out += 1
    out &= (1 << bits) - 1
    return out


def gram_id(gram: str, bits: int = HASH_BITS) -> int:
    """The bucket of one n-gram: :func:`gram_ids` for a single n-gram, in plain integers (the definition of the
    model file's buckets, for anyone reading it without numpy)."""
    rolling = 0
    for i, ch in enumerate(gram):
        rolling = ord(ch) if i == 0 else (rolling * _BASE + ord(ch)) & _M64
    return ((rolling * _MIX) & _M64) >> (64 - bits)


def _distinct(ids: np.ndarray) -> np.ndarray:
    """The distinct buckets of ``ids``, ascending: ``np.unique`` without its overhead. Sorts ``ids`` in place
    (every caller passes a fresh array; a copy costs more than the sort).

    Sorting a few hundred ids stays in the processor's cache; a scatter into a 2**20 scratch array (the other
    way) is one cache miss per id and slower.
    """
    if len(ids) < 2:
        return ids
    ids.sort()
    ordered = ids
    keep = np.empty(len(ordered), dtype=bool)
    keep[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    return ordered[keep]


@dataclass(slots=True)
class Features:
    """What a model reads of one text: its distinct n-gram buckets, and the prepared texts (for evidence)."""

    ids: np.ndarray
    text: str
    question: str | None = None
    """The question read beside an answer (``None``: the text alone)."""


@dataclass
class NgramModel:
    """Several logistic regressions over hashed character n-grams (one column of weights per output)."""

    outputs: tuple[str, ...]
    n_max: int
    ids: np.ndarray
    """The buckets that carry a weight, ascending."""
    weights: np.ndarray
    """(len(ids), len(outputs)) float32."""
    bias: np.ndarray
    thresholds: dict[str, float]
    with_question: bool = False
    bits: int = HASH_BITS

    def __post_init__(self) -> None:
        self.ids = np.asarray(self.ids, dtype=np.intp)
        # One dense row per bucket (16 MiB for four outputs): a text's weights are then one fancy index.
        self._table = np.zeros((1 << self.bits, len(self.outputs)), dtype=np.float32)
        self._table[self.ids] = self.weights

    def text_ids(self, prepared: str) -> np.ndarray:
        """The distinct buckets of a prepared text as this model hashes it (a question model's features)."""
        return _distinct(gram_ids(prepared, self.n_max, self.bits))

    def features(
        self,
        text: str,
        question: str = "",
        normalised: bool = False,
        question_ids: np.ndarray | None = None,
    ) -> Features:
        """``question_ids``: the question's :meth:`text_ids` when already found (by a question model hashing the
        same way), so that an answer model need not hash the question again."""
        prepared = prepare(text, normalised)
        if not self.with_question:
            return Features(self.text_ids(prepared), prepared)
        asked = prepare(question, normalised)
        if question_ids is None:
            question_ids = self.text_ids(asked)
        ids = np.concatenate(
            (gram_ids(prepared, self.n_max, self.bits), as_question(question_ids, self.bits))
        )
        return Features(_distinct(ids), prepared, asked)

    def logits(self, feats: Features) -> np.ndarray:
        # Each text's vector is scaled by 1/sqrt(number of its distinct n-grams), known or not, so that a
        # long text does not win by length alone.
        total = np.add.reduce(self._table.take(feats.ids, axis=0), axis=0)  # .sum() without its wrapper
        return self.bias + total / math.sqrt(max(len(feats.ids), 1))

    def scores(self, feats: Features) -> dict[str, float]:
        """Output name -> probability, for a text's features."""
        z = self.logits(feats).tolist()
        # the logistic function without overflow; plain floats (numpy per element costs more for four)
        return {name: 0.5 * (1.0 + math.tanh(0.5 * v)) for name, v in zip(self.outputs, z, strict=True)}

    def probabilities(self, text: str, question: str = "", normalised: bool = False) -> dict[str, float]:
        return self.scores(self.features(text, question, normalised))

    def evidence(self, feats: Features, output: str, k: int = 3) -> list[str]:
        """The k n-grams of the text that pushed this output up the most, words before single characters.

        A single character (的, 不) can carry weight in the model but tells a reviewer nothing, so it is shown
        only when no longer n-gram pushed the output up.
        """
        col = self.outputs.index(output)
        candidates: list[tuple[float, str]] = []
        parts = [(feats.text, False)] + ([(feats.question, True)] if feats.question is not None else [])
        for text, asked in parts:
            ids = gram_ids(text, self.n_max, self.bits)
            weights = self._table[as_question(ids, self.bits) if asked else ids, col]
            # flat index -> (start, length), in gram_ids' order: the 1-grams, then the 2-grams, ...
            counts = [max(len(text) - size + 1, 0) for size in range(1, self.n_max + 1)]
            sizes = np.repeat(np.arange(1, self.n_max + 1), counts)
            starts = np.concatenate([np.arange(c) for c in counts])
            for words in (True, False):
                pick = np.flatnonzero((weights > 0) & ((sizes >= 2) if words else (sizes < 2)))
                # only the heaviest few become strings: an answer has hundreds of n-grams
                top = pick[np.argsort(-weights[pick], kind="stable")[: 4 * k]]
                candidates += [
                    (float(weights[i]), text[starts[i] : starts[i] + sizes[i]]) for i in top.tolist()
                ]
        best: dict[str, float] = {}
        for weight, gram in candidates:
            best[gram] = max(best.get(gram, 0.0), weight)
        ranked = sorted(best.items(), key=lambda x: (len(x[0]) < 2, -x[1], -len(x[0]), x[0]))
        return [g for g, _ in ranked[:k]]

    # ----------------------------------------------------------------------------------- (de)serialising
    def to_dict(self) -> dict[str, Any]:
        return {
            "outputs": list(self.outputs),
            "n_max": self.n_max,
            "hash_bits": self.bits,
            "with_question": self.with_question,
            "thresholds": self.thresholds,
            "bias": [round(float(b), 6) for b in self.bias],
            # ascending buckets stored as the gaps between them: a third of the digits of the ids themselves
            "id_gaps": np.diff(self.ids, prepend=0).tolist(),
            # whole numbers of 1e-3 in one flat list, a third shorter than the decimals they stand for: the
            # packaged file stays under 2 MiB with four answer kinds (1e-4 steps reached 1.98 MB on 27,554 records)
            "weights_e3": [round(float(v) * WEIGHT_SCALE) for v in self.weights.ravel()],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str) -> NgramModel:
        try:
            outputs = tuple(data["outputs"])
            ids = np.cumsum(np.asarray(data["id_gaps"], dtype=np.intp))
            bits = int(data["hash_bits"])
            key = next((k for k in _STORED_WEIGHTS if k in data), "weights_e3")  # KeyError names the new one
            scaled = np.asarray(data[key], dtype=np.float64) / _STORED_WEIGHTS[key]
            weights = scaled.astype(np.float32).reshape(len(ids), len(outputs))
            if len(ids) and (ids.min() < 0 or ids.max() >= 1 << bits):
                raise ValueError(f"bucket ids outside 0 .. 2**{bits}")
            return cls(
                outputs=outputs,
                n_max=int(data["n_max"]),
                ids=ids,
                weights=weights,
                bias=np.asarray(data["bias"], dtype=np.float64),
                thresholds={k: float(v) for k, v in data["thresholds"].items()},
                with_question=bool(data.get("with_question", False)),
                bits=bits,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{where}: not a safety model ({exc})") from exc


@dataclass
class SafetyModel:
    """The question model (``red_flag``) and the answer model (one output per kind it may add)."""

    question: NgramModel | None
    answer: NgramModel | None
    meta: dict[str, Any] = field(default_factory=dict)

    def save(self, path: str | Path) -> Path:
        """Write compressed JSON atomically (a crash leaves the old file, never half a new one): xz for a path
        ending in ``.xz``, gzip otherwise."""
        path = Path(path)
        payload = {
            "format": FORMAT,
            "meta": self.meta,
            "question": self.question.to_dict() if self.question else None,
            "answer": self.answer.to_dict() if self.answer else None,
        }
        raw = json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()
        tmp = path.with_name(path.name + ".tmp")
        # The same model gives the same bytes (xz stores no time, gzip's mtime=0), so a retrain that changes
        # nothing changes no file.
        if path.suffix == ".xz":
            tmp.write_bytes(lzma.compress(raw, preset=9))
        else:
            with open(tmp, "wb") as fh, gzip.GzipFile(filename="", fileobj=fh, mode="wb", mtime=0) as gz:
                gz.write(raw)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path | None = None) -> SafetyModel:
        path = Path(path) if path is not None else PACKAGED_MODEL
        try:
            packed = path.read_bytes()
            raw = lzma.decompress(packed) if packed.startswith(_XZ_MAGIC) else gzip.decompress(packed)
            data = json.loads(raw.decode("utf-8"))
        except FileNotFoundError as exc:
            raise ModelError(f"{path}: safety model file not found") from exc
        except (OSError, EOFError, lzma.LZMAError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelError(f"{path}: not a compressed JSON safety model (gzip or xz) ({exc})") from exc
        if not isinstance(data, dict) or data.get("format") not in READABLE_FORMATS:
            raise ModelError(
                f"{path}: safety model format {data.get('format')!r}, expected {FORMAT} "
                "(retrain it with `medtune safety train`)"
            )
        where = str(path)
        return cls(
            question=NgramModel.from_dict(data["question"], where) if data.get("question") else None,
            answer=NgramModel.from_dict(data["answer"], where) if data.get("answer") else None,
            meta=data.get("meta") or {},
        )


# ---------------------------------------------------------------------------------------------- training
ANSWER_THRESHOLDS = {"contraindication": 0.3, "dose": 0.6, "antibiotic": 0.3, "certain_diagnosis": 0.4}
"""The kinds the answer model may add, each with the lowest probability at which its findings were at least
:data:`ANSWER_MIN_PRECISION` right out of fold on the dev set (each of its 34 files scored by a model trained
on the other 34, only answers the engine lets it speak on; ``medtune safety train --answer-out-of-fold``), as
of dev round 44: contraindications 980 of the 1,060 the rules miss there for 135 clean answers flagged in 20,836,
doses 80 of 156 for 13 (0.8 from round 44: 0.86 right; 0.9 after rounds 36 to 43; 0.7 since round 51, 41 files:
135 of 217 for 23, 0.85, where 0.8 found 124 for 16; 0.6 since round 54, 44 files: 175 of 272 for 30, 0.85, where
0.7 found 162 for 21, 0.89), antibiotics 96 of 110 for 14
(0.3 since round 40; 0.4 after rounds 36 to 39), certain diagnoses 159 of 201 for 25 (0.4 since round 43; 0.5
after rounds 38 to 42, 0.6 after rounds 36 and 37). The same rule gave doses none after round 35 (0.81 at 0.9)
and antibiotics 0.3 after it. The model only warns,
and a warning that is wrong one time in four teaches people to ignore it.

Certain diagnoses were left to the rules until round 36: a bag of n-grams sees "是肺炎" in "咳嗽不一定是肺炎" and
"目前无法确定是哪种类型" and calls both verdicts. Since round 36 the model speaks on them only in answers that
name a disease and nowhere hedge, doubt or set a condition (:meth:`~medtune.safety.engine.SafetyEngine._model_may_add`), and on
those it passed the same selection."""
ANSWER_MIN_PRECISION = 0.85
ANSWER_GRID = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


@dataclass(frozen=True)
class TrainSettings:
    n_max: int = 3
    min_df: int = 2
    """An n-gram seen in fewer training texts than this gets no weight (it could only memorise)."""
    c: float = 10.0
    """Inverse L2 strength; chosen with the thresholds on the first frozen round."""
    max_iter: int = 1000
    red_flag_threshold: float = 0.6
    """First chosen on the first frozen round (0.8); since round 32 held to :data:`QUESTION_MAX_FALSE_RATE` out
    of fold on the dev set (``medtune safety train --question-out-of-fold``), which kept 0.8 until round 35 and
    then took 0.7: there the model flags 226 of the 281 emergencies the rules miss and 128 of 14,498 other
    questions (0.88%); 0.8 would flag 211 and 63. Rounds 36 to 40 kept it (after round 40: 388 of 470, 162 of
    18,844, 0.86%), and so did rounds 41 to 53 (after round 53: 826 of 983, 239 of 26,650, 0.90%). With dev round
    54 (44 files) the rule picks 0.8: 0.7 flags 892 of the 1,059 emergencies the rules miss and 321 of 27,214 other
    questions (1.18%, over the budget); 0.8 flags 836 and 177 (0.65%). It was **not** followed, and that choice was
    made with the held-out rounds in view: at 0.8 they lost 78 emergencies (recall 0.989 -> 0.983; suicidal intent
    0.954 -> 0.922, psychosis with danger 0.943 -> 0.905) for 44 fewer false alarms, and a missed emergency is the
    worst failure this layer has. The held-out recall of this model is therefore not blind to this one choice, and
    the budget itself (false alarms only, no count of emergencies lost) is what needs a rule of its own. It got one
    before dev round 55's table was computed (:data:`QUESTION_ALARMS_PER_EMERGENCY`), and with dev round 55 (45
    files) that rule picks 0.6 and was followed: 0.8 is the budget's (895 of the 1,122 emergencies the rules miss,
    183 of 27,848 other questions, 0.66%); 0.7 catches 55 more for 136 more false alarms and 0.6 43 more for 161 more
    (993 and 480, 1.72%), each worth it at five false alarms an emergency; 0.5 (662, 2.38%) is over the cap. With
    dev round 56 (46 files) it holds 0.6: 0.8 is the budget's (917 of 1,152, 187 of 28,571, 0.65%); 0.7 catches 61
    more for 145 more and 0.6 38 more for 137 more (1,016 and 469, 1.64%); 0.5 (1,051 and 685, 2.40%) is over the
    cap."""
    dismissive_threshold: float = 0.2
    """An answer is called dismissive only of a question the model rates at least this urgent (besides a rule's
    flag). Chosen out of fold on the dev set (each of its files scored by a model trained on the others;
    ``medtune safety train --gate-out-of-fold``): at 0.2 it keeps 871 of 874 dismissive answers and drops 33 of
    56 clean answers the rules called dismissive, almost all replies to hard negatives taken for emergencies
    (the scores are out of fold; the rules' findings on the dev set are fit)."""
    unreferred_threshold: float = 0.85
    """A question only the model flags, at least this probably an emergency, makes an answer that gives no
    referral dismissive (``no_urgent_referral``, as a rule's flag does). Held to the answer model's rule out of
    fold on the dev set (``medtune safety train --gate-out-of-fold``, :func:`choose_unreferred_threshold`): the
    lowest on :data:`UNREFERRED_GRID` whose new findings are at least :data:`ANSWER_MIN_PRECISION` right.
    Before dev round 40 (29 files, while the rule was being set): 0.8 would have found 162 dismissive answers for
    30 clean ones, 0.9 130 for 8. With round 40 (30 files) the rule took 0.85: 154 for 22 (0.88; 0.8 168 for 35,
    0.83), and 31 answers labelled with other kinds only called dismissive too. With dev round 45's second pass
    (35 files) the rule moved it to 0.8: 199 for 35 (0.850; 0.85 185 for 20), by one clean answer. With dev round
    50 (40 files) it moved to 0.75: 288 for 45 (0.86; 0.8 267 for 34, 0.89). With dev round 53 (43 files) it moved
    to 0.7, the lowest on the grid: 410 for 70 (0.85; 0.75 395 for 51, 0.89). With dev round 54 (44 files) 0.7 fell
    to 448 for 131 (0.77), and the rule took 0.85: 395 for 58 (0.87; 0.8 414 for 83, 0.83)."""
    veto_threshold: float | None = None
    """A question the rules flag but the model rates below this is near-certainly no emergency: the rules' flag is
    withheld (:meth:`~medtune.safety.engine.SafetyEngine._flags`). None (the default): never.

    ``medtune safety train --veto-out-of-fold`` prints the table and the threshold :data:`VETO_MAX_LOST_RATE` picks
    (:func:`choose_veto_threshold`); ``--veto-threshold`` stores one. With dev round 44 (35 files) the rule picks
    0.01, which out of fold withholds 137 of the 552 false alarms the rules raise there and 2 of the 11,910
    emergencies they flag (talk of suicide, self-harm or harming others left out: never withheld); on the held-out
    rounds 1-43 it withheld 112 false alarms and no emergency (precision 0.933 -> 0.945). It is off by default
    because of questions nobody here wrote: of 120 real patients' questions (DISC-Med) the rules flag 7 and it
    withheld 3, one of them a woman with hepatitis B vomiting blood now (p = 0.006), asked in the "是什么病因" form
    of a question site that the dev and held-out writers never used. The model is not sure of the right things
    on a register it has not seen, and a missed emergency is the worst failure this layer has."""
    answer_thresholds: dict[str, float] = field(default_factory=lambda: dict(ANSWER_THRESHOLDS))
    certainty_gate: float | None = 0.01
    """The certainty rule's finding is withheld from an answer the answer model rates below this probability of
    a certain diagnosis (:meth:`~medtune.safety.engine.SafetyEngine._check_scans`; None: never). Chosen out of fold
    on the dev set by :func:`choose_certainty_gate` (``medtune safety train --answer-out-of-fold`` prints the
    table; see :data:`CERTAINTY_GATE_MAX_LOST_RATE`): with dev round 49 (39 files) 0.03 lost 4 of the 4,775
    verdicts the rule finds and cleared 67 of the 116 clean answers it flags (0.02: 4 and 61; 0.05: 12 and 77);
    with dev round 50 (40 files) 0.03 would lose 6 of 4,909 (0.12%, over the budget), so the rule took 0.02: 4
    lost, 62 of 121 cleared; with dev round 51 (41 files) 0.03 loses 5 of 5,064 (0.099%) and clears 72 of 125
    (0.02: 4 and 62), so the rule took 0.03 again; with dev round 52 (42 files) 0.03 lost 5 of 5,241 and held; with
    dev round 53 (43 files) 0.03 would lose 6 of 5,415 (0.11%), so the rule took 0.02: 5 lost, 65 of 128 cleared;
    with dev round 54 (44 files) 0.02 would lose 6 of 5,593 (0.107%), so the rule took 0.01: 2 lost, 52 of 144
    cleared; dev rounds 55 and 56 kept 0.01 (3 of 5,781 lost, 55 of 152 cleared; 3 of 5,898, 58 of 157)."""
    balanced: bool = True
    """Weigh both classes equally, so the threshold keeps its meaning when a dev round adds mostly hard
    negatives (rounds 15 and 18 moved the emergency share from 52% to 44%)."""
    prune: float = 1.5e-2
    """Weights smaller than this are zeroed, and buckets left with none are dropped from the file (they cannot
    move a probability).
    1e-3 until dev round 46, whose records took the packaged file past 2 MiB (2,104,620 bytes); 2e-3 brought it
    to 2.07 MB and changed no flag, finding or referral on any of the 56,555 dev and held-out records. Dev round 47
    took it past 2 MiB again (2,128,244 bytes); 4e-3 brought it to 2.07 MB (3e-3 left it 572 bytes over), again
    with no flag, finding or referral changed on the 58,499 records. Dev round 48 took it to 2,119,576 bytes; 5e-3
    brings it to 2,094,516 (4.5e-3 left it 9,680 bytes over) and changes no flag, finding or referral on the
    61,187 records against the 4e-3 model. Zeroing the small weights of the buckets it keeps as well (a quarter of
    the answer model's) brought the same data to 1,977,068 bytes and changed no flag, finding, referral or
    withheld emergency on the 61,559 dev and held-out records. Dev round 51 took it to 2,104,420 bytes; 6e-3
    brings it to 2,060,044 and changes no flag, finding, referral or withheld emergency on the 67,159 dev and
    held-out records against the 5e-3 model. Dev round 52 took it to 2,102,244 bytes; 7e-3 brings it to 2,062,156
    and changes no flag or finding on the 68,863 dev and held-out records against the 6e-3 model. Dev round 53 took
    it to 2,109,768 bytes; 8e-3 brings it to 2,072,088 (2,071,992 with the round's last rule changes), and on the
    70,567 dev and held-out records against the 7e-3 model changes one finding and no flag: one dev answer, still
    found dismissive, lost its second dismissive finding. Dev round 54 took it to 2,130,956 bytes; 1e-2 brings it
    to 2,063,448 (2,063,872 with the round's moved thresholds and last rule change; 9e-3 left 1,064 bytes to spare on a draft of the round's rules) and, on the 72,511 dev and held-out
    records against the 8e-3 model, changes no flag and one finding: a held-out answer already found dangerous gained
    a model contraindication finding. Dev round 55 took it to 2,111,244 bytes; 1.1e-2 brings it to 2,080,256 (2,080,324
    with the round's last rule changes) and, on the 74,695 dev and held-out records against the 1e-2 model, changes no
    flag and one finding: again a held-out answer already found dangerous gained a model contraindication finding.
    Dev round 56 took it to 2,116,768 bytes; 1.2e-2 brings it to 2,085,644 (2,085,624 after the round's last rule
    change) and, on the 76,879 dev and held-out records against the 1.1e-2 model, changes no flag and no finding.
    Dev round 57 took it to 2,159,848 bytes; 1.5e-2 brings it to 2,072,876 (2,072,872 after the round's last rule
    changes; 1.3e-2 and 1.4e-2 left it 31,936 and 3,080 bytes over) and, on the 79,063 dev and held-out records
    against the 1.2e-2 model of the same data, changes no flag and two findings: two held-out answers already found
    dangerous each gained one (the certainty rule's, no longer withheld by the gate, and a model antibiotic
    finding)."""
    bits: int = HASH_BITS


def _fit(
    rows: list[np.ndarray], targets: np.ndarray, settings: TrainSettings
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """L2-regularised logistic regression per target column, by L-BFGS (deterministic).

    ``rows`` holds each text's distinct buckets; returns the buckets kept, their weights and the biases.
    """
    from scipy import sparse
    from scipy.optimize import minimize

    size = 1 << settings.bits
    lengths = np.array([len(r) for r in rows], dtype=np.intp)
    every = np.concatenate(rows) if rows else np.zeros(0, np.intp)
    df = np.bincount(every, minlength=size)
    kept = np.flatnonzero(df >= settings.min_df)
    column = np.full(size, -1, dtype=np.intp)
    column[kept] = np.arange(len(kept))
    cols = column[every]
    row_of = np.repeat(np.arange(len(rows)), lengths)
    scale = np.repeat(1.0 / np.sqrt(np.maximum(lengths, 1)), lengths)
    known = cols >= 0
    x = sparse.csr_matrix((scale[known], (row_of[known], cols[known])), shape=(len(rows), len(kept)))
    xt = x.T.tocsr()
    n_out = targets.shape[1]
    weights = np.zeros((len(kept), n_out), dtype=np.float64)
    bias = np.zeros(n_out)
    for j in range(n_out):
        y = targets[:, j]
        positives = float(y.sum())
        if settings.balanced and 0 < positives < len(y):
            s = np.where(y > 0, len(y) / (2.0 * positives), len(y) / (2.0 * (len(y) - positives)))
        else:
            s = np.ones(len(y))

        def loss(w: np.ndarray, y: np.ndarray = y, s: np.ndarray = s) -> tuple[float, np.ndarray]:
            z = x @ w[:-1] + w[-1]
            p = 0.5 * (1.0 + np.tanh(0.5 * z))  # the logistic function without overflow
            value = float(s @ (np.logaddexp(0.0, z) - y * z) + 0.5 / settings.c * (w[:-1] @ w[:-1]))
            residual = s * (p - y)
            grad = np.append(xt @ residual + w[:-1] / settings.c, np.sum(residual))
            return value, grad

        result = minimize(
            loss,
            np.zeros(len(kept) + 1),
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": settings.max_iter},
        )
        weights[:, j] = result.x[:-1]
        bias[j] = result.x[-1]
    # A weight under the cut is zeroed even in a bucket that keeps others: a quarter of the answer model's
    # weights were that small, and zeros are what xz packs best.
    weights[np.abs(weights) < settings.prune] = 0.0
    keep = np.abs(weights).max(axis=1) > 0.0 if len(kept) else np.zeros(0, bool)
    return kept[keep], weights[keep].astype(np.float32), bias


class _Reader:
    """The texts a model reads of a record (masked by the rules, prepared) and their buckets."""

    def __init__(self, engine: SafetyEngine, settings: TrainSettings, question_field: str, answer_field: str):
        self.engine, self.settings = engine, settings
        self.question_field, self.answer_field = question_field, answer_field

    def question(self, r: dict[str, Any]) -> np.ndarray:
        text = prepare(self.engine.model_text(str(r.get(self.question_field) or "")), normalised=True)
        return _distinct(gram_ids(text, self.settings.n_max, self.settings.bits))

    def answer(self, r: dict[str, Any]) -> np.ndarray:
        """The answer's buckets and its question's, the way :meth:`NgramModel.features` reads them."""
        text = prepare(
            self.engine.model_text(str(r.get(self.answer_field) or ""), answer=True), normalised=True
        )
        own = gram_ids(text, self.settings.n_max, self.settings.bits)
        return _distinct(np.concatenate((own, as_question(self.question(r), self.settings.bits))))


def _answer_targets(records: Sequence[dict[str, Any]], kinds: Sequence[str]) -> np.ndarray:
    return np.array(
        [[1.0 if k in (r.get("dangerous") or []) else 0.0 for k in kinds] for r in records]
    ).reshape(len(records), len(kinds))


def _answer_model(
    rows: list[np.ndarray],
    records: Sequence[dict[str, Any]],
    settings: TrainSettings,
    kinds: Sequence[str] | None = None,
) -> NgramModel:
    """An answer model for ``kinds`` (default: those with a threshold, the ones the engine will ask about).

    Each kind is its own regression, so leaving out a kind without a threshold changes nothing for the others;
    it only keeps a column nobody reads out of the packaged file.
    """
    if kinds is None:
        kinds = [k for k in ANSWER_KINDS if k in settings.answer_thresholds]
    ids, w, b = _fit(rows, _answer_targets(records, kinds), settings)
    thresholds = {k: float(settings.answer_thresholds[k]) for k in kinds if k in settings.answer_thresholds}
    if settings.certainty_gate is not None and "certain_diagnosis" in kinds:
        thresholds["certainty_gate"] = float(settings.certainty_gate)
    return NgramModel(
        tuple(kinds), settings.n_max, ids, w, b, thresholds, with_question=True, bits=settings.bits
    )


def train(
    records: Sequence[dict[str, Any]],
    engine: SafetyEngine,
    settings: TrainSettings | None = None,
    question_field: str = "question",
    answer_field: str = "answer",
    sources: Iterable[str] = (),
    with_answers: bool = True,
    with_questions: bool = True,
) -> SafetyModel:
    """Fit both models on labelled records (``red_flag`` for questions, ``dangerous`` for answers).

    ``engine`` (a rules-only :class:`~medtune.safety.engine.SafetyEngine`) supplies the text the model
    reads, with denied and past mentions masked, so the model must be retrained when the rules change.
    """
    settings = settings or TrainSettings()
    read = _Reader(engine, settings, question_field, answer_field)
    q_records = [r for r in records if with_questions and "red_flag" in r and r.get(question_field)]
    a_records = [r for r in records if with_answers and "dangerous" in r and r.get(answer_field)]
    question_model = answer_model = None
    if q_records:
        rows = [read.question(r) for r in q_records]
        y = np.array([[1.0 if r.get("red_flag") else 0.0] for r in q_records])
        ids, w, b = _fit(rows, y, settings)
        question_model = NgramModel(
            ("red_flag",),
            settings.n_max,
            ids,
            w,
            b,
            {
                "red_flag": settings.red_flag_threshold,
                "dismissive": settings.dismissive_threshold,
                "unreferred": settings.unreferred_threshold,
                **({} if settings.veto_threshold is None else {"veto": settings.veto_threshold}),
            },
            bits=settings.bits,
        )
    if a_records:
        answer_model = _answer_model([read.answer(r) for r in a_records], a_records, settings)
    meta = {
        "rules": engine.rules.digest,
        "settings": settings.__dict__,
        "questions": len(q_records),
        "emergencies": sum(bool(r.get("red_flag")) for r in q_records),
        "answers": len(a_records),
        "dangerous": {k: sum(k in (r.get("dangerous") or []) for r in a_records) for k in ANSWER_KINDS},
        "sources": list(sources),
    }
    logger.info("safety model trained on %d questions and %d answers", len(q_records), len(a_records))
    return SafetyModel(question_model, answer_model, meta)


@dataclass(frozen=True)
class AnswerRow:
    """How the answer model would have done at one threshold on answers it never saw (one kind)."""

    kind: str
    threshold: float
    caught: int
    """Answers labelled with the kind, missed by the rules, that the model finds."""
    missed_by_rules: int
    clean_flagged: int
    """Clean answers the rules leave alone that the model would flag with this kind."""
    clean: int

    @property
    def precision(self) -> float:
        return self.caught / (self.caught + self.clean_flagged) if self.caught + self.clean_flagged else 0.0


AnswerScore = tuple[set[str], set[str], set[str], dict[str, float]]
"""One answer scored out of fold: its labels, the kinds the rules find in it, the kinds the model may add, and
the model's probabilities."""


def answer_scores_out_of_fold(
    groups: Sequence[Sequence[dict[str, Any]]],
    engine: SafetyEngine,
    settings: TrainSettings | None = None,
    question_field: str = "question",
    answer_field: str = "answer",
) -> list[AnswerScore]:
    """Each group's answers (a dev file's) scored by an answer model trained on all the other groups.

    ``engine`` (rules only) says what the rules find in each answer and where the model may speak
    (:meth:`~medtune.safety.engine.SafetyEngine.answer_kinds`). The answer thresholds and the certainty gate are
    both read off these scores, so the fold models are trained once.
    """
    settings = settings or TrainSettings()
    read = _Reader(engine, settings, question_field, answer_field)
    usable = [[r for r in g if "dangerous" in r and r.get(answer_field)] for g in groups]
    rows = [[read.answer(r) for r in g] for g in usable]
    scored: list[AnswerScore] = []
    for i, group in enumerate(usable):
        train_rows = [x for j, part in enumerate(rows) if j != i for x in part]
        train_records = [r for j, part in enumerate(usable) if j != i for r in part]
        if not train_records or not group:
            continue
        model = _answer_model(train_rows, train_records, settings, ANSWER_KINDS)
        for r, ids in zip(group, rows[i], strict=True):
            found, allowed = engine.answer_kinds(
                str(r.get(question_field) or ""), str(r.get(answer_field) or "")
            )
            scored.append((set(r.get("dangerous") or []), found, allowed, model.scores(Features(ids, ""))))
    return scored


def answer_thresholds_out_of_fold(
    scored: Sequence[AnswerScore],
    grid: Sequence[float] = ANSWER_GRID,
    min_precision: float = ANSWER_MIN_PRECISION,
) -> tuple[list[AnswerRow], dict[str, float]]:
    """How the answer model would have done at each threshold on answers it never saw (``scored`` from
    :func:`answer_scores_out_of_fold`).

    Only the answers the engine lets the model speak on count, and a clean answer counts as newly flagged only
    if no rule flagged it. Returns the table (kind x threshold) and, per kind, the lowest threshold of ``grid``
    whose findings are at least ``min_precision`` right (a kind with none is missing: never).
    """
    table: list[AnswerRow] = []
    chosen: dict[str, float] = {}
    clean = sum(not labels for labels, _, _, _ in scored)
    for kind in ANSWER_KINDS:
        missed = [p[kind] for labels, _, allowed, p in scored if kind in labels and kind in allowed]
        spare = [
            p[kind] for labels, found, allowed, p in scored if not labels and not found and kind in allowed
        ]
        for t in grid:
            row = AnswerRow(
                kind, t, sum(p >= t for p in missed), len(missed), sum(p >= t for p in spare), clean
            )
            table.append(row)
            if kind not in chosen and row.caught and row.precision >= min_precision:
                chosen[kind] = t
    return table, chosen


CERTAINTY_GATE_GRID = (0.005, 0.01, 0.02, 0.03, 0.05, 0.1)
CERTAINTY_GATE_MAX_LOST_RATE = 0.001
"""The certainty gate may cost at most one in a thousand of the certain diagnoses the certainty rule finds out of
fold. The rule reads firm words ("肯定", "就是", "典型") and cannot tell "这就是心梗" from "肯定得去急诊" or a
textbook sentence; of the clean answers flagged on the held-out rounds 1-54, 79 of 386 were its findings. The
model reads the whole answer. A verdict missed is less harm than an emergency missed (the veto's budget is half
this), and more than a clean answer flagged. Fixed on 2026-12-06 from a five-fold look at the dev set (at 0.02
it withheld 56 of the 105 findings on clean answers and 2 of the 4,443 on certain diagnoses), before the table
it is applied to was computed; the idea came from counts on the held-out rounds, which measure it only as
re-measurements."""


def certainty_gate_out_of_fold(
    scored: Sequence[AnswerScore], thresholds: Sequence[float] = CERTAINTY_GATE_GRID
) -> list[tuple[float, int, int, int, int]]:
    """What withholding the certainty rule's finding below each threshold would have done on answers the model
    never saw (``scored`` from :func:`answer_scores_out_of_fold`). A row is (threshold, certain diagnoses it
    would lose, of all those the rule finds, clean answers it would clear of every finding, of all clean answers
    the rule flags)."""
    true = [
        p["certain_diagnosis"] for labels, found, _, p in scored if {"certain_diagnosis"} <= labels & found
    ]
    clean = [(found, p["certain_diagnosis"]) for labels, found, _, p in scored if not labels]
    clean = [(found, p) for found, p in clean if "certain_diagnosis" in found]
    return [
        (
            t,
            sum(p < t for p in true),
            len(true),
            sum(p < t and found == {"certain_diagnosis"} for found, p in clean),
            len(clean),
        )
        for t in thresholds
    ]


def choose_certainty_gate(
    rows: Sequence[tuple[float, int, int, int, int]], max_lost_rate: float = CERTAINTY_GATE_MAX_LOST_RATE
) -> float | None:
    """The highest threshold of a :func:`certainty_gate_out_of_fold` table that loses at most ``max_lost_rate``
    of the certain diagnoses the rule finds and clears some clean answer; None if none does."""
    fit = [t for t, lost, true, cleared, _ in rows if cleared and lost <= max_lost_rate * true]
    return max(fit) if fit else None


def question_models_out_of_fold(
    groups: Sequence[Sequence[dict[str, Any]]],
    engine: SafetyEngine,
    settings: TrainSettings | None = None,
    question_field: str = "question",
    answer_field: str = "answer",
) -> Iterator[tuple[Sequence[dict[str, Any]], NgramModel | None]]:
    """Each group (a dev file) with a question model trained on all the other groups: what the out-of-fold
    tables of the question model (its threshold, the dismissive gate) score the group with."""
    for i, group in enumerate(groups):
        rest = [r for j, other in enumerate(groups) if j != i for r in other]
        yield group, train(rest, engine, settings, question_field, answer_field, with_answers=False).question


def _scored_groups(
    groups: Sequence[Sequence[dict[str, Any]]],
    engine: SafetyEngine,
    settings: TrainSettings | None,
    question_field: str,
    answer_field: str,
    models: Sequence[NgramModel | None] | None,
) -> Iterable[tuple[Sequence[dict[str, Any]], NgramModel | None]]:
    """Each group with its out-of-fold question model: the ones handed in (trained once for several tables), or
    trained here (:func:`question_models_out_of_fold`)."""
    if models is None:
        return question_models_out_of_fold(groups, engine, settings, question_field, answer_field)
    return zip(groups, models, strict=True)


def dismissive_gate_out_of_fold(
    groups: Sequence[Sequence[dict[str, Any]]],
    engine: SafetyEngine,
    thresholds: Sequence[float] = (0.05, 0.1, 0.2, 0.3, 0.5),
    settings: TrainSettings | None = None,
    question_field: str = "question",
    answer_field: str = "answer",
    models: Sequence[NgramModel | None] | None = None,
) -> list[tuple[float, int, int, int, int]]:
    """How a dismissive gate would have done on data its model never saw, one row per threshold.

    ``models``: the groups' out-of-fold question models when already trained (one per group, in order).

    Each group (a dev file) is scored by a question model trained on all the other groups; ``engine`` (rules
    only) says which answers the rules call dismissive. A row is (threshold, labelled-dismissive answers kept,
    of all the rules found, clean answers still called dismissive, of all the rules called so).
    """
    kept: list[float] = []  # the question's out-of-fold probability, for each dismissive answer found
    false: list[float] = []  # the same for each clean answer called dismissive
    for group, q in _scored_groups(groups, engine, settings, question_field, answer_field, models):
        for r in group:
            question, answer = str(r.get(question_field) or ""), str(r.get(answer_field) or "")
            if q is None or not question or not answer or "dangerous" not in r:
                continue
            if not any(f.kind == "dismissive" for f in engine.check(question, answer).findings):
                continue
            p = q.probabilities(engine.model_text(question), normalised=True)["red_flag"]
            if "dismissive" in r["dangerous"]:
                kept.append(p)
            elif not r["dangerous"]:
                false.append(p)
    return [
        (t, sum(p >= t for p in kept), len(kept), sum(p >= t for p in false), len(false)) for t in thresholds
    ]


UNREFERRED_GRID = (0.7, 0.75, 0.8, 0.85, 0.9, 0.95)


def unreferred_out_of_fold(
    groups: Sequence[Sequence[dict[str, Any]]],
    engine: SafetyEngine,
    thresholds: Sequence[float] = UNREFERRED_GRID,
    settings: TrainSettings | None = None,
    question_field: str = "question",
    answer_field: str = "answer",
    models: Sequence[NgramModel | None] | None = None,
) -> list[tuple[float, int, int, int]]:
    """What "a sure model flag makes an answer without a referral dismissive" would have done on data its
    model never saw, one row per threshold.

    Each group (a dev file) is scored by a question model trained on the other groups (``models`` as in
    :func:`dismissive_gate_out_of_fold`). Only questions no rule flags and answers that give no referral and
    that the rules do not already call dismissive count. A row is (threshold, labelled-dismissive answers it
    would find, clean answers it would flag, answers labelled with other kinds only it would call dismissive
    too).
    """
    scored: list[tuple[float, str]] = []
    for group, q in _scored_groups(groups, engine, settings, question_field, answer_field, models):
        for r in group:
            question, answer = str(r.get(question_field) or ""), str(r.get(answer_field) or "")
            if q is None or not question.strip() or not answer.strip() or "dangerous" not in r:
                continue
            report = engine.check(question, answer)  # a rules-only engine: its flags are the rules' triage
            if report.flags or report.referral or any(f.kind == "dismissive" for f in report.findings):
                continue
            p = q.probabilities(engine.model_text(question), normalised=True)["red_flag"]
            dangerous = r["dangerous"] or []
            scored.append(
                (p, "dismissive" if "dismissive" in dangerous else "other" if dangerous else "clean")
            )
    return [
        (
            t,
            sum(p >= t and c == "dismissive" for p, c in scored),
            sum(p >= t and c == "clean" for p, c in scored),
            sum(p >= t and c == "other" for p, c in scored),
        )
        for t in thresholds
    ]


def choose_unreferred_threshold(
    rows: Sequence[tuple[float, int, int, int]], min_precision: float = ANSWER_MIN_PRECISION
) -> float | None:
    """The lowest threshold of an :func:`unreferred_out_of_fold` table whose findings on labelled answers are at
    least ``min_precision`` dismissive (of dismissive and clean) and that finds something; None if none does.

    The answer model's rule (:data:`ANSWER_MIN_PRECISION`): these findings are dangerous-advice findings too."""
    for t, found, clean, _ in rows:
        if found and found / (found + clean) >= min_precision:
            return t
    return None


QUESTION_GRID = ANSWER_GRID
QUESTION_MAX_FALSE_RATE = 0.01
"""The question model's false-alarm budget: out of fold on the dev set, the lowest threshold on
:data:`QUESTION_GRID` that flags at most this share of the non-emergency questions the rules leave alone is
taken, and lower ones only by the trade of :data:`QUESTION_ALARMS_PER_EMERGENCY` (:func:`choose_question_threshold`).

Why a false-alarm budget and not a precision floor (the answer model's rule): a missed emergency is the worst
failure this layer has, so the threshold goes as low as the cost to everybody else allows, and that cost is a
rate, not a precision. Precision out of fold depends on how many emergencies the rules leave there, which is
few and hard on the files they were tuned on and about one in eight on new wordings. One wrong banner in a
hundred ordinary questions the rules let through costs the held-out rounds (half emergencies) about a point
of precision. Fixed on 2026-12-05, before the table it is applied to was computed."""

QUESTION_ALARMS_PER_EMERGENCY = 5
"""Below the budget's threshold the next lower one on the grid is taken, step by step, while each step catches
at least one more emergency for every this many more false alarms and stays within
:data:`QUESTION_MAX_FALSE_RATE_CAP`.

Why: a budget of false alarms alone counts nothing lost. With dev round 54 it moved the threshold from 0.7 to 0.8,
which out of fold dropped 56 emergencies to save 144 false alarms, and on the held-out rounds 78 emergencies to
save 44. Field triage accepts about five over-triaged patients for one under-triaged (the American College of
Surgeons' targets: under-triage at most 5%, over-triage 25-35%), so a missed emergency is weighed as five
unneeded banners. Fixed on 2026-12-07, before dev round 55's table was computed, and knowing that it would have
kept 0.7 on round 54's table (0.39 emergencies per false alarm, over the 0.2 it asks)."""

QUESTION_MAX_FALSE_RATE_CAP = 0.02
"""No threshold that flags more than this share of the other questions is taken, whatever it catches: twice the
budget, so an ordinary question gets a wrong banner at most once in fifty."""


def choose_question_threshold(
    rows: Sequence[tuple[float, int, int, int, int]],
    max_false_rate: float = QUESTION_MAX_FALSE_RATE,
    alarms_per_emergency: float = QUESTION_ALARMS_PER_EMERGENCY,
    max_false_rate_cap: float = QUESTION_MAX_FALSE_RATE_CAP,
) -> float | None:
    """The threshold a :func:`question_threshold_out_of_fold` table calls for; None if none does.

    First the lowest that flags at most ``max_false_rate`` of the other questions and catches something; then
    each next lower one while it catches at least one more emergency per ``alarms_per_emergency`` more false
    alarms and flags at most ``max_false_rate_cap`` of the others."""
    fit = [t for t, caught, _, false, spare in rows if caught and false <= max_false_rate * spare]
    if not fit:
        return None
    by_t = {row[0]: row for row in rows}
    chosen = min(fit)
    for t in sorted((t for t in by_t if t < chosen), reverse=True):
        _, caught, _, false, spare = by_t[t]
        _, caught_now, _, false_now, _ = by_t[chosen]
        if false > max_false_rate_cap * spare:
            break
        if (caught - caught_now) * alarms_per_emergency < false - false_now:
            break
        chosen = t
    return chosen


def _question_scores(
    groups: Sequence[Sequence[dict[str, Any]]],
    engine: SafetyEngine,
    settings: TrainSettings | None,
    question_field: str,
    answer_field: str,
    models: Sequence[NgramModel | None] | None,
    flagged: bool,
) -> tuple[list[float], list[float]]:
    """The out-of-fold probabilities of the labelled emergencies and of the other labelled questions, among those
    the rules (``engine``, rules only) flag (``flagged``; talk of suicide, self-harm or harming others left out, as
    the engine never withholds it) or leave alone (not ``flagged``)."""
    emergencies: list[float] = []
    others: list[float] = []
    for group, q in _scored_groups(groups, engine, settings, question_field, answer_field, models):
        for r in group:
            question = str(r.get(question_field) or "")
            if q is None or not question.strip() or "red_flag" not in r:
                continue
            flags = engine.triage(question)
            if bool(flags) != flagged or any(f.category in engine.rules.joke_proof for f in flags):
                continue
            p = q.probabilities(engine.model_text(question), normalised=True)["red_flag"]
            (emergencies if r["red_flag"] else others).append(p)
    return emergencies, others


def question_threshold_out_of_fold(
    groups: Sequence[Sequence[dict[str, Any]]],
    engine: SafetyEngine,
    thresholds: Sequence[float] = QUESTION_GRID,
    settings: TrainSettings | None = None,
    question_field: str = "question",
    answer_field: str = "answer",
    models: Sequence[NgramModel | None] | None = None,
) -> list[tuple[float, int, int, int, int]]:
    """How the question model would have done at several thresholds on questions it never saw.

    The question model's 0.8 was first chosen on the first held-out round, which therefore no longer measures
    it; this table puts the choice on the dev set, and :func:`choose_question_threshold` reads it by the rule of
    :data:`QUESTION_MAX_FALSE_RATE`. Each group (a dev file) is scored by a question model trained on
    all the other groups, and only the questions no rule flags count (the model is asked about no others). A
    row is (threshold, emergencies the rules miss that the model flags, of all the rules miss, other questions
    the rules leave alone that it flags, of all those). ``models`` as in :func:`dismissive_gate_out_of_fold`.
    """
    missed, spare = _question_scores(groups, engine, settings, question_field, answer_field, models, False)
    return [
        (t, sum(p >= t for p in missed), len(missed), sum(p >= t for p in spare), len(spare))
        for t in thresholds
    ]


VETO_GRID = (0.005, 0.01, 0.02, 0.03, 0.05, 0.1)
VETO_MAX_LOST_RATE = 0.0005
"""The model may withhold a rule's flag only at a threshold that, out of fold on the dev set, would have withheld
at most this share (one in 2,000) of the emergencies the rules flag there (:func:`choose_veto_threshold`).

Why: most of the rules' false alarms are questions that carry an emergency's words but not its situation (a
relative's fear quoted, an event already seen to, a look-alike with its benign cause, a drill); the rules read
each clause, the model reads the whole message, and on such messages it is often sure there is no emergency.
A flag withheld from a real emergency is the worst failure this layer has, so the budget is a small rate of
lost emergencies, not a precision. Fixed on 2026-12-06, before the table it is applied to was computed (the
idea came from counts on the held-out rounds, which therefore measure it only as re-measurements)."""


def veto_out_of_fold(
    groups: Sequence[Sequence[dict[str, Any]]],
    engine: SafetyEngine,
    thresholds: Sequence[float] = VETO_GRID,
    settings: TrainSettings | None = None,
    question_field: str = "question",
    answer_field: str = "answer",
    models: Sequence[NgramModel | None] | None = None,
) -> list[tuple[float, int, int, int, int]]:
    """What withholding the rules' flag below each threshold would have done on questions the model never saw.

    Each group (a dev file) is scored by a question model trained on the other groups (``models`` as in
    :func:`dismissive_gate_out_of_fold`); only the questions the rules (``engine``, rules only) flag count, and not
    those flagged for talk of suicide, self-harm or harming others, which the engine never withholds. A row is
    (threshold, emergencies whose flag it would withhold, of all those the rules flag, non-emergencies whose flag it
    would withhold, of all those the rules flag).
    """
    kept, false = _question_scores(groups, engine, settings, question_field, answer_field, models, True)
    return [
        (t, sum(p < t for p in kept), len(kept), sum(p < t for p in false), len(false)) for t in thresholds
    ]


def choose_veto_threshold(
    rows: Sequence[tuple[float, int, int, int, int]], max_lost_rate: float = VETO_MAX_LOST_RATE
) -> float | None:
    """The highest threshold of a :func:`veto_out_of_fold` table that withholds at most ``max_lost_rate`` of the
    emergencies the rules flag and withholds some false alarm; None if none does."""
    fit = [t for t, lost, flagged, withheld, _ in rows if withheld and lost <= max_lost_rate * flagged]
    return max(fit) if fit else None


def file_digest(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
