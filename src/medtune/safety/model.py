"""A learned layer under the rules: character n-gram logistic regression over labelled safety records.

The rules cover the wordings somebody thought of; patients find others. This model reads the same
normalised text (OpenCC simplified, temperatures as digits) as bags of character 1- to 3-grams and gives
the probability that a question is an emergency and, per kind, that an answer carries dangerous advice.
The engine consults it only where the rules found nothing, and it can only **add** a flag or a finding,
never remove one; its flags name the n-grams that weighed most, so a reviewer sees why it fired.

It is trained on the development set only (``data/safety/labelled*.jsonl``), with a
fixed regulariser and solver, so ``medtune safety train`` reproduces the packaged file bit for bit. Its
decision thresholds were chosen on the first frozen round (``frozen.jsonl``), which therefore no longer
measures it; the later frozen rounds do (``data/safety/README.md``).

Text is read up to :data:`MAX_MODEL_CHARS` (head and tail), which bounds the cost of a 1 MB input.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medtune.safety.rules import normalize

if TYPE_CHECKING:  # the engine imports this module
    from medtune.safety.engine import SafetyEngine

logger = logging.getLogger(__name__)

FORMAT = 1
PACKAGED_MODEL = Path(__file__).with_name("triage_model.json.gz")
MAX_MODEL_CHARS = 4_000
# The answer kinds a model may add. ``dismissive`` is left to the rules: it depends on the triage of the
# question, which the question model already extends.
ANSWER_KINDS = ("contraindication", "dose", "antibiotic", "certain_diagnosis")
QUESTION_PREFIX = "\x01"
"""Marks question n-grams among an answer's features: the population (孩子6岁, 孕32周) is often only there."""

_DIGITS = re.compile(r"\d+(?:\.\d+)?")
_SPACES = re.compile(r"\s+")


class ModelError(ValueError):
    """A model file that cannot be used (missing, wrong format, broken JSON)."""


def prepare(text: str, normalised: bool = False) -> str:
    """The text the model reads: normalised, lower-case, every number one symbol, spaces collapsed."""
    if len(text) > MAX_MODEL_CHARS:
        text = text[: MAX_MODEL_CHARS // 2] + "\n" + text[-MAX_MODEL_CHARS // 2 :]
    if not normalised:
        text = normalize(text)
    return _SPACES.sub(" ", _DIGITS.sub("0", text.lower()))


def grams(text: str, n_max: int, prefix: str = "") -> set[str]:
    """Distinct character n-grams of a prepared text, n = 1 .. n_max."""
    out: set[str] = set()
    for n in range(1, n_max + 1):
        out.update(prefix + text[i : i + n] for i in range(len(text) - n + 1))
    return out


@dataclass
class NgramModel:
    """Several logistic regressions over one n-gram vocabulary (one column of weights per output)."""

    outputs: tuple[str, ...]
    n_max: int
    vocab: dict[str, int]
    weights: np.ndarray
    """(len(vocab), len(outputs)) float32."""
    bias: np.ndarray
    thresholds: dict[str, float]
    with_question: bool = False

    def features(self, text: str, question: str = "", normalised: bool = False) -> set[str]:
        feats = grams(prepare(text, normalised), self.n_max)
        if self.with_question and question:
            feats |= grams(prepare(question, normalised), self.n_max, QUESTION_PREFIX)
        return feats

    def logits(self, feats: set[str]) -> np.ndarray:
        # Each text's vector is scaled by 1/sqrt(number of its distinct n-grams), known or not, so that a
        # long text does not win by length alone and the vocabulary need not be stored to score it.
        index = [i for i in map(self.vocab.get, feats) if i is not None]
        total = self.weights[index].sum(axis=0, dtype=np.float64) if index else np.zeros(len(self.outputs))
        return self.bias + total / math.sqrt(max(len(feats), 1))

    def scores(self, feats: set[str]) -> dict[str, float]:
        """Output name -> probability, for a text's features."""
        z = self.logits(feats)
        return {name: float(1.0 / (1.0 + math.exp(-v))) for name, v in zip(self.outputs, z, strict=True)}

    def probabilities(self, text: str, question: str = "", normalised: bool = False) -> dict[str, float]:
        return self.scores(self.features(text, question, normalised))

    def evidence(self, feats: set[str], output: str, k: int = 3) -> list[str]:
        """The k n-grams of the text that pushed this output up the most, words before single characters.

        A single character (的, 不) can carry weight in the model but tells a reviewer nothing, so it is shown
        only when no longer n-gram pushed the output up.
        """
        col = self.outputs.index(output)
        scored = [(float(self.weights[i, col]), g) for g in feats if (i := self.vocab.get(g)) is not None]
        scored = [(w, g.removeprefix(QUESTION_PREFIX)) for w, g in scored if w > 0]
        scored.sort(key=lambda x: (len(x[1]) < 2, -x[0], -len(x[1]), x[1]))
        return [g for _, g in scored[:k]]

    # ----------------------------------------------------------------------------------- (de)serialising
    def to_dict(self) -> dict[str, Any]:
        grams_in_order = sorted(self.vocab, key=self.vocab.__getitem__)
        return {
            "outputs": list(self.outputs),
            "n_max": self.n_max,
            "with_question": self.with_question,
            "thresholds": self.thresholds,
            "bias": [round(float(b), 6) for b in self.bias],
            "grams": grams_in_order,
            "weights": [[round(float(v), 5) for v in row] for row in self.weights],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str) -> NgramModel:
        try:
            outputs = tuple(data["outputs"])
            gram_list = data["grams"]
            weights = np.asarray(data["weights"], dtype=np.float32).reshape(len(gram_list), len(outputs))
            return cls(
                outputs=outputs,
                n_max=int(data["n_max"]),
                vocab={g: i for i, g in enumerate(gram_list)},
                weights=weights,
                bias=np.asarray(data["bias"], dtype=np.float64),
                thresholds={k: float(v) for k, v in data["thresholds"].items()},
                with_question=bool(data.get("with_question", False)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{where}: not a safety model ({exc})") from exc


@dataclass
class SafetyModel:
    """The question model (``red_flag``) and the answer model (one output per kind in :data:`ANSWER_KINDS`)."""

    question: NgramModel | None
    answer: NgramModel | None
    meta: dict[str, Any] = field(default_factory=dict)

    def save(self, path: str | Path) -> Path:
        """Write gzip-compressed JSON atomically (a crash leaves the old file, never half a new one)."""
        path = Path(path)
        payload = {
            "format": FORMAT,
            "meta": self.meta,
            "question": self.question.to_dict() if self.question else None,
            "answer": self.answer.to_dict() if self.answer else None,
        }
        raw = json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()
        tmp = path.with_name(path.name + ".tmp")
        # mtime=0: the same model gives the same bytes, so a retrain that changes nothing changes no file.
        with open(tmp, "wb") as fh, gzip.GzipFile(filename="", fileobj=fh, mode="wb", mtime=0) as gz:
            gz.write(raw)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path | None = None) -> SafetyModel:
        path = Path(path) if path is not None else PACKAGED_MODEL
        try:
            with gzip.open(path, "rb") as fh:
                data = json.loads(fh.read().decode("utf-8"))
        except FileNotFoundError as exc:
            raise ModelError(f"{path}: safety model file not found") from exc
        except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelError(f"{path}: not a gzip-compressed JSON safety model ({exc})") from exc
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ModelError(f"{path}: safety model format {data.get('format')!r}, expected {FORMAT}")
        where = str(path)
        return cls(
            question=NgramModel.from_dict(data["question"], where) if data.get("question") else None,
            answer=NgramModel.from_dict(data["answer"], where) if data.get("answer") else None,
            meta=data.get("meta") or {},
        )


# ---------------------------------------------------------------------------------------------- training
@dataclass(frozen=True)
class TrainSettings:
    n_max: int = 3
    min_df: int = 2
    """An n-gram seen in fewer training texts than this gets no weight (it could only memorise)."""
    c: float = 10.0
    """Inverse L2 strength; chosen with the thresholds on the first frozen round."""
    max_iter: int = 1000
    red_flag_threshold: float = 0.8
    dismissive_threshold: float = 0.2
    """An answer is called dismissive only of a question the model rates at least this urgent (besides a rule's
    flag). Chosen out of fold on the dev set (each of its files scored by a model trained on the others;
    ``medtune safety train --gate-out-of-fold``): at 0.2 it keeps 871 of 874 dismissive answers and drops 33 of
    56 clean answers the rules called dismissive, almost all replies to hard negatives taken for emergencies
    (the scores are out of fold; the rules' findings on the dev set are fit)."""
    answer_threshold: float = 0.5
    balanced: bool = True
    """Weigh both classes equally, so the threshold keeps its meaning when a dev round adds mostly hard
    negatives (rounds 15 and 18 moved the emergency share from 52% to 44%)."""
    prune: float = 1e-3
    """Weights smaller than this are dropped from the file (they cannot move a probability)."""


def _fit(
    rows: list[set[str]], targets: np.ndarray, settings: TrainSettings
) -> tuple[dict[str, int], np.ndarray, np.ndarray]:
    """L2-regularised logistic regression per target column, by L-BFGS (deterministic)."""
    from scipy import sparse
    from scipy.optimize import minimize

    df = Counter(g for row in rows for g in row)
    vocab = {g: i for i, g in enumerate(sorted(g for g, c in df.items() if c >= settings.min_df))}
    indices: list[int] = []
    indptr = [0]
    data: list[float] = []
    for row in rows:
        cols = sorted(vocab[g] for g in row if g in vocab)
        indices += cols
        data += [1.0 / math.sqrt(max(len(row), 1))] * len(cols)
        indptr.append(len(indices))
    x = sparse.csr_matrix((data, indices, indptr), shape=(len(rows), len(vocab)))
    xt = x.T.tocsr()
    n_out = targets.shape[1]
    weights = np.zeros((len(vocab), n_out), dtype=np.float64)
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
            np.zeros(len(vocab) + 1),
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": settings.max_iter},
        )
        weights[:, j] = result.x[:-1]
        bias[j] = result.x[-1]
    keep = np.abs(weights).max(axis=1) >= settings.prune
    kept = [g for g, i in sorted(vocab.items(), key=lambda kv: kv[1]) if keep[i]]
    return {g: i for i, g in enumerate(kept)}, weights[keep].astype(np.float32), bias


def train(
    records: Sequence[dict[str, Any]],
    engine: SafetyEngine,
    settings: TrainSettings | None = None,
    question_field: str = "question",
    answer_field: str = "answer",
    sources: Iterable[str] = (),
    with_answers: bool = True,
) -> SafetyModel:
    """Fit both models on labelled records (``red_flag`` for questions, ``dangerous`` for answers).

    ``engine`` (a rules-only :class:`~medtune.safety.engine.SafetyEngine`) supplies the text the model
    reads, with denied and past mentions masked, so the model must be retrained when the rules change.
    """
    settings = settings or TrainSettings()

    def question_text(r: dict[str, Any]) -> str:
        return prepare(engine.model_text(str(r.get(question_field) or "")), normalised=True)

    def answer_text(r: dict[str, Any]) -> str:
        return prepare(engine.model_text(str(r.get(answer_field) or ""), answer=True), normalised=True)

    q_records = [r for r in records if "red_flag" in r and r.get(question_field)]
    a_records = [r for r in records if with_answers and "dangerous" in r and r.get(answer_field)]
    question_model = answer_model = None
    if q_records:
        rows = [grams(question_text(r), settings.n_max) for r in q_records]
        y = np.array([[1.0 if r.get("red_flag") else 0.0] for r in q_records])
        vocab, w, b = _fit(rows, y, settings)
        question_model = NgramModel(
            ("red_flag",),
            settings.n_max,
            vocab,
            w,
            b,
            {"red_flag": settings.red_flag_threshold, "dismissive": settings.dismissive_threshold},
        )
    if a_records:
        rows = [
            grams(answer_text(r), settings.n_max) | grams(question_text(r), settings.n_max, QUESTION_PREFIX)
            for r in a_records
        ]
        y = np.array(
            [[1.0 if k in (r.get("dangerous") or []) else 0.0 for k in ANSWER_KINDS] for r in a_records]
        )
        vocab, w, b = _fit(rows, y, settings)
        answer_model = NgramModel(
            ANSWER_KINDS,
            settings.n_max,
            vocab,
            w,
            b,
            dict.fromkeys(ANSWER_KINDS, settings.answer_threshold),
            with_question=True,
        )
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


def dismissive_gate_out_of_fold(
    groups: Sequence[Sequence[dict[str, Any]]],
    engine: SafetyEngine,
    thresholds: Sequence[float] = (0.05, 0.1, 0.2, 0.3, 0.5),
    settings: TrainSettings | None = None,
    question_field: str = "question",
    answer_field: str = "answer",
) -> list[tuple[float, int, int, int, int]]:
    """How a dismissive gate would have done on data its model never saw, one row per threshold.

    Each group (a dev file) is scored by a question model trained on all the other groups; ``engine`` (rules
    only) says which answers the rules call dismissive. A row is (threshold, labelled-dismissive answers kept,
    of all the rules found, clean answers still called dismissive, of all the rules called so).
    """
    kept: list[float] = []  # the question's out-of-fold probability, for each dismissive answer found
    false: list[float] = []  # the same for each clean answer called dismissive
    for i, group in enumerate(groups):
        rest = [r for j, other in enumerate(groups) if j != i for r in other]
        q = train(rest, engine, settings, question_field, answer_field, with_answers=False).question
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


def file_digest(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
