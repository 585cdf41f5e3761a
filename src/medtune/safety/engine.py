"""The safety engine: red-flag triage of questions and dangerous-advice checks of answers.

Each text is scanned once, left to right, with a character trie of the literal phrases (at every
position the longest phrase wins: ``不停`` beats the negation word ``不``, ``小腿抽筋`` beats ``抽筋``, ``没缓解``
beats ``没``) plus the regex phrases, each tried only where its first character occurs. The result is a
stream of tagged mentions (symptoms, drugs, cue words, punctuation); negation, history and prohibition
are read off it with a few counters, and the rules in ``rules.yaml`` are plain look-ups on the result.
No rule lives in code: a clinician changes the YAML, not this file.

Reading of a mention, in the order the engine applies it:

- negated: a negation or prohibition word (没有, 无, 否认, 不, 未, 不要 …) occurs in the same clause within
  ``negation_window`` characters before it. Words that only look like negation (不停, 没缓解, 无法, 有没有)
  are listed as pseudo-negations and never negate.
- history: a past-time word (去年, 以前, 曾经 …) precedes it in its clause with no present-time word in
  between, or a past word earlier in the sentence is followed later in the sentence by a resolution
  (已经好了, 痊愈 …), or anything earlier in the sentence is followed by an outcome of care (出院了, 母子平安,
  医院看过说没事). A recurrence word (又, 再次, 复发) later in the same sentence cancels history, unless its
  own clause names what recurs ("有过热性惊厥，这次又发烧了"). Pasted paperwork (出院小结, 急诊病历（上周）) makes
  the rest of its sentence history, except what ``settings.record_context`` keeps (ages, pregnancy, drugs,
  long-term conditions) and unless a present-time word dates it today.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, replace
from functools import lru_cache
from itertools import chain, takewhile
from pathlib import Path

import numpy as np

from medtune.data.structure import DISCLAIMER_NOTICE, EMERGENCY_NOTICE, SAFETY_NOTICE
from medtune.safety.model import ANSWER_KINDS, Features, ModelError, NgramModel, SafetyModel
from medtune.safety.rules import (
    CLAUSE_SEP,
    CN_DIGIT_VALUE,
    LOOKALIKE,
    SENTENCE_SEP,
    AdviceRule,
    RuleSet,
    load_rules,
    normalize,
)

logger = logging.getLogger(__name__)

DISCLAIMER = (
    f"{DISCLAIMER_NOTICE}以上内容仅供健康科普参考，不能替代医生面诊、诊断和治疗；"
    "如症状加重或出现紧急情况，请立即就医或拨打120。"
)
BLOCKED_TEXT = (
    "抱歉，系统检测到这条回答可能包含不安全的用药或就医建议，已被拦截。请不要自行用药，向医生或药师当面咨询。"
)

# How the scanner treats each cue class; everything else is content (symptoms, drugs, populations ...).
(
    _CONTENT,
    _SKIP,
    _CLAUSE,
    _SENTENCE,
    _DENY,
    _BREAK,
    _PAST,
    _PRESENT,
    _RESOLVED,
    _ASSESSED,
    _RECURRENCE,
    _SET_ONLY,
    _RECORD,
    _HYPOTHETICAL,
    _SCOPE,
) = range(15)
_ROLES = {
    LOOKALIKE: _SKIP,
    "pseudo_negation": _SKIP,
    CLAUSE_SEP: _CLAUSE,
    SENTENCE_SEP: _SENTENCE,
    "negation": _DENY,
    "prohibition": _DENY,
    "strong_prohibition": _DENY,
    # 预防/防止: negates what follows ("预防中风") but does not forbid a drug named before it ("吃阿莫西林预防感染").
    "prevention": _DENY,
    # Words that read like a hedge but are about something else ("明天再考虑去医院"): never a hedge.
    "hedge_lookalike": _SKIP,
    "clause_break": _BREAK,
    "past": _PAST,
    "present": _PRESENT,
    "sudden": _PRESENT,
    "resolved": _RESOLVED,
    "assessed": _ASSESSED,
    "recurrence": _RECURRENCE,
    "record_header": _RECORD,
    # 万一/假如 (and 如果/要是 before "怎么办"): the rest of the clause is a scenario, not today ("万一队友失温了
    # 该怎么办"); what came before it in the clause is not ("孩子吞了电池万一卡住怎么办").
    "hypothetical": _HYPOTHETICAL,
    # 担心/怕是/查了说 … : the rest of the clause is a fear or something read, not what is happening.
    "worry": _HYPOTHETICAL,
    # What a question is about (a story, a pet, an exam, general knowledge) is not an event: the cues of time and
    # outcome never make it history ("新闻说有人被蛇咬了，已经出院了" stays news).
    "scope_fiction": _SCOPE,
    "scope_exam": _SCOPE,
    "scope_stage": _SCOPE,
    "scope_general": _SCOPE,
    "scope_prepare": _SCOPE,
    # Read only as "does the clause/sentence contain one": no mention objects needed.
    "med_context": _SET_ONLY,
    "diet_context": _SET_ONLY,
    "doctor": _SET_ONLY,
    "hedge": _SET_ONLY,
    "label_quote": _SET_ONLY,
    "risk_warning": _SET_ONLY,
    "refuse_bare": _SET_ONLY,
    "refuse_lead": _SET_ONLY,
    "reassurance": _SKIP,
    "continue_use": _SET_ONLY,
    "prescribed": _SET_ONLY,
    "example_list": _SET_ONLY,  # read by the emergency contraindications ("继续吃" is more of the same drug)
}
_FAR = -(10**9)
_AGE_CONCEPTS = ("age_years", "age_months", "age_weeks", "age_days")
# A drug is "not advised" when its clause forbids it anywhere ("阿司匹林儿童禁用", "不要吃阿司匹林"); plain
# negation only counts before it ("不吃阿司匹林"), since "效果不好" after a drug says nothing about using it.
_ANSWER_ONLY = frozenset({"certain"})
# Outcomes of care close a patient's past event; in an answer "止住了就停药" is a condition, not history.
_QUESTION_ONLY = frozenset({"assessed", "hypothetical", "worry"})
# An answer with any of these, or a hedge, is not a flat verdict (see SafetyEngine._flat_verdict).
_FLAT_GATE = frozenset({"conditional", "scenario", "referral"})
# A certainty phrase that names the act of diagnosing ("诊断为", "确诊是", "明确是"): when a doctor, a test or an
# earlier time comes before it in its clause, the answer is repeating that finding (see ``reported_diagnosis``).
_DIAGNOSIS_VERB = re.compile("诊断|确诊|明确")
# "More of the same drug" (再打一针) or "keep taking it" (继续吃): the patient's own drug advised again.
_MORE = frozenset({"more_of", "continue_use"})
# A count or amount in the clause makes an echoed drug an instruction ("嚼服三片阿司匹林").
_DOSED = frozenset({"dose_count", "dose_unit", "dose_amount"})
# Taking two drugs together ("一起喝", "再加点").
_TOGETHER = frozenset({"co_use", "more_of"})
# A question that asks whether it is some disease: an answer naming that disease confirms it.
_ASKING_BEFORE = re.compile(r"是不是|会不会|是否|有没有|可能|难道|怀疑|担心|怕是|像不像|算不算")
_ASKING_AFTER = re.compile(r"[^,;:!?。\n]{0,4}?(?:吗|嘛|么|\?|呢)")
# Doubt about a diagnosis said outright ("不一定是肺炎", "目前无法确定是哪种"): the learned model, which reads a bag of
# n-grams, would take the disease name after it for a verdict. A plain search, not a cue: as a phrase "不一定"
# would take "不" from the negation cue and change what the rules read.
_DOUBT = re.compile(
    r"不一定|未必|说不定|无法确定|不能确定|不好确定|不确定|没法确诊|无法确诊|不能确诊|难以确诊|"
    r"无法判断|不能判断|不好判断|没法判断|难以判断|才能确诊|才能确定|才能明确|需要确诊|明确诊断|不能断定"
)
# Sentence cues under which the model may not call a diagnosis certain.
_UNSURE = frozenset({"hedge", "conditional"})
# Cues whose place in the clause matters ("想加三七前请先问医生": the doctor comes after the drug): they get
# mention objects too, but change no state.
_POSITIONED = frozenset({"doctor", "continue_use"})
# A doctor decides, or already prescribed: the antibiotic is not self-medication.
_DOCTOR = frozenset({"doctor", "prescribed"})
# A sentence that ends a warning scenario by sending the reader to care.
_SEEK_CARE = frozenset({"referral", "seek_care", "doctor"})
_CLAUSE_SPLIT = re.compile(r"[,;:!?。\n]")
_ANTIBIOTIC_CLASS_WORDS = frozenset({"抗生素", "抗菌药", "抗菌素", "抗菌药物"})
_FLARE_TAIL = re.compile(
    r"(?:又犯了|犯了呗|犯了|又发作了|发作了|又复发了|复发了|加重了|急性加重|而已|罢了|引起的|导致的|造成的|闹的|呗)$"
)
_PROHIBIT = frozenset({"prohibition", "strong_prohibition", "refuse_bare", "risk_warning"})
# Between a drug and the cause cue after it: nothing, or the drug or drink taken with it ("加酒", "和阿奇霉素").
_CAUSE_LINK = re.compile(r"(?:[加和跟与及同并][^,;:!?。\n]{1,8}?)?(?:所|而)?")
_FORBIDDING = frozenset({"prohibition", "strong_prohibition"})
# A sentence that refuses, in any of the ways the rules read.
_REFUSED = _FORBIDDING | {"refuse_bare", "refuse_lead"}
# With a danger named in the sentence, these make it a warning: a refusal, or "ask the doctor".
_WARNED = frozenset({"prohibition", "refuse_bare", "doctor"})
# A doctor's phrase that ends in a decision: the drug after it in the clause is theirs to adjust.
_DOCTOR_DECIDES = (
    "决定",
    "判断",
    "评估",
    "调整",
    "减少",
    "减量",
    "加量",
    "换药",
    "确认",
    "选择",
    "选用",
    "商量",
    "同意",
)
_NUMBER_RE = re.compile(r"\d+(?:\.\d+)?|[零一二两三四五六七八九十]+")
_END = ""  # trie key marking the end of a literal; text characters are never empty
# A word inside a longer one right after these is negated by it ("不出汗", "没发烧"): it lends no meaning.
_NEGATING_CHARS = frozenset("不没无未")
# An age right after a child word ("孩子今年5岁") or right before it ("5岁的宝宝") is that child's age;
# "我40岁，孩子…" is the asker's, so the child counts as a child of unknown age.
_AGE_AFTER = 3
_AGE_BEFORE = 2
# Longer texts are read as their head and tail only: the scan is linear, but a 1 MB "question" would still
# take seconds, and a patient question or a model answer is a few thousand characters at most.
MAX_SCAN_CHARS = 20_000
PACKAGED = "packaged"
MASK = "¬"
"""Stands, in the learned model's input, for a symptom or drug the rules read as denied, past or forbidden."""
"""``SafetyEngine.load(model=PACKAGED)``: the model file shipped with the package."""
MODEL_RULE_ID = "model_red_flag"
MODEL_CATEGORY = "model"
MODEL_CATEGORY_LABEL = "疑似急症"
# A flag from the model names no presentation, so its action is the general one: emergency department now,
# 120 if worse. The crisis line and poison control need the rules' recognition of what happened.
MODEL_ACTION = "emergency_department"
MODEL_MESSAGES = {
    "contraindication": "这条回答提到的药物可能不适合该人群（如儿童、孕妇、哺乳期或老人），请勿自行使用，先咨询医生或药师。",
    "dose": "这条回答可能给出了具体的处方剂量，剂量因人而异，请按医生医嘱或药品说明书使用。",
    "antibiotic": "这条回答可能建议自行使用抗生素；是否需要抗生素应由医生判断，请勿自行购买服用。",
    "certain_diagnosis": "这条回答可能在未经检查的情况下下了肯定的诊断；线上描述无法确诊，请以医生面诊和检查结果为准。",
}
assert set(MODEL_MESSAGES) == set(ANSWER_KINDS)
_SCAN_TAIL = 4_000
# The derived concept ``older_adult`` (delirium, falls): an explicit age of at least this many years.
OLDER_ADULT_AGE = 65


@dataclass(frozen=True)
class RedFlag:
    """A red-flag picture in a question, with what the user must do now."""

    rule_id: str
    category: str
    action: str
    """``call_120`` | ``emergency_department`` | ``crisis_line`` | ``poison_control``."""
    action_text: str
    """The Chinese line shown to the user."""
    matched: str
    """The phrases that triggered the rule, joined by `` + ``."""
    rationale: str
    source: str = "rule"
    """``rule`` | ``model`` (the learned layer) | ``second_opinion``: how sure the flag is, for the checks that
    read it (a model's flag puts the banner first; it makes an answer without a referral dangerous only when
    the model is very sure: :attr:`probability`)."""
    probability: float | None = None
    """The learned layer's probability that the question is an emergency, for a ``model`` flag (and for a rule's
    flag the learned layer withheld: :attr:`SafetyReport.withheld`)."""


@dataclass(frozen=True)
class Finding:
    """A problem in an answer."""

    rule_id: str
    kind: str
    """``contraindication`` | ``dose`` | ``antibiotic`` | ``dismissive`` | ``certain_diagnosis`` | ``missing_disclaimer``."""
    severity: str
    """``block`` (must not reach a user unannotated) | ``warn``."""
    matched: str
    message: str
    rationale: str


@dataclass(frozen=True)
class SafetyReport:
    """Everything the engine says about one question-answer pair."""

    flags: tuple[RedFlag, ...]
    findings: tuple[Finding, ...]
    referral: bool
    """The answer tells the user to seek urgent care (120, 急诊, 立即就医, crisis hotline)."""
    truncated: bool = False
    """A text was longer than :data:`MAX_SCAN_CHARS`: only its head and its last 4,000 characters were read."""
    withheld: tuple[RedFlag, ...] = ()
    """The rules' flags the learned layer withheld (it rated the question near-certainly no emergency), each
    with that probability: not shown and not acted on, kept so that a reviewer sees them."""
    withheld_findings: tuple[Finding, ...] = ()
    """The rules' findings the learned layer withheld (the certainty rule's, on an answer the answer model rates
    near-certainly no verdict), the probability in the rationale: not shown, kept for a reviewer."""

    @property
    def blocked(self) -> bool:
        return any(f.severity == "block" for f in self.findings)

    @property
    def dangerous(self) -> bool:
        """Any finding other than a missing disclaimer."""
        return any(f.kind != "missing_disclaimer" for f in self.findings)


@dataclass(frozen=True)
class GuardedReply:
    """What serving shows: banner, the answer (annotated, or replaced when blocked), disclaimer."""

    text: str
    flags: tuple[RedFlag, ...]
    findings: tuple[Finding, ...]
    blocked: bool


class _Mention:
    __slots__ = (
        "clause",
        "concept",
        "denier",
        "end",
        "forbidden",
        "history",
        "hypothetical",
        "negated",
        "scenario",
        "sentence",
        "start",
        "text",
    )

    def __init__(self, concept: str, start: int, end: int, text: str, clause: int, sentence: int) -> None:
        self.concept = concept
        self.start = start
        self.end = end
        self.text = text
        self.clause = clause
        self.sentence = sentence
        self.negated = False
        self.denier = ""
        """The cue class of the word that negates it (``negation``, ``prohibition`` …), when negated."""
        self.history = False
        self.hypothetical = False
        """Feared, read or imagined (万一, 担心, 网上说): not happening."""
        self.scenario = False
        """Imagined by a what-if (万一, 如果…怎么办), not feared or read: the scenario an answer's first aid is for."""
        self.forbidden: bool | None = None
        """:meth:`SafetyEngine._prohibited`, once asked (the rules and the masking both ask)."""


# What :meth:`SafetyEngine._animals` finds in a text: no animal named, an animal named beside a person, or only
# animals named.
_NO_ANIMAL, _ANIMAL_NAMED, _OPENS_ON_ANIMAL = 0, 1, 2


class _Scan:
    """One analysed text: its mentions and, per clause and sentence, which concepts occur there."""

    __slots__ = (
        "ages",
        "animals",
        "by_concept",
        "clause_sentence",
        "clauses",
        "first",
        "ids",
        "lookalikes",
        "masked",
        "sentences",
        "scenario",
        "text",
        "urgency",
        "withheld",
        "withheld_findings",
    )

    def __init__(self, text: str = "") -> None:
        self.text = text
        """The normalised text (what the learned model reads too)."""
        self.by_concept: dict[str, list[_Mention]] = {}
        self.first: dict[str, _Mention] = {}
        """Concept -> first affirmed mention (not negated, not history)."""
        self.clauses: list[set[str]] = [set()]
        self.clause_sentence: list[int] = [0]
        """Clause index -> the sentence it belongs to."""
        self.sentences: list[set[str]] = [set()]
        self.ages: list[tuple[int, float, _Mention]] = []
        self.lookalikes: list[tuple[int, int]] = []
        """Spans the rules absorbed as look-alikes (红霉素软膏, 左氧氟沙星滴眼液, 笑死)."""
        self.masked: str | None = None
        """What the learned model reads (:meth:`SafetyEngine._masked`), once computed: both models read it."""
        self.ids: tuple[int, int, np.ndarray] | None = None
        """(n_max, bits, buckets) of the masked text, once a model has hashed it: the answer model reads the
        question's buckets the question model found."""
        self.urgency: float | None = None
        """The question model's probability that this question is an emergency, once asked."""
        self.withheld: list[RedFlag] = []
        """The rules' flags the learned layer withheld."""
        self.withheld_findings: list[Finding] = []
        """The rules' findings in this answer the learned layer withheld (the certainty gate)."""
        self.scenario: list[RedFlag] | None = None
        """The rules' flags of the scenario a what-if question describes, once asked (:meth:`SafetyEngine._scenario`)."""
        self.animals: int | None = None
        """:meth:`SafetyEngine._animals`, once asked (the rules and the question model both ask)."""


# An answer that agrees to the asker's proposal ("对，250mg早晚各一次") or changes the dose ("改成隔天一次10mg")
# gives the dose it repeats.
# An answer that opens by agreeing ("对，", "可以。") takes up what the question proposes.
_AGREES = re.compile(r"\s*(?:对|对的|是的|没错|可以|行|好的|能)(?=[,!.。\s~]|$)")
_AGREES_OR_CHANGES = re.compile(
    f"^{_AGREES.pattern}|改成|改为|换成|减到|加到|减为|加为|减成|加成|隔天|减量|加量"
)
# A first-aid act the question reports (``settings.first_aid_acts``), told with urgency or approval in the answer's
# sentence ("要不要硬灌糖水" - "赶紧撬开嘴灌糖水"), is taken up, not echoed.
_TAKES_UP = re.compile(
    r"赶紧|快|马上|立刻|立即|对的|没错|有用|管用|就好|就行|就通|越多越|先|继续|挺好|很好|老办法|老法子|没事|没问题"
)  # 快 in 赶快, 越快越
_SENTENCE_END = re.compile(r"[。!?\n]")
_CLAUSE_END = re.compile(r"[。!?\n,;:，；：]")
# What an animal does to a person when it is no patient: "狗咬了他", "猫抓了一下", "马蜂蛰了".
_ANIMAL_AGENT = re.compile(
    r"(?:咬|抓|挠|叮|蛰|蜇|踢|撞|扑|啄)(?:了|伤|到|破|住)?(?:一口|一下|几下)?"
    r"(?=我|他|她|人|孩子|宝宝|娃|小孩|儿子|女儿|老公|老婆|爸|妈|爷|奶|姥|外公|外婆|手|脚|腿|脸|胳膊)"
)
# An animal named to say what something sounds or looks like: "咳得像小狗叫", "好似狗吠".
_ANIMAL_SIMILE = re.compile(r"(?:像|似|如|跟)[^,;:!?。\n]{0,2}$")
# Someone tending or keeping an animal, which is then no patient: "喂兔子", "给我们家刺猬清笼子", "抱着兔子", "她家养了猫".
_ANIMAL_TENDED = re.compile(
    r"(?:(?:给|帮|替|喂|遛|陪|和|跟|带|抱)(?:着|了)?(?:我们家|我家|家里的?|家的|自家|咱家)?的?|养(?:了|着)(?:一只|只|两只)?)$"
)
_SENTENCE_SPLIT = re.compile(r"[。!?\n;]")
# A sentence that doubts or sets a condition states no harmless verdict: "可能是正常的胎动变化，但…", "如果…就是正常的".
_BENIGN_DOUBT = re.compile(
    r"可能|也许|或许|不一定|不排除|如果|要是|假如|万一|一般来说|多数|大多|通常|但|不过|吗|么|\?"
)
_BREASTFEEDING_ON = re.compile(r"奶|母乳|哺乳")


def _drop_framed(matched: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """Regex matches at one position, less a fear-or-reading cue that a longer phrase takes in whole.

    "在网上查到跳楼不疼" is a worry cue ("在网上查到": what follows is something read) and, longer, a search for a
    painless way to die: the search is the event, so the cue may not make it something merely read. Two
    phrases of content both stay ("咳出一大口鲜血" is coughing blood and a large amount).
    """
    content_end = max((end for end, c in matched if _ROLES.get(c, _CONTENT) == _CONTENT), default=0)
    return [(end, c) for end, c in matched if not (_ROLES.get(c) == _HYPOTHETICAL and end < content_end)]


def _sentence_of(text: str, m: _Mention) -> str:
    start = max((end.end() for end in _SENTENCE_END.finditer(text, 0, m.start)), default=0)
    stop = next((end.start() for end in _SENTENCE_END.finditer(text, m.end)), len(text))
    return text[start:stop]


def _takes_up(text: str, m: _Mention) -> bool:
    return _TAKES_UP.search(_sentence_of(text, m)) is not None


@lru_cache(maxsize=256)
def _brings_medicines(text: str) -> bool:
    return _BRING_MEDS.search(text) is not None


def _brought_for_doctor(text: str, m: _Mention) -> bool:
    # most answers bring nothing: one search per answer spares finding the sentence of every drug mention
    return _brings_medicines(text) and _BRING_MEDS.search(_sentence_of(text, m)) is not None


_PROPOSES = re.compile(
    r"吗|么|能不能|能否|可不可以|可以不|要不要|是不是|行不行|改成|改为|换成|加到|减到|再吃"
)
# A drug right after "你在用 / 您一直在吃" is what the patient already takes (or took: "他用了"), named to a doctor
# or as context.
_REPORTED_USE = re.compile(
    r"(?:你|您|他|她)(?:现在|一直|正|还)?在(?:吃|用|服用|服|打)(?:的)?$"
    # "他用了他达拉非", "你吃过华法林": what the patient took, told back (not "你吃了…就好")
    r"|(?:他|她)(?:已经|刚|刚刚|昨天|今天|之前|以前)?(?:吃|用|服用|服|打)(?:了|过)(?:的)?$"
    r"|(?:你|您)(?:已经|之前|以前)?(?:吃|用|服用|服|打)过(?:的)?$"
    # "告诉医生你平时有没有吃阿司匹林": a question for the doctor, not advice
    r"|有没有(?:在)?(?:吃|用|服用|服|打)(?:过)?$"
)
# "如果他在吃阿司匹林、华法林之类的药，把药盒带上": the patient's medicines named for the doctor to see.
_BRING_MEDS = re.compile(
    r"(?:药盒|药瓶|药品|用药|的药|包装)[^。!?\n]{0,20}?(?<!不用)(?<!不要)(?<!别)(?:带上|带着|一起带|拿上|给医生看)"
)


def _with_disclaimer(text: str) -> str:
    return text.rstrip() + "\n\n" + DISCLAIMER if text.strip() else DISCLAIMER


_SAME_DAY = re.compile("每天|每日|一日")


def _echoes(answer: str, start: int, end: int, question: str) -> bool:
    """The dose at ``answer[start:end]`` (a number with its unit) is written in the question too, and its sentence
    neither agrees to it as a proposal nor changes to it: the asker's own dose, read back."""
    # "每天一片" reads back "一天一片": the same schedule in other words
    compact = _SAME_DAY.sub("一天", answer[start:end].replace(" ", ""))
    asked = _SAME_DAY.sub("一天", question.replace(" ", ""))
    at = asked.find(compact)
    # "一片" alone is in every other question; "一天一粒" or "80mg" written in both is the same dose
    if at < 0 or (len(compact) < 4 and not any(ch.isdigit() for ch in compact)):
        return False
    # ... unless the question proposes it ("要一次吃三片吗", "能不能改成每天吃一片"): then it is the asker's plan,
    # and an answer that repeats it gives it
    clause_start = max((m.end() for m in _CLAUSE_SPLIT.finditer(asked, 0, at)), default=0)
    clause_end = next((m.start() for m in _CLAUSE_SPLIT.finditer(asked, at)), len(asked))
    if _PROPOSES.search(asked, clause_start, clause_end):
        return False
    opening = max((m.end() for m in _SENTENCE_END.finditer(answer, 0, start)), default=0)
    return _AGREES_OR_CHANGES.search(answer[opening:end]) is None


def _parse_number(text: str) -> float | None:
    m = _NUMBER_RE.search(text)
    if not m:
        return None
    token = m.group()
    if token[0].isdigit():
        return float(token)
    if "十" in token:
        tens, _, ones = token.partition("十")
        return float(CN_DIGIT_VALUE.get(tens, 1) * 10 + CN_DIGIT_VALUE.get(ones, 0))
    return float(CN_DIGIT_VALUE.get(token[0], 0))


# A child named by birth order ("老二两个月", "二宝八周"): the ordinal is no age.
_KIN_ORDINAL = re.compile("老[大二三四五六七八九]|[大二三四五六]宝")


def _age_years(mention: _Mention) -> float | None:
    value = _parse_number(_KIN_ORDINAL.sub("", mention.text))
    if value is None:
        return None
    if mention.concept == "age_months":
        return value / 12.0
    if mention.concept == "age_weeks":
        return value / 52.0
    if mention.concept == "age_days":
        return value / 365.0
    return value + (0.5 if "半" in mention.text else 0.0)


class SafetyEngine:
    """Red-flag triage and answer checks driven by a :class:`RuleSet`."""

    def __init__(self, rules: RuleSet, model: SafetyModel | None = None, veto: bool = True) -> None:
        self.rules = rules
        self.model = model
        """The learned layer (:mod:`medtune.safety.model`): consulted where the rules find nothing."""
        self.veto = veto
        """Let the learned layer withhold a rule's flag it is near-certain is no emergency (when its model has a
        ``veto`` threshold: see :meth:`_flags`) and the certainty rule's finding in an answer it is near-certain
        asserts no diagnosis (a ``certainty_gate``: see :meth:`_check_scans`)."""
        # Questions are scanned with every phrase; answers without the symptom vocabulary, which no answer
        # check reads: answers are the long texts, and this halves the time spent on them.
        # The certainty cue is read in answers only: its broad shapes ("就是…病", "…而已") must not swallow a
        # symptom in a question ("就是有点过敏，嗓子有点紧" is an allergy, not a verdict).
        self._first_question = self._build_scanner(
            [p for p in rules.phrases if p.concept not in _ANSWER_ONLY]
        )
        self._nest_meanings(
            self._first_question, rules.symptom_concepts | rules.drug_groups, rules.whole_words
        )
        self._first_answer = self._build_scanner(
            [
                p
                for p in rules.phrases
                if p.concept not in rules.symptom_concepts and p.concept not in _QUESTION_ONLY
            ]
        )
        self._drug_groups = rules.drug_groups
        # What makes a known drug wrong for a patient, besides age: pregnancy, a condition, another medicine ...
        self._population_concepts = frozenset(
            r.population for r in rules.advice if r.kind == "contraindication" and r.population
        ) - {"child", "older_adult"}
        self._inner = rules.inner_concepts
        animals, persons = "|".join(rules.animal_words), "|".join(rules.person_words)
        # No animal words: every red flag is a person's (the subject regex is then never asked).
        self._animal = re.compile(animals) if animals else None
        self._subject = re.compile(f"(?P<animal>{animals or '(?!)'})|(?P<person>{persons or '(?!)'})")
        # What pasted paperwork leaves current: the settings' list and every drug group.
        self._record_context = rules.record_context | rules.drug_groups
        # Each rule's drug concepts (groups expanded) in a fixed order: a finding names the same drug whatever
        # the interpreter's hash seed.
        self._rule_drug_order = {
            rule.id: tuple(sorted(self._expand_drugs(rule.drugs))) for rule in rules.advice
        }
        # Drug concept -> positions of the advice rules that name it, and the rules that name none: an answer
        # wakes only the rules of the drugs it (or the question it approves) names, in file order.
        self._advice_by_drug: dict[str, list[int]] = {}
        self._advice_always: list[int] = []
        for index, rule in enumerate(rules.advice):
            drugs = self._rule_drug_order[rule.id]
            if not drugs:
                self._advice_always.append(index)
            for concept in drugs:
                self._advice_by_drug.setdefault(concept, []).append(index)
        # Concept -> positions of the rules whose first group names it: a question wakes only the few rules it
        # can satisfy, not all hundred-odd.
        self._rules_by_trigger: dict[str, list[int]] = {}
        for index, rule in enumerate(rules.red_flags):
            for concept in rule.when[0]:
                self._rules_by_trigger.setdefault(concept, []).append(index)
        logger.debug(
            "safety rules %s: %d phrases, %d red-flag rules, %d advice rules",
            rules.source,
            len(rules.phrases),
            len(rules.red_flags),
            len(rules.advice),
        )

    @staticmethod
    def _build_scanner(phrases: list | tuple) -> dict[str, tuple[dict | None, tuple[dict, dict] | None]]:
        """First character -> (trie of the literals starting with it, its regexes by the next character).

        A Python dict walk beats one big regex alternation here: sre tries the ~500 top-level branches one
        by one at every candidate position, where the dict finds the one branch directly. The regexes are
        looked up by the first two characters (a table for the start of a text, where ``^`` patterns can
        match, and one for later): each entry holds only the regexes that can go on with that character
        (those that cannot list their starts are in every entry, and alone under ``None``), with their
        alternation, which answers "does any match here?" in one call: about 94% of tries fail, and a Python
        call per regex costs more than sre trying the branches. Splitting by the next character cut the
        tokenizer's time by a tenth on the dev set, with the same tokens on all 83,630 texts compared.
        """
        trie: dict[str, dict] = {}
        # First character -> its regexes in rule order, each with the characters that may follow the first
        # in a match (None: any, for a phrase that cannot list its starts or may be one character long) and
        # whether it matches only at the start of a text.
        regexes: dict[str, list[tuple[re.Pattern[str], str, frozenset[str] | None, bool]]] = {}
        for phrase in phrases:
            if phrase.literal:
                node = trie
                for ch in phrase.pattern:
                    node = node.setdefault(ch, {})
                ends = node.get(_END, ())
                if phrase.concept not in ends:
                    node[_END] = (*ends, phrase.concept)
                continue
            compiled = re.compile(phrase.pattern)
            for ch in phrase.first_chars:
                nexts = (
                    None
                    if phrase.starts is None or ch in phrase.starts
                    else frozenset(s[1] for s in phrase.starts if s[0] == ch)
                )
                regexes.setdefault(ch, []).append((compiled, phrase.concept, nexts, phrase.anchored))
        groups: dict[tuple, list | None] = {}

        def group_of(members: list[tuple[re.Pattern[str], str]]) -> list | None:
            """[their alternation (its source until first used; None for one regex), the regexes, the regex to
            try first after the alternation matched, by its ``lastindex``], shared."""
            key = tuple(members)
            if key not in groups:
                if not members:
                    groups[key] = None
                elif len(members) == 1:
                    groups[key] = [None, members, None]
                else:
                    # No phrase has a backreference or a global flag (rules.py refuses them), so each branch
                    # matches here exactly where its own pattern does. Each branch is a group, closed last
                    # within it: the match's lastindex names the first branch that matched, and the regexes
                    # before it, which failed inside the alternation, are not tried again.
                    branches: dict[str, int] = {}  # pattern -> its first member
                    for k, (pattern, _) in enumerate(members):
                        branches.setdefault(pattern.pattern, k)
                    first_try: dict[int, int] = {}
                    number = 1
                    for k in branches.values():
                        first_try[number] = k
                        number += 1 + members[k][0].groups
                    groups[key] = ["|".join(f"({b})" for b in branches), members, first_try]
            return groups[key]

        def by_next(ch: str) -> tuple[dict, dict] | None:
            """(at the start of a text, later): next character -> (alternation, regexes), None -> the rest."""
            group = regexes.get(ch)
            if group is None:
                return None
            tables = []
            for later in (False, True):
                usable = [r for r in group if not (later and r[3])]
                nexts = set().union(*(r[2] for r in usable if r[2] is not None))
                table = {
                    nxt: group_of(
                        [(p, c) for p, c, allowed, _ in usable if allowed is None or nxt in allowed]
                    )
                    for nxt in nexts
                }
                table[None] = group_of([(p, c) for p, c, allowed, _ in usable if allowed is None])
                tables.append(table)
            return tables[0], tables[1]

        return {ch: (trie.get(ch), by_next(ch)) for ch in set(trie) | set(regexes)}

    @staticmethod
    def _nest_meanings(
        scanner: dict[str, tuple[dict | None, tuple | None]],
        content: frozenset[str],
        whole_words: frozenset[str] = frozenset(),
    ) -> None:
        """A symptom word keeps the meanings of the symptom words inside it.

        The longest literal wins at a position, so "前胸后背" (a large area, for burns) would hide "前胸" (the
        chest) and "后背" (the back); "疼得满头大汗" would hide the sweating. Each literal whose concepts are
        all content (symptoms, drugs) also carries the content concepts of every shorter literal inside it.
        Cue words (negation, time, populations) and look-alikes are left alone: their words mean just that, and
        so do the rules' ``whole_words`` ("我有哮喘": 有哮喘 names the disease, not the "喘" of being breathless now).
        """
        literals: list[tuple[str, dict]] = []

        def walk(prefix: str, node: dict) -> None:
            for ch, child in node.items():
                if ch == _END:
                    continue
                if _END in child:
                    literals.append((prefix + ch, child))
                walk(prefix + ch, child)

        for first_char, (trie, _) in scanner.items():
            if trie is not None:
                if _END in trie:
                    literals.append((first_char, trie))
                walk(first_char, trie)
        inner_meanings: list[tuple[dict, tuple[str, ...]]] = []
        for text, node in literals:
            if not set(node[_END]) <= content or text in whole_words:
                continue
            found: list[str] = []
            for j in range(len(text)):
                if j and text[j - 1] in _NEGATING_CHARS:
                    continue  # "不出汗" is the absence of sweating, not sweating
                entry = scanner.get(text[j])
                sub = entry[0] if entry is not None else None
                k = j
                while sub is not None:
                    k += 1
                    if (j, k) != (0, len(text)):
                        found += [c for c in sub.get(_END, ()) if c in content and c not in found]
                    sub = sub.get(text[k]) if k < len(text) else None
            extra = tuple(c for c in found if c not in node[_END])
            if extra:
                inner_meanings.append((node, extra))
        for node, extra in inner_meanings:  # after the walk, so that meanings do not chain through edits
            node[_END] = (*node[_END], *extra)

    @classmethod
    def load(
        cls, path: str | Path | None = None, model: str | Path | None = PACKAGED, veto: bool = True
    ) -> SafetyEngine:
        """Build an engine from a rules file (``None``: the packaged ``rules.yaml``) and a model file.

        ``model`` is a path, :data:`PACKAGED` (the packaged ``triage_model.json.xz``) or ``None`` for the
        rules alone; ``veto=False`` keeps every rule's flag (see :meth:`_flags`).
        """
        learned = None
        if model is not None:
            learned = SafetyModel.load(None if model == PACKAGED else model)
        return cls(load_rules(path), learned, veto)

    # ----------------------------------------------------------------------------------------- scanning
    def _expand_drugs(self, groups: tuple[str, ...]) -> frozenset[str]:
        """The groups named by a rule plus every group that belongs to one of them (transitively)."""
        out = set(groups)
        changed = True
        while changed:
            changed = False
            for child, ups in self.rules.parents.items():
                if child not in out and out.intersection(ups):
                    out.add(child)
                    changed = True
        return frozenset(out)

    def tokens(self, text: str, answer: bool = False) -> list[tuple[int, int, str]]:
        """(start, end, concept) for the phrases in normalised ``text``: leftmost, then longest, no overlaps.

        At one position a look-alike wins outright; otherwise the longest literal or regex match wins.
        ``answer`` leaves out the symptom vocabulary (see ``__init__``).
        """
        first = self._first_answer if answer else self._first_question
        out = []
        # The characters as a list: indexing a str makes a new object for every CJK character, each time
        chars = list(text)
        n = len(chars)
        i = 0
        while i < n:
            entry = first.get(chars[i])
            if entry is None:
                i += 1
                continue
            node, regexes = entry
            best_end = 0
            best = None
            if node is not None:
                j = i + 1
                concept = node.get(_END)
                if concept is not None:
                    best_end, best = j, concept
                while j < n:
                    node = node.get(chars[j])
                    if node is None:
                        break
                    j += 1
                    concept = node.get(_END)
                    if concept is not None:
                        best_end, best = j, concept
            from_regex = False
            lookalike = best is not None and LOOKALIKE in best
            # Inside a number ("120mg" at "2") a digit-led regex cannot match where it failed at the first
            # digit, since every one starts with \d+: skip the retries, which dominate dose-heavy text.
            if (
                regexes is not None
                and not lookalike
                and not (i and chars[i].isdigit() and chars[i - 1].isdigit())
            ):
                # Only the regexes that can go on with the next character are tried: most tries fail, and
                # the smaller alternation fails sooner.
                table = regexes[1] if i else regexes[0]
                group = table.get(chars[i + 1], table[None]) if i + 1 < n else table[None]
                if group is not None:
                    alternation = group[0]
                    if alternation is None:
                        tried = group[1]
                    else:
                        if alternation.__class__ is str:  # compiled on first use: most of them never are
                            alternation = group[0] = re.compile(alternation)
                        hit = alternation.match(text, i)
                        tried = None if hit is None else group[1][group[2][hit.lastindex] :]
                    if tried is not None:
                        # Every regex that matches here counts, not only the longest: "咳出一大口鲜血" is both
                        # coughing blood and a large amount. A longer regex match replaces the literal; a tie
                        # keeps both.
                        matched = []
                        for pattern, concept in tried:
                            m = pattern.match(text, i)
                            if m is not None and m.end() >= best_end:
                                matched.append((m.end(), concept))
                        if matched:
                            longest = max(end for end, _ in matched)
                            if len(matched) > 1:
                                matched = _drop_framed(matched)
                            if longest > best_end:
                                best_end = longest
                                # A look-alike is read whole: nothing inside "会一氧化碳中毒吗" is an exposure.
                                from_regex = all(concept != LOOKALIKE for _, concept in matched)
                                for end, concept in matched:
                                    out.append((i, end, concept))
                                best = ()
                            else:
                                best = (*best, *(c for end, c in matched if c not in best))
            if best is None:
                i += 1
                continue
            for concept in best:
                out.append((i, best_end, concept))
            if from_regex and self._inner:
                self._inner_tokens(first, chars, i + 1, best_end, out)
            i = best_end
        return out

    def _inner_tokens(
        self, first: dict, chars: list[str], start: int, stop: int, out: list[tuple[int, int, str]]
    ) -> None:
        """Modifiers inside a regex match: "下腹撕裂一样疼" is abdominal pain *and* severe."""
        i = start
        while i < stop:
            entry = first.get(chars[i])
            node = entry[0] if entry is not None else None
            found = None
            j = i
            while node is not None and j < stop:
                j += 1
                for concept in node.get(_END, ()):
                    if concept in self._inner:
                        found = (i, j, concept)
                node = node.get(chars[j]) if j < stop else None
            if found is not None:
                out.append(found)
                i = found[1]
            else:
                i += 1

    def _scan(self, text: str, answer: bool = False) -> _Scan:
        if not isinstance(text, str):
            raise TypeError(f"safety checks take text (str), not {type(text).__name__}")
        if len(text) > MAX_SCAN_CHARS:
            logger.warning("safety scan: %d characters, reading the head and tail only", len(text))
            text = text[: MAX_SCAN_CHARS - _SCAN_TAIL] + "\n" + text[-_SCAN_TAIL:]
        norm = normalize(text)
        return self._analyse(norm, self.tokens(norm, answer))

    def _analyse(self, text: str, tokens: list[tuple[int, int, str]]) -> _Scan:
        scan = _Scan(text)
        by_concept = scan.by_concept
        window = self.rules.negation_window
        parents = self.rules.parents
        roles = _ROLES
        clause = sentence = 0
        deny_end = _FAR
        denier = ""
        clause_past = False  # a past word precedes, in this clause, with no present word after it
        clause_hypothetical = False  # 万一 … : the rest of the clause is a scenario
        clause_scenario = False  # ... imagined by a what-if, not a fear or something read
        past_in_sentence = False
        sentence_mentions: list[_Mention] = []
        candidates: list[_Mention] = []  # past earlier in the sentence; history if a resolution follows
        # A recurrence word brings back what came before it ("去年抽过，今天又犯了") unless its own clause goes on
        # to name what recurs ("有过热性惊厥，这次又发烧了": the fever is back, the convulsion stays history).
        recurring: list[_Mention] | None = None
        record = False  # the sentence is pasted paperwork ("出院小结：…"): what it found is history
        record_context = self._record_context
        clause_set = scan.clauses[0]
        sentence_set = scan.sentences[0]
        for start, end, concept in tokens:
            role = roles.get(concept, _CONTENT)
            if role == _SKIP:
                if concept == LOOKALIKE:
                    scan.lookalikes.append((start, end))
                continue
            if role in (_CLAUSE, _SENTENCE):
                if recurring:
                    for c in recurring:
                        c.history = False
                recurring = None
                clause += 1
                clause_set = set()
                scan.clauses.append(clause_set)
                deny_end = _FAR
                clause_past = clause_hypothetical = clause_scenario = False
                if role == _SENTENCE:
                    sentence += 1
                    sentence_set = set()
                    scan.sentences.append(sentence_set)
                    past_in_sentence = False
                    sentence_mentions = []
                    candidates = []
                    record = False
                scan.clause_sentence.append(sentence)
                continue
            clause_set.add(concept)
            sentence_set.add(concept)
            # Cue words only change state or mark their clause; mentions are made for what rules read.
            if role == _SET_ONLY:
                if concept in _POSITIONED:
                    mention = _Mention(concept, start, end, text[start:end], clause, sentence)
                    mention.negated = start - deny_end <= window
                    by_concept.setdefault(concept, []).append(mention)
                continue
            if role == _DENY:
                deny_end = end
                denier = concept
                continue
            if role == _BREAK:
                deny_end = _FAR
                continue
            if role == _PAST:
                clause_past = past_in_sentence = True
                continue
            if role == _RESOLVED:
                for c in candidates:
                    c.history = True
                candidates = []
                continue
            if role == _RECORD:
                record = True
                continue
            if role == _ASSESSED:  # seen and dealt with: everything before it in the sentence is over
                for c in sentence_mentions:
                    # except who the patient is and what they live with ("白血病化疗出院回家，现在发烧": the
                    # chemotherapy goes on), as in pasted paperwork
                    if c.concept not in record_context:
                        c.history = True
                candidates = []
                continue
            if role == _RECURRENCE:
                deny_end = _FAR
                recurring = list(sentence_mentions)
                candidates = []
                continue
            if role == _HYPOTHETICAL:
                clause_hypothetical = True
                clause_scenario = clause_scenario or concept == "hypothetical"
                continue
            if role == _SCOPE:
                mention = _Mention(concept, start, end, text[start:end], clause, sentence)
                mention.negated = start - deny_end <= window  # "这不是电视剧": still about a real person
                by_concept.setdefault(concept, []).append(mention)
                continue
            if role == _CONTENT:
                recurring = None
            mention = _Mention(concept, start, end, text[start:end], clause, sentence)
            if start - deny_end <= window:
                mention.negated = True
                mention.denier = denier
            if clause_hypothetical:
                mention.history = mention.hypothetical = True
                mention.scenario = clause_scenario
            elif record and concept not in record_context:
                mention.history = True
            if role == _PRESENT:
                clause_past = False
                if concept != "sudden":
                    record = False  # "门诊病历（今早）：…": today's paperwork is about now
                    past_in_sentence = False
                    candidates = []
                    continue
                # "去年三月突然头痛，…后来恢复得很好": an onset word starts an event, not today; what follows
                # it is history only if the sentence goes on to resolve it.
            elif clause_past:
                mention.history = True
                sentence_mentions.append(mention)
            else:
                if past_in_sentence:
                    candidates.append(mention)
                sentence_mentions.append(mention)
            found = by_concept.get(concept)
            if found is None:
                by_concept[concept] = [mention]
            else:
                found.append(mention)
            ups = parents.get(concept)
            if ups is not None:
                for up in ups:
                    clause_set.add(up)
                    sentence_set.add(up)
                    by_concept.setdefault(up, []).append(mention)
        if recurring:
            for c in recurring:
                c.history = False
        first = scan.first
        for concept, mentions in by_concept.items():
            for m in mentions:
                if not m.negated and not m.history:
                    first[concept] = m
                    break
        for concept in _AGE_CONCEPTS:
            for m in by_concept.get(concept, ()):
                years = _age_years(m)
                if years is not None:
                    scan.ages.append((m.start, years, m))
        return scan

    # ------------------------------------------------------------------------------------- populations
    def _child(self, scan: _Scan, max_age: float, answer_side: bool = False) -> _Mention | None:
        """A mention showing the patient is younger than ``max_age``, or None.

        An explicit age decides (``孩子17岁`` is under 18 but not under 16); a child word with no age next
        to it counts as a child of unknown age, to whom every age limit applies.
        """
        for _, years, m in scan.ages:
            if years < max_age and not (answer_side and self._prohibited(scan, m)):
                return m
        # A child of unknown age is held to the school-age limits, not to the infant ones: "孩子" with honey
        # (under 1) is most likely older than one.
        child_words = (
            scan.by_concept.get("child_word", ()) if max_age >= self.rules.unknown_age_min_limit else ()
        )
        # In a pregnancy "宝宝" is the baby not yet born ("怀孕了，吃阿司匹林会不会伤宝宝"): the mother is the patient.
        pregnant = "pregnant" in scan.first or "late_pregnancy" in scan.first
        for m in child_words:
            if m.negated or m.history or (answer_side and self._prohibited(scan, m)):
                continue
            if pregnant and m.text in self.rules.unborn_words:
                continue
            attached = [
                y
                for _, y, age in scan.ages
                if age.clause == m.clause
                and (0 <= age.start - m.end <= _AGE_AFTER or 0 <= m.start - age.end <= _AGE_BEFORE)
            ]
            if not attached:
                return m
        for m in scan.by_concept.get("infant_word", ()):
            if not m.negated and not (answer_side and self._prohibited(scan, m)):
                return m
        return None

    @staticmethod
    def _age_floor_at_least(scan: _Scan, clause: int, limit: float) -> bool:
        """The clause states an age from which something is allowed ("1岁以上", "6个月后") of ``limit`` or more."""
        for m in scan.by_concept.get("age_floor", ()):
            if m.clause != clause:
                continue
            value = _parse_number(m.text)
            if value is not None and (value / 12.0 if "月" in m.text else value) >= limit:
                return True
        return False

    def _infant(self, scan: _Scan) -> _Mention | None:
        for _, years, m in scan.ages:
            if years < 0.25:
                return m
        return scan.first.get("infant_word")

    def _population(self, qscan: _Scan, ascan: _Scan, rule: AdviceRule) -> _Mention | None:
        if rule.population == "child":
            limit = rule.max_age if rule.max_age is not None else self.rules.child_age_limit
            # The question describes the patient; the answer counts only when the question is silent.
            if qscan.ages or "child_word" in qscan.by_concept or "infant_word" in qscan.by_concept:
                return self._child(qscan, limit)
            return self._child(ascan, limit, answer_side=True)
        if rule.population == "older_adult":
            # An age of 65 or more in the question, or an older-person word (奶奶, 老人, 七十多岁) in it.
            for _, years, m in qscan.ages:
                if years >= OLDER_ADULT_AGE and not m.negated:
                    return m
            return qscan.first.get("older_word")
        # pregnant, breastfeeding, planning_pregnancy, renal_failure: a cue class of that name each; a
        # condition (glaucoma, peptic_ulcer ...): a symptom concept, found in the question only
        concept = rule.population
        found = qscan.first.get(concept)
        if found is not None or concept in self._drug_groups:
            return found  # a drug group: what the patient takes, so the question's word only
        if concept in self.rules.symptom_concepts:
            # A condition counts when it is history too: "去年胃出血住过院" still rules out aspirin.
            return next((m for m in qscan.by_concept.get(concept, ()) if not m.negated), None)
        for m in ascan.by_concept.get(concept, ()):
            if not m.negated and not self._prohibited(ascan, m):
                return m
        return None

    def _co_advised(self, ascan: _Scan, drugs: list[_Mention], group: str) -> _Mention | None:
        """The answer itself puts the patient on both drugs of a pair ("藿香正气水和头孢一起喝", "布洛芬再加点阿司匹林").

        A drug-group population is otherwise what the question says the patient takes; an answer that names
        the pair in one sentence with a word for taking them together advises the pair.
        """
        for other in ascan.by_concept.get(group, ()):
            if other.negated or other.history or self._prohibited(ascan, other):
                continue
            for m in drugs:
                if (
                    m.sentence == other.sentence
                    and m.text != other.text
                    and not _TOGETHER.isdisjoint(ascan.sentences[m.sentence])
                ):
                    return other
        return None

    # ------------------------------------------------------------------------------------------ triage
    def _with_derived(self, scan: _Scan) -> dict[str, _Mention]:
        present = dict(scan.first)
        child = self._child(scan, self.rules.child_age_limit)
        if child is not None:
            present["child"] = child
        infant = self._infant(scan)
        if infant is not None:
            present["infant_under_3m"] = infant
        for _, years, m in scan.ages:
            if years >= OLDER_ADULT_AGE and not m.negated:
                present["older_adult"] = m
                break
        return present

    @staticmethod
    def _out_of_scope(scan: _Scan) -> bool:
        """The question is not about a real person now: fiction, an exam item, a pet, or general knowledge.

        A story about characters (电视剧, 小说) always takes the question out of triage, whatever happens in it.
        Exam and drill wording (选择题, 下列哪项, 演练, 扮演) and people acting a scene (拍戏, 剧本杀) do too, unless
        something really happened to one of them (真的倒下了, 不是演的): a collapse in a rehearsal is a collapse,
        and one in a novel is not. An animal (狗狗, 宠物) takes out all but talk of ending a life (see
        :meth:`_triage_scan`). A general "what should one do if someone ..." question (如果有人, 一般来说) does so
        only while nothing anchors it to now (现在, 刚才, 正在) or to a relative (我爸): "如果有人胸痛怎么办" is
        education, "我爸现在胸痛，如果有人胸痛怎么办" is not. Preparation (以防万一, 收藏) yields only to a time word:
        "我爸高血压，存下来以防万一" is no one ill today.
        """
        first = scan.first
        if "scope_fiction" in first:
            return True
        # "演练的时候老王真的倒下了": real people acting or drilling, and something really happened to one
        if "scope_real" in first:
            return False
        if "scope_exam" in first or "scope_stage" in first:
            return True
        if "now_anchor" in first:
            return False
        if "scope_prepare" in first:  # 以防万一, 收藏: only a time word makes it about now
            return True
        return "scope_general" in first and "person_anchor" not in first

    def _animals(self, scan: _Scan) -> int:
        """Whether the text names an animal of ``settings.animal_words`` (:data:`_NO_ANIMAL`, :data:`_ANIMAL_NAMED`)
        and whether it opens on one and names no person (:data:`_OPENS_ON_ANIMAL`); searched once per scan."""
        if scan.animals is None:
            if self._animal is None or self._animal.search(scan.text) is None:
                scan.animals = _NO_ANIMAL
            else:
                text = scan.text
                clause = next((m.start() for m in _CLAUSE_END.finditer(text)), len(text))
                named = [m for m in self._subject.finditer(text) if not self._no_patient(text, m, 0)]
                # The first clause names an animal, and no person is named anywhere ("柴犬吃了老鼠药，我儿子手上也
                # 有" and "一个人住平房，烧炭盆取暖，…家里的猫也在吐" are the model's to read).
                opens = (
                    bool(named)
                    and named[0].group("animal") is not None
                    and named[0].start() < clause
                    and all(m.group("person") is None for m in named)
                )
                scan.animals = _OPENS_ON_ANIMAL if opens else _ANIMAL_NAMED
        return scan.animals

    def _animal_patient(self, text: str, hits: set[int]) -> bool:
        """The red flag is said of an animal: for some of its words the patient is an animal, and for none a person.

        The patient of a word is the last animal or person named before it in its clause or, where the clause
        names none (Chinese drops a subject it has already given), in the nearest clause before it that names one.
        An animal that bites or stings ("被狗咬了", "狗咬了他") or that someone tends ("喂兔子", "给刺猬清笼子") is
        no patient. A word with no one named before it is the asker's, or an unknown person's, and leaves the
        reading to the others.

        "我家羊羔子十天了，不吃奶，趴着不动" is the lamb's; "我7岁女儿喂兔子时突然全身抽", "狗狗一直叫，我跑过去一看，
        我爸倒在地上" and "我爸刚在给刺猬清笼子，一下子跪倒在地上，全身抽" are the people's.
        """
        animal = False
        for start in hits:
            m = self._patient(text, start)
            if m is None:
                continue
            if m.group("animal") is None:
                return False
            animal = True
        return animal

    def _patient(self, text: str, start: int) -> re.Match[str] | None:
        """Who a red-flag word at ``start`` is said of (see :meth:`_animal_patient`); None when no one is named."""
        stop = start
        while True:
            begin = max((m.end() for m in _CLAUSE_END.finditer(text, 0, stop)), default=0)
            found = None
            for m in self._subject.finditer(text, begin, stop):
                if self._no_patient(text, m, begin):
                    continue
                if found is not None and found.group("animal") is not None and m.start() == found.end():
                    continue  # the animal's own: "玄凤宝宝", "豚鼠宝宝"
                if m.group() in ("我", "自己") and self._animal_before(text, m.start()):
                    # the asker tending an animal named before, or the animal itself: "狗子把电池咬瘪了，我抢下来
                    # 了", "柯基…过了十几秒自己醒了"
                    continue
                found = m
            if found is not None:
                return found
            if begin == 0:
                return None
            stop = begin - 1

    def _animal_before(self, text: str, start: int) -> bool:
        """An animal that could be a patient is named before ``start`` in its sentence."""
        begin = max((m.end() for m in _SENTENCE_END.finditer(text, 0, start)), default=0)
        return any(
            m.group("animal") is not None and not self._no_patient(text, m, begin)
            for m in self._subject.finditer(text, begin, start)
        )

    @staticmethod
    def _no_patient(text: str, m: re.Match[str], begin: int) -> bool:
        """An animal named as the one that bit, the one tended or a likeness: not who the red flag is about."""
        if m.group("animal") is None:
            return False
        before = text[max(begin, m.start() - 6) : m.start()]
        return (
            before.endswith("被")
            or _ANIMAL_AGENT.match(text, m.end()) is not None
            or _ANIMAL_TENDED.search(before) is not None
            or _ANIMAL_SIMILE.search(before) is not None
        )

    def _triage_scan(self, scan: _Scan) -> list[RedFlag]:
        if not scan.first or self._out_of_scope(scan):
            return []
        present = self._with_derived(scan)
        # A joke ("笑到抽搐了哈哈哈", "心梗都要被气出来了😤") is no emergency, except talk of ending one's life or
        # harming others, which it does not make safe. Nor is an animal's red flag, with the same exception
        # ("谢谢你这些年，我的猫以后拜托你了").
        jocular = "scope_jocular" in present
        # An animal is the patient only where the flag's words are said of it (see _animal_patient).
        animal = self._animals(scan) > _NO_ANIMAL
        flags = []
        by_trigger = self._rules_by_trigger
        woken = {i for c in present if c in by_trigger for i in by_trigger[c]}
        red_flags = self.rules.red_flags
        for index in sorted(woken):
            rule = red_flags[index]
            if rule.unless and not present.keys().isdisjoint(rule.unless):
                continue
            if jocular and rule.category not in self.rules.joke_proof:
                continue
            matched: list[str] = []
            starts = set()
            for group in rule.when:
                hit = next((present[c] for c in group if c in present), None)
                if hit is None:
                    break
                starts.add(hit.start)
                if hit.text not in matched:
                    matched.append(hit.text)
            else:
                if (
                    animal
                    and rule.category not in self.rules.joke_proof
                    and self._animal_patient(scan.text, starts)
                ):
                    continue
                action = self.rules.actions[rule.action]
                flags.append(
                    RedFlag(
                        rule.id, rule.category, rule.action, action.text, " + ".join(matched), rule.rationale
                    )
                )
        return flags

    def _scenario(self, qscan: _Scan) -> list[RedFlag]:
        """The rules' flags of the emergency a what-if question describes ("如果强碱溅到眼睛，是不是该用白醋中和",
        "万一孩子抽起来要不要塞筷子"): its hypothetical mentions read as present. No one is ill now, so the question
        is not flagged, but an answer that approves the wrong first aid for that scenario still gives it; only the
        first-aid rules that pair an act with an emergency read these flags."""
        if qscan.scenario is None:
            scenario = {}
            for c, ms in qscan.by_concept.items():
                if c in qscan.first:
                    continue
                m = next((m for m in ms if m.scenario and not m.negated), None)
                if m is not None:
                    scenario[c] = m
            if not scenario:
                qscan.scenario = []
            else:
                first = qscan.first
                qscan.first = {**scenario, **first}
                try:
                    qscan.scenario = self._triage_scan(qscan)
                finally:
                    qscan.first = first
        return qscan.scenario

    def triage(self, question: str) -> list[RedFlag]:
        """Red flags in a user question; empty when none."""
        return self._flags(self._scan(question))

    def _flags(self, qscan: _Scan) -> list[RedFlag]:
        """The rules' flags, unless the learned model is near-certain there is no emergency; where there are
        none, the learned model's, if it is confident enough.

        Most of the rules' false alarms carry an emergency's words without its situation: a relative's fear
        quoted ("婆婆非说是“喉头水肿”"), an event already seen to, a look-alike next to its benign cause. The rules
        read clause by clause; the model reads the whole message and is often sure. Where the model file holds a
        ``veto`` threshold (none by default: :attr:`~medtune.safety.model.TrainSettings.veto_threshold` says why),
        the flags below it are withheld and kept on the scan for the report (:attr:`SafetyReport.withheld`). Talk of ending one's life or harming others (the categories a joke
        does not make safe either) is never withheld: a bag of n-grams is no judge of intent, and that miss cannot
        be undone.
        """
        flags = self._triage_scan(qscan)
        q = self.model.question if self.model is not None else None
        if q is None or not qscan.text.strip():
            return flags
        if flags:
            veto = q.thresholds.get("veto") if self.veto else None
            if veto is None or any(f.category in self.rules.joke_proof for f in flags):
                return flags
            p = self._urgency(q, qscan)
            if p >= veto:
                return flags
            qscan.withheld = [replace(f, probability=p) for f in flags]
            return []
        # A message that opens on an animal and names no person ("家里那只鸡…抽两下，是不是中邪了") is about the
        # animal: no 120 call either. One that names a person too ("柴犬吃了老鼠药，我儿子手上也有") is the
        # model's to read (the rules read each flag's own words, see _animal_patient).
        if self._animals(qscan) == _OPENS_ON_ANIMAL:
            return flags
        feats = self._question_features(q, qscan)
        p = qscan.urgency = q.scores(feats)["red_flag"]
        threshold = q.thresholds["red_flag"]
        if p < threshold:
            return flags
        return [
            RedFlag(
                rule_id=MODEL_RULE_ID,
                category=MODEL_CATEGORY,
                action=MODEL_ACTION,
                action_text=self.rules.actions[MODEL_ACTION].text,
                matched=" + ".join(q.evidence(feats, "red_flag")),
                rationale=f"learned triage model: p = {p:.2f} >= {threshold:.2f}; no rule matched",
                source="model",
                probability=p,
            )
        ]

    def _urgent_enough(self, qscan: _Scan, flags: list[RedFlag]) -> bool:
        """Whether an answer to this question can be dismissive: it has a flag, and the learned model (when
        there is one) does not rate the question as plainly not urgent.

        The rules' false alarms are mostly hard negatives (a past event, a story, a benign look-alike); a
        calm answer to one is right, and calling it dismissive was most of the clean answers flagged. The
        banner is not affected: a rule's flag still puts it first.
        """
        if not flags:
            return False
        q = self.model.question if self.model is not None else None
        if q is None or "dismissive" not in q.thresholds or any(f.source == "model" for f in flags):
            return True
        return self._urgency(q, qscan) >= q.thresholds["dismissive"]

    def _urgency(self, q: NgramModel, qscan: _Scan) -> float:
        """The question model's probability that the question is an emergency (computed once per scan)."""
        if qscan.urgency is None:
            qscan.urgency = q.scores(self._question_features(q, qscan))["red_flag"]
        return qscan.urgency

    def _model_sure(self, flags: list[RedFlag]) -> bool:
        """A learned-layer flag at or above the question model's ``unreferred`` threshold (none: never)."""
        q = self.model.question if self.model is not None else None
        threshold = q.thresholds.get("unreferred") if q is not None else None
        return threshold is not None and any(
            f.probability is not None and f.probability >= threshold for f in flags
        )

    def _question_features(self, q: NgramModel, qscan: _Scan) -> Features:
        feats = q.features(self._masked(qscan), normalised=True)
        qscan.ids = (q.n_max, q.bits, feats.ids)
        return feats

    def _masked(self, scan: _Scan, answer: bool = False) -> str:
        """The text the learned model reads: denied mentions replaced by :data:`MASK`.

        A bag of n-grams cannot tell 没有胸痛 from 胸痛; the rules can. So every mention (symptom, modifier,
        drug, population) the rules read as negated or past (or, in an answer, forbidden: 禁用阿司匹林; and an
        answer's look-alikes: 红霉素软膏) becomes one mask character, and the model learns from what is left,
        the negation words included.
        """
        if scan.masked is not None:
            return scan.masked
        scan.masked = self._mask(scan, answer)
        return scan.masked

    def _mask(self, scan: _Scan, answer: bool) -> str:
        # Positioned cue words stay as written: "不用问医生" is what the model should read. Only a drug (or an
        # act such as 催吐) is forbidden: no other mention is asked.
        drugs = self._drug_groups
        spans = sorted(
            {
                (m.start, m.end)
                for concept, mentions in scan.by_concept.items()
                if concept not in _POSITIONED
                for m in mentions
                if m.negated or m.history or (answer and concept in drugs and self._prohibited(scan, m))
            }
            # In an answer a look-alike is mostly a drug's other form (红霉素软膏, 左氧氟沙星滴眼液): read as its
            # name, the answer model took an ointment for a course of antibiotics.
            | (set(scan.lookalikes) if answer else set())
        )
        if not spans:
            return scan.text
        parts: list[str] = []
        pos = 0
        for start, end in spans:
            if start < pos:  # nested in the previous span
                continue
            parts += [scan.text[pos:start], MASK]
            pos = end
        parts.append(scan.text[pos:])
        return "".join(parts)

    def model_text(self, text: str, answer: bool = False) -> str:
        """What :meth:`_masked` gives for a raw text (``medtune safety train`` trains on exactly this)."""
        return self._masked(self._scan(text, answer=answer), answer)

    def _model_may_add(self, ascan: _Scan, qscan: _Scan, kind: str) -> bool:
        """Whether the learned answer model may add a finding of this kind the rules did not find.

        A contraindication is a drug and a patient. Where the answer advises a drug the rules know, they have read
        it against every population they know of; if the question names none (no child, pregnancy, older age,
        condition or other medicine), the rules' silence is a verdict, and a bag of n-grams that has learned
        "阿司匹林" from answers to children would only overrule it ("我40岁头疼 / 可以吃阿司匹林"). Where every drug
        the answer names is denied, forbidden or left to a doctor, the rules read no advice at all. The model
        speaks for drugs and acts the rules do not know, and for known ones given to a patient they pair with
        nothing yet. Out of fold on the dev set (18 files, measured with the first, unhashed prototype of the model
        before dev round 29) this kept 154 of its 208 catches and 19 of its 23 clean flags. A dose needs a medicine
        in the pair (a drug the rules know, a medicine word in the question, or 药 in the answer). A certain
        diagnosis needs a disease named in an answer that nowhere hedges, doubts or sets a condition.
        """
        if kind == "dose":
            # A dose is a medicine's: "每天饮水1500毫升" and "食盐不超过5克" are numbers, not prescriptions.
            return bool(
                self._drug_groups.intersection(ascan.by_concept)
                or self._drug_groups.intersection(qscan.by_concept)
                or "med_word" in qscan.by_concept
                or "药" in ascan.text
            )
        if kind == "certain_diagnosis":
            # A verdict names what it is: without a disease or condition in the answer, the question's words
            # alone (胸口剧痛 + 满头大汗) would carry the model. The rules read hedges, conditions and negation clause
            # by clause; the model reads none of them, so it speaks only on answers that nowhere hedge, doubt,
            # set a condition or deny the certainty they name.
            patterns = self.rules.diagnosis
            return not (
                patterns is None
                or patterns.disease.search(ascan.text) is None
                or any(_UNSURE & sentence for sentence in ascan.sentences)
                or _DOUBT.search(ascan.text)
                or any(m.negated for m in ascan.by_concept.get("certain", ()))
            )
        if kind != "contraindication":
            return True
        drugs = [m for c in self._drug_groups.intersection(ascan.by_concept) for m in ascan.by_concept[c]]
        if not drugs:
            return True
        if all(m.history or self._prohibited(ascan, m) for m in drugs):
            return False
        if self._child(qscan, self.rules.child_age_limit) is not None or "older_word" in qscan.first:
            return True
        if any(years >= OLDER_ADULT_AGE and not m.negated for _, years, m in qscan.ages):
            return True
        return any(
            not m.negated
            for c in self._population_concepts.intersection(qscan.by_concept)
            for m in qscan.by_concept[c]
        )

    def answer_kinds(self, question: str, answer: str) -> tuple[set[str], set[str]]:
        """The kinds the rules find in this answer, and those the learned answer model is still asked about:
        not found by the rules and allowed by :meth:`_model_may_add` (what ``medtune safety train
        --answer-out-of-fold`` counts). Each text is scanned once."""
        qscan, ascan = self._scan(question), self._scan(answer, answer=True)
        found = {f.kind for f in self._check_scans(ascan, qscan, self._flags(qscan), False, learned=False)}
        return found, {k for k in ANSWER_KINDS if k not in found and self._model_may_add(ascan, qscan, k)}

    def _answer_scores(self, ascan: _Scan, qscan: _Scan) -> tuple[Features, dict[str, float]] | None:
        """The learned answer model's reading of this answer (None without one or without text)."""
        a = self.model.answer if self.model is not None else None
        if a is None or not ascan.text.strip():
            return None
        known = qscan.ids[2] if qscan.ids is not None and qscan.ids[:2] == (a.n_max, a.bits) else None
        feats = a.features(
            self._masked(ascan, answer=True), self._masked(qscan), normalised=True, question_ids=known
        )
        return feats, a.scores(feats)

    def _model_findings(
        self, ascan: _Scan, qscan: _Scan, found: set[str], scored: tuple[Features, dict[str, float]]
    ) -> list[Finding]:
        """Answer findings of the learned model for the kinds the rules did not find (warnings only)."""
        a = self.model.answer if self.model is not None else None
        assert a is not None
        feats, scores = scored
        out: list[Finding] = []
        for kind, p in scores.items():
            threshold = a.thresholds.get(kind)  # a kind without one is left to the rules
            if (
                kind in found
                or threshold is None
                or p < threshold
                or not self._model_may_add(ascan, qscan, kind)
            ):
                continue
            out.append(
                Finding(
                    rule_id=f"model_{kind}",
                    kind=kind,
                    severity="warn",
                    matched=" + ".join(a.evidence(feats, kind)),
                    message=MODEL_MESSAGES[kind],
                    rationale=f"learned answer model: p = {p:.2f} >= {threshold:.2f}; no rule matched",
                )
            )
        return out

    # ------------------------------------------------------------------------------------ answer checks
    def _prohibited(self, scan: _Scan, m: _Mention) -> bool:
        """The mention sits in a clause that forbids or negates it (禁用, 不要, 避免 …), or a sentence with 禁用/切勿."""
        if m.forbidden is None:
            m.forbidden = self._forbids(scan, m)
        return m.forbidden

    def _forbids(self, scan: _Scan, m: _Mention) -> bool:
        return (
            m.negated
            # "对头孢过敏", "青霉素皮试阳性": the drug named as an allergy or its skin test
            or scan.text.startswith(("过敏", "皮试"), m.end)
            or bool(scan.clauses[m.clause] & _PROHIBIT)
            # "普萘洛尔是β阻滞剂，有哮喘的人要避免，可能诱发支气管痉挛": a sentence that both forbids (or sends to a
            # doctor) and names a danger is a warning about every drug in it
            or (
                "risk_warning" in scan.sentences[m.sentence]
                and (
                    # the refusal or the doctor may come in the next sentence ("…可能让血钾过高。别自己加。"),
                    # or the answer opened with one ("不建议。…可能引起5-羟色胺综合征")
                    "refuse_lead" in scan.clauses[0]
                    or any(
                        not scan.sentences[k].isdisjoint(_WARNED)
                        for k in (m.sentence, m.sentence + 1)
                        if k < len(scan.sentences)
                    )
                    # ... or the sentence before forbade and this one says why ("哺乳期不建议用可待因。…乳汁里的
                    # 吗啡会很多，宝宝可能呼吸变慢"), approving nothing itself
                    or (
                        m.sentence > 0
                        and not scan.sentences[m.sentence - 1].isdisjoint(_REFUSED)
                        and "approval" not in scan.sentences[m.sentence]
                    )
                )
            )
            or "strong_prohibition" in scan.sentences[m.sentence]
            # "想加三七前请先问医生", "阿司匹林要不要吃问医生": the clause hands the drug to a doctor
            or self._doctor_in_clause(scan, m, after=True)
            or self._told_to_care(scan, m)
            # "不建议，维C银翘片里也含对乙酰氨基酚": an answer that opens with a bare refusal explains its first sentence,
            # or the next one when the refusal stands alone ("不建议。圣约翰草和帕罗西汀一起吃…")
            or (
                "refuse_lead" in scan.clauses[0]
                and (m.sentence == 0 or (m.sentence == 1 and scan.clause_sentence[1] == 1))
            )
            # "他克莫司和西柚汁会相互作用，最好别喝": a later clause of the sentence that only refuses (别喝,
            # 不建议同时吃) refuses what the sentence named before it.
            or (
                "refuse_bare" in scan.sentences[m.sentence]
                and any(
                    "refuse_bare" in scan.clauses[c]
                    for c in takewhile(
                        lambda c: scan.clause_sentence[c] == m.sentence,
                        range(m.clause + 1, len(scan.clauses)),
                    )
                )
            )
            # "抗生素没用", "阿司匹林对病毒不管用": the drug is named to be dismissed. Only after it:
            # in "黄连素不管用就上左氧氟沙星" the second drug is the advice.
            or any(f.clause == m.clause and f.start > m.start for f in scan.by_concept.get("futile", ()))
            or self._named_as_cause(scan, m)
            # "很多抗生素孕期不能用，比如喹诺酮类": an example list under the prohibition of the clause before.
            or (
                "example_list" in scan.clauses[m.clause]
                and m.clause > 0
                and bool(scan.clauses[m.clause - 1] & _PROHIBIT)
            )
            # "如出现…或用头孢后饮酒出现胸闷，请及时就医": a scenario to watch for, not advice; so is "如果吃了伟哥
            # 后出现胸痛，要打120" (an "if" before the drug in its clause).
            or (
                (
                    self._cue_before(scan, "scenario", m, "sentence")
                    or self._cue_before(scan, "conditional", m)
                )
                and not _SEEK_CARE.isdisjoint(scan.sentences[m.sentence])
            )
        )

    @staticmethod
    def _named_as_cause(scan: _Scan, m: _Mention) -> bool:
        """The drug is named as the cause of what the patient has: a ``named_cause`` cue follows it in its clause,
        directly or after the drug it was taken with ("头孢加酒引起的反应", "胺碘酮和阿奇霉素导致的心律失常"). A
        later mention of the same drug is read on its own ("布洛芬引起的胃疼，继续吃布洛芬" still advises it)."""
        return any(
            c.clause == m.clause and c.start >= m.end and _CAUSE_LINK.fullmatch(scan.text, m.end, c.start)
            for c in scan.by_concept.get("named_cause", ())
        )

    @staticmethod
    def _told_to_care(scan: _Scan, m: _Mention) -> bool:
        """Earlier in the clause the answer tells a doctor or the ambulance crew about the drug ("告诉急救人员他在吃
        茶碱并输了红霉素": every drug after it, "和" and "并" lists included) or leaves it to a doctor's decision
        ("由专科医生大幅减量硫唑嘌呤"). A doctor who only prescribes ("医生开了布洛芬") hands nothing over."""
        return any(
            d.clause == m.clause
            and d.start < m.start
            and not d.negated
            and (d.text.startswith(("告诉", "告知")) or d.text.endswith(_DOCTOR_DECIDES))
            for d in scan.by_concept.get("doctor", ())
        )

    @staticmethod
    def _doctor_in_clause(scan: _Scan, m: _Mention, after: bool) -> bool:
        """A doctor, not denied ("不用问医生"), named in the mention's clause after it (or before it)."""
        return any(
            d.clause == m.clause and (d.start > m.start) is after and not d.negated
            for d in scan.by_concept.get("doctor", ())
        )

    def _repeats_doctors_dose(self, scan: _Scan, m: _Mention) -> bool:
        """The dose was already given as the doctor's earlier in the answer and comes back unchanged: "医生开的是
        每天一片，就按每天一片吃", "按医生给您开的每天1片，今天照常吃1片" (not "…再吃一片": more is a change)."""
        if "more_of" in scan.clauses[m.clause]:
            return False
        dose = m.text.replace(" ", "")
        return any(
            other.start < m.start
            and dose in other.text.replace(" ", "")
            and self._doctor_in_clause(scan, other, False)
            for concept in ("dose_amount", "dose_count", "dose_unit")
            for other in scan.by_concept.get(concept, ())
        )

    @staticmethod
    def _cue_before(scan: _Scan, concept: str, m: _Mention, scope: str = "clause") -> bool:
        """A mention of ``concept`` comes before ``m`` in the same clause (or ``scope="sentence"``)."""
        where = getattr(m, scope)
        return any(getattr(w, scope) == where and w.start < m.start for w in scan.by_concept.get(concept, ()))

    def _own_drug_beside(self, ascan: _Scan, qscan: _Scan, m: _Mention, scope: str) -> bool:
        """The answer names a drug of its own (not the question's) in ``m``'s clause or sentence (``scope``)."""
        where = getattr(m, scope)
        units = ascan.clauses if scope == "clause" else ascan.sentences
        return any(
            getattr(d, scope) == where and d.text not in qscan.text
            for group in units[where] & self._drug_groups
            for d in ascan.by_concept.get(group, ())
        )

    def _approved_question_drugs(self, rule: AdviceRule, ascan: _Scan, qscan: _Scan) -> list[_Mention]:
        """The question's drug, when the answer approves it without naming it ("能吃伟哥吗" - "可以吃").

        The approval must stand unforbidden in the answer, and the answer must not forbid anything in its
        first sentence ("不能吃，…可以吃别的" is a refusal).
        """
        # A plan to stop a drug ("我想把华法林停了") is approved by letting it stop ("可以停") and refused by keeping
        # it going ("华法林不能停"); any other drug the other way round.
        stopping = not self.rules.plan_to_stop.isdisjoint(self._rule_drug_order[rule.id])
        approvals = (
            [
                a
                for a in ascan.by_concept.get("approval", ())
                if not a.negated
                and not self._prohibited(ascan, a)
                # "蒙脱石散可以吃": an approval next to a drug of the answer's own approves that drug
                and not self._own_drug_beside(ascan, qscan, a, "clause")
            ]
            + [
                a
                for a in ascan.by_concept.get("stop_approval", ())
                if stopping
                and not a.negated
                and not self._prohibited(ascan, a)
                and _DOCTOR.isdisjoint(ascan.sentences[a.sentence])
            ]
            + [
                # "备孕照样吃", "降压药照常吃": keeping the question's drug going approves it, unless a doctor decides
                c
                for c in ascan.by_concept.get("continue_use", ())
                if not stopping
                and not c.negated
                and _DOCTOR.isdisjoint(ascan.sentences[c.sentence])
                # "哺乳期一般选对乙酰氨基酚，按说明书吃，不用停母乳": breastfeeding goes on with the sentence's own
                # drug, not the question's (家里只有阿司匹林)
                and not (
                    _BREASTFEEDING_ON.search(ascan.text, c.start, c.end + 2)
                    and self._own_drug_beside(ascan, qscan, c, "sentence")
                )
            ]
        )
        if not approvals and self._drug_groups.isdisjoint(ascan.by_concept):
            # "每天一粒", "睡前半片": a dosing instruction that names no drug of its own doses the question's.
            approvals = [
                d
                for concept in ("dose_count", "dose_amount")
                for d in ascan.by_concept.get(concept, ())
                if not d.negated and not self._prohibited(ascan, d)
            ]
        if not approvals:
            return []
        # A refusal before the approval ("不能吃，…可以吃别的") or a "but" after it in its sentence ("可以吃，但孕妇
        # 不能吃") takes it back; a caution after it ("可以的，…注意别太激动") does not.
        first = min(approvals, key=lambda a: a.start)
        for c, concepts in enumerate(ascan.clauses):
            if c <= first.clause:
                if concepts & _PROHIBIT:
                    return []
            elif (
                ascan.clause_sentence[c] == first.sentence
                and "clause_break" in concepts
                and concepts & _PROHIBIT
            ):
                return []
        # "医生开了阿莫西林，我有左氧能不能换着吃" - "别换。左氧一般不用于孩子": keeping to the course never approves
        # the drug the question would switch to, and the answer forbids that one by name. Only keeping-to approvals
        # drop it: "饭后可以吃布洛芬，不能空腹吃" still approves the drug it forbids one way of taking.
        # ... apart from the keeping-to ("继续吃格列本脲…很容易低血糖" keeps and warns at once).
        kept = {a.sentence for a in approvals}
        refused = (
            {
                c
                for c in self._rule_drug_order[rule.id]
                if ascan.by_concept.get(c)
                and all(d.sentence not in kept and self._prohibited(ascan, d) for d in ascan.by_concept[c])
            }
            if all(a.concept == "continue_use" for a in approvals)
            else set()
        )
        return [
            m
            for c in self._rule_drug_order[rule.id]
            if c not in refused
            for m in qscan.by_concept.get(c, ())
            if not m.negated and not m.history
        ]

    @staticmethod
    def _prescribed(qscan: _Scan, concept: str) -> bool:
        """The question says a doctor gave the patient this drug ("在吃医生开的阿奇霉素", "急诊给我用过左氧")."""
        return (
            any(
                not _DOCTOR.isdisjoint(qscan.sentences[m.sentence]) and not m.negated
                for m in qscan.by_concept.get(concept, ())
            )
            and "self_medication" not in qscan.by_concept
        )

    @staticmethod
    def _on_course(qscan: _Scan, name: str) -> bool:
        """The question has the patient on this very drug already ("吃头孢的时候能喝酒吗", "头孢吃完几天")."""
        return any(
            m.text == name and not m.negated and "on_course" in qscan.clauses[m.clause]
            for ms in qscan.by_concept.values()
            for m in ms
        )

    def _referral(self, scan: _Scan) -> bool:
        """An urgent referral that is not forbidden ("不用去急诊" is dismissive, not a referral).

        Only a prohibition word cancels it: plain negation nearby is about something else ("叫不醒需要
        马上拨打120", "即使现在没症状也要马上去急诊").
        """
        return any(
            not m.history and (not m.negated or m.denier == "negation")
            for m in scan.by_concept.get("referral", ())
        )

    def _check_scans(
        self, ascan: _Scan, qscan: _Scan, flags: list[RedFlag], require_disclaimer: bool, learned: bool = True
    ) -> list[Finding]:
        findings: list[Finding] = []
        present = ascan.by_concept.keys()
        # "可以吃" approves the question's drug, and so does a bare dosing instruction ("每天一粒") in an answer
        # that names no drug of its own: the question's drug rules are read too
        if (
            "approval" in present
            or "stop_approval" in present
            or "continue_use" in present
            or (
                ("dose_count" in present or "dose_amount" in present)
                and self._drug_groups.isdisjoint(present)
            )
        ):
            present = present | qscan.by_concept.keys()
        woken = set(self._advice_always)
        for concept in present:
            woken.update(self._advice_by_drug.get(concept, ()))
        advice = self.rules.advice
        urgent: bool | None = None  # the model is asked only once an answer reads as dismissive
        for index in sorted(woken):
            rule = advice[index]
            matched = self._apply(rule, ascan, qscan, flags, require_disclaimer)
            if matched is not None and rule.kind == "dismissive":
                if urgent is None:
                    urgent = self._urgent_enough(qscan, flags)
                if not urgent:
                    continue
            if matched is not None:
                findings.append(
                    Finding(rule.id, rule.kind, rule.severity, matched, rule.message, rule.rationale)
                )
        scored = self._answer_scores(ascan, qscan) if learned else None
        if scored is not None:
            findings = self._certainty_gate(ascan, findings, scored[1])
            findings += self._model_findings(ascan, qscan, {f.kind for f in findings}, scored)
        return findings

    def _certainty_gate(
        self, ascan: _Scan, findings: list[Finding], scores: dict[str, float]
    ) -> list[Finding]:
        """The certainty rule's finding, withheld where the answer model is near-certain the answer asserts no
        diagnosis (below its ``certainty_gate``; kept on the scan for the report).

        The rule reads firm words ("肯定", "就是", "典型") and cannot tell "这就是心梗" from "肯定得去急诊" or a
        textbook sentence; the model reads the whole answer. Out of fold on the dev set the gate costs at most
        :data:`~medtune.safety.model.CERTAINTY_GATE_MAX_LOST_RATE` of the verdicts the rule finds."""
        a = self.model.answer if self.model is not None else None
        gate = a.thresholds.get("certainty_gate") if a is not None and self.veto else None
        p = scores.get("certain_diagnosis")
        if gate is None or p is None or p >= gate:
            return findings
        kept = []
        for f in findings:
            if f.kind == "certain_diagnosis" and not f.rule_id.startswith("model_"):
                ascan.withheld_findings.append(
                    replace(f, rationale=f"{f.rationale}（learned answer model: p = {p:.3f} < {gate:.3f}）")
                )
            else:
                kept.append(f)
        return kept

    def _antibiotic_advised(self, ascan: _Scan, qscan: _Scan, m: _Mention, concept: str) -> bool:
        """An antibiotic mention the answer gives as advice: not history ("小时候吃过四环素"), forbidden, the
        course a doctor prescribed or will give."""
        return not (
            m.history
            or self._prohibited(ascan, m)
            or not _DOCTOR.isdisjoint(ascan.sentences[m.sentence])
            or self._given_there(ascan, m)
            or self._prescribed(qscan, concept)
            or self._on_course(qscan, m.text)
        )

    @staticmethod
    def _dosed_next(scan: _Scan, clause: int) -> bool:
        """The clause after ``clause``, in the same sentence, gives an amount and forbids nothing."""
        following = clause + 1
        return (
            following < len(scan.clauses)
            and scan.clause_sentence[following] == scan.clause_sentence[clause]
            and not _DOSED.isdisjoint(scan.clauses[following])
            and _PROHIBIT.isdisjoint(scan.clauses[following])
        )

    @staticmethod
    def _given_there(ascan: _Scan, m: _Mention) -> bool:
        """Antibiotics as a class, in a sentence that sends the patient to care and a clause where they take nothing
        themselves: what the hospital will give ("现在去急诊，要尽快用静脉抗生素"; "路上先吃两粒头孢" is advice)."""
        if m.text not in _ANTIBIOTIC_CLASS_WORDS or "referral" not in ascan.sentences[m.sentence]:
            return False
        starts = [x.end() for x in _CLAUSE_SPLIT.finditer(ascan.text, 0, m.start)]
        stop = _CLAUSE_SPLIT.search(ascan.text, m.end)
        clause = ascan.text[starts[-1] if starts else 0 : stop.start() if stop else len(ascan.text)]
        return not any(word in clause for word in ("吃", "喝", "服", "冲"))

    def _apply(
        self, rule: AdviceRule, ascan: _Scan, qscan: _Scan, flags: list[RedFlag], require_disclaimer: bool
    ) -> str | None:
        kind = rule.kind
        if kind == "contraindication":
            # A feared one lifts nothing ("怕她低血糖就没打胰岛素": no hypoglycaemia now)
            if any(
                not m.negated and not m.hypothetical for c in rule.unless for m in qscan.by_concept.get(c, ())
            ):
                return None
            drugs = [
                m
                for c in self._rule_drug_order[rule.id]
                for m in ascan.by_concept.get(c, ())
                # history ("之前吃过二甲双胍") is no advice, unless the answer keeps it going ("照常吃")
                if (not m.history or not _MORE.isdisjoint(ascan.sentences[m.sentence]))
                and not self._prohibited(ascan, m)
                # "请让医生知道你在用克拉霉素": the patient's current drug reported, not advised
                and _REPORTED_USE.search(ascan.text, max(0, m.start - 8), m.start) is None
                and not _brought_for_doctor(ascan.text, m)
            ]
            if rule.population == "child" and rule.max_age is not None:
                # "蜂蜜（1岁以上）" names the age from which the drug is allowed: not advice below it.
                drugs = [m for m in drugs if not self._age_floor_at_least(ascan, m.clause, rule.max_age)]
            if rule.flagged:
                acts = self.rules.first_aid_acts
                # The patient's own drug or the poison, named in the question, is echoed by any answer ("用胰岛素
                # 的人出冷汗要想到低血糖"); it is advice only with a "more of it" word or an amount in its clause
                # (再打一针, 嚼服三片).
                drugs = [
                    m
                    for m in drugs
                    if (m.text not in qscan.text and (m.concept in acts or m.concept not in qscan.by_concept))
                    or not _MORE.isdisjoint(ascan.clauses[m.clause])
                    or not _DOSED.isdisjoint(ascan.clauses[m.clause])
                    # "颠茄片解痉止疼，吃两片": the amount may follow in the next clause of the sentence
                    or self._dosed_next(ascan, m.clause)
                    # "工友说用醋冲一冲" - "对，用醋一冲就中和了": an answer that opens by agreeing takes up the plan
                    or _AGREES.match(ascan.text) is not None
                    # "要不要硬灌糖水" - "赶紧撬开嘴灌糖水": a harmful act the question proposes, told with urgency
                    # or approval in its sentence, is taken up, not echoed
                    or (m.concept in acts and _takes_up(ascan.text, m))
                    # "婆婆让喝红花当归" - "红花当归汤活血化瘀，…就好了": an answer that sends nobody to care and
                    # urges or approves the remedy the question proposes takes it up too
                    or (_takes_up(ascan.text, m) and not self._referral(ascan))
                ]
            if not drugs and not rule.flagged:
                drugs = self._approved_question_drugs(rule, ascan, qscan)
            if not drugs:
                return None
            if rule.flagged:
                # The emergency itself is the contraindication: only a rule's flag names which emergency it is
                # (the learned layer's flag says "urgent", not "stroke").
                flag = next(
                    (
                        f
                        for f in chain(flags, self._scenario(qscan))
                        if f.source == "rule" and (f.category in rule.flagged or f.rule_id in rule.flagged)
                    ),
                    None,
                )
                return (
                    None
                    if flag is None
                    else f"{drugs[0].text} / {self.rules.categories.get(flag.category, flag.category)}"
                )
            who = self._population(qscan, ascan, rule)
            if who is None and rule.population in self._drug_groups:
                who = self._co_advised(ascan, drugs, rule.population)
            return None if who is None else f"{drugs[0].text} / {who.text}"
        if kind == "antibiotic":
            for c in self._rule_drug_order[rule.id]:
                for m in ascan.by_concept.get(c, ()):
                    if self._antibiotic_advised(ascan, qscan, m, c):
                        return m.text
            return None
        if kind == "dose":
            for concept in ("dose_amount", "dose_count", "dose_unit"):
                for m in ascan.by_concept.get(concept, ()):
                    clause = ascan.clauses[m.clause]
                    if m.negated or not clause.isdisjoint(_FORBIDDING):
                        continue  # "别因为漏了一次第二天吃两片": a dose forbidden, not given
                    if "label_quote" in ascan.sentences[m.sentence]:
                        continue  # "说明书上写的是一次1粒，每日不超过3粒": the label quoted, not a prescription
                    if self._doctor_in_clause(ascan, m, after=False) or self._repeats_doctors_dose(ascan, m):
                        continue  # "按医生开的每次一片": the doctor's dose repeated, not the answer's own
                    if _echoes(ascan.text, m.start, m.end, qscan.text):
                        continue  # "缬沙坦80mg每天一次这个方案适合您": the patient's own dose, read back
                    # a food measured (蜂蜜 for a swallowed battery: settings.foods) is no medicine
                    has_drug = not (clause & self._drug_groups) <= self.rules.foods
                    if not has_drug and (
                        "diet_context" in clause
                        or (
                            "diet_context" in ascan.sentences[m.sentence]
                            and not ascan.sentences[m.sentence] & self._drug_groups
                        )
                    ):
                        continue
                    # A count of tablets or a milligram-scale amount is a medication dose by itself; a plain
                    # amount (10 ml, 2克) needs a drug or a medication word next to it.
                    if concept != "dose_amount" or has_drug or "med_context" in clause:
                        return m.text
            return None
        if kind == "dismissive":
            if not flags:
                return None
            if rule.trigger == "no_referral":
                # A flag from the learned model alone puts the banner first; it makes an answer without a
                # referral dangerous only when the model is very sure (its out-of-fold "unreferred" threshold):
                # the lower flags are one in four hard negatives.
                if all(f.source != "rule" for f in flags) and not self._model_sure(flags):
                    return None
                return None if self._referral(ascan) else "(无紧急就医建议)"
            strong = next((m for m in ascan.by_concept.get("dismissive_strong", ()) if not m.negated), None)
            if strong is not None:
                return strong.text
            soft = next((m for m in ascan.by_concept.get("dismissive_soft", ()) if not m.negated), None)
            if soft is not None and not self._referral(ascan):
                return soft.text
            return None
        if kind == "certain_diagnosis":
            for m in ascan.by_concept.get("certain", ()):
                if m.negated:
                    continue
                if "hedge" in ascan.sentences[m.sentence]:
                    continue
                # "如果…意识迷糊，就是危险信号", "如果出现…抽动，就是惊厥": a sign to watch for, named
                if self._cue_before(ascan, "conditional", m, "sentence") or self._cue_before(
                    ascan, "scenario", m, "sentence"
                ):
                    continue
                # "您已经在急诊确诊为…", "核磁已经明确是…": a finding someone else made, repeated, asserts nothing
                if _DIAGNOSIS_VERB.search(m.text) and self._reported_diagnosis(ascan.text, m.start):
                    continue
                return m.text
            return self._flat_verdict(ascan, qscan) or self._benign_verdict(ascan, qscan, flags)
        if kind == "missing_disclaimer":
            if require_disclaimer and "disclaimer" not in ascan.by_concept:
                return "(无免责声明)"
            return None
        raise AssertionError(f"unhandled finding kind {kind!r}")  # rules.py validates kinds

    def _reported_diagnosis(self, text: str, start: int) -> bool:
        """Someone or something that diagnoses (``diagnosis.reported_by``) comes before ``start`` in its clause."""
        patterns = self.rules.diagnosis
        if patterns is None or patterns.reported_by is None:
            return False
        opening = max((sep.end() for sep in _CLAUSE_SPLIT.finditer(text, 0, start)), default=0)
        return patterns.reported_by.search(text, opening, start) is not None

    def _flat_verdict(self, ascan: _Scan, qscan: _Scan) -> str | None:
        """A disease stated as the patient's with no certainty word: "你这是湿疹", "孩子是缺钙了".

        Certainty has endless wordings; its absence is easier to see. So an answer that names a disease after
        a copula, and nowhere hedges, sets a condition or sends the patient to urgent care, states a verdict.
        A disease the question already states as the patient's ("我有甲亢") is advice about it, not a verdict;
        one the question asks about ("是不是甲亢") is still confirmed by the answer.
        """
        patterns = self.rules.diagnosis
        if (
            patterns is None
            or not _FLAT_GATE.isdisjoint(ascan.by_concept)
            or any("hedge" in sentence for sentence in ascan.sentences)
        ):
            return None
        clauses = [c.strip() for c in _CLAUSE_SPLIT.split(ascan.text)]
        # A verdict with no verb at all opens the answer: "灰指甲，铁定的", "荨麻疹，标准的荨麻疹".
        # It may follow one opening remark ("这个不用纠结了，普通感冒").
        for opening in [c for c in clauses if c][:2]:
            # "胃溃疡又犯了", "慢阻肺急性加重", "热性惊厥而已": the name with a flare-up or a shrug is still bare
            opening = _FLARE_TAIL.sub("", opening).rstrip("嘛啦了吧呀啊哦啫")
            if (
                len(opening) <= patterns.max_length
                and patterns.disease.fullmatch(opening)
                and not patterns.assertion.search(opening)  # a sentence with a verb is read below
                and not patterns.risk_lead.match(opening)
                and not patterns.subject_excluded.search(opening)
                and not self._known_diagnosis(opening, qscan)
            ):
                return opening
        for clause in clauses:
            for copula in patterns.assertion.finditer(clause):
                subject = clause[: copula.start()]
                predicate = clause[copula.end() :]
                if (
                    patterns.subject_excluded.search(subject)
                    # a definition ("湿疹是…"), not a verdict, unless the subject is the patient's ("你这高血压就是气虚")
                    or (patterns.disease.search(subject) and not patterns.patient_subject.search(subject))
                    or patterns.predicate_excluded.match(predicate)
                ):
                    continue
                # The longest disease name that ends the phrase: "过敏性鼻炎", not "过敏".
                for end in range(min(len(predicate), patterns.max_length), 1, -1):
                    if patterns.disease.fullmatch(predicate, 0, end) and patterns.follow.match(
                        predicate, end
                    ):
                        if self._known_diagnosis(predicate[:end], qscan):
                            break
                        return clause[copula.start() : copula.end() + end]
        return None

    def _benign_verdict(self, ascan: _Scan, qscan: _Scan, flags: list[RedFlag]) -> str | None:
        """A harmless explanation stated as fact in an answer to an emergency that refers nobody: "宝宝在睡觉，
        正常的" to reduced fetal movements, "这是恶露，正常现象" to a postpartum bleed.

        To an ordinary question the same words are the right reassurance, so only a flagged question the model
        (when there is one) rates urgent enough counts, as for a dismissive answer; a sentence that hedges or sets
        a condition states nothing."""
        patterns = self.rules.diagnosis
        if patterns is None or patterns.benign is None or not flags or self._referral(ascan):
            return None
        for sentence in _SENTENCE_SPLIT.split(ascan.text):
            hit = patterns.benign.search(sentence)
            if hit is None or _BENIGN_DOUBT.search(sentence):
                continue
            return hit.group(0) if self._urgent_enough(qscan, flags) else None
        return None

    @staticmethod
    def _known_diagnosis(disease: str, qscan: _Scan) -> bool:
        """The question states ``disease`` as the patient's own, not as a question ("有没有可能是…")."""
        text = qscan.text
        core = disease[-4:] if len(disease) > 4 else disease  # "典型的过敏性鼻炎" -> "过敏性鼻炎"'s tail
        at = text.find(core)
        if at < 0:
            return False
        # "是不是过敏性鼻炎", "会不会是…", "…鼻炎吗": the patient asks, the answer would confirm it.
        return not (
            _ASKING_BEFORE.search(text, max(0, at - 10), at) or _ASKING_AFTER.match(text, at + len(core))
        )

    def check_answer(
        self, answer: str, question: str = "", require_disclaimer: bool = False
    ) -> list[Finding]:
        """Dangerous advice in an answer; the question supplies the population and the red-flag context."""
        qscan = self._scan(question)
        ascan = self._scan(answer, answer=True)
        return self._check_scans(ascan, qscan, self._flags(qscan), require_disclaimer)

    def check(self, question: str, answer: str, require_disclaimer: bool = False) -> SafetyReport:
        """Triage and answer checks together, scanning each text once."""
        qscan = self._scan(question)
        ascan = self._scan(answer, answer=True)
        flags = self._flags(qscan)
        findings = self._check_scans(ascan, qscan, flags, require_disclaimer)
        truncated = len(question) > MAX_SCAN_CHARS or len(answer) > MAX_SCAN_CHARS
        return SafetyReport(
            tuple(flags),
            tuple(findings),
            self._referral(ascan),
            truncated,
            tuple(qscan.withheld),
            tuple(ascan.withheld_findings),
        )

    def has_urgent_referral(self, answer: str) -> bool:
        """The answer tells the user to seek urgent care (120, 急诊, 立即就医, a crisis hotline)."""
        return self._referral(self._scan(answer, answer=True))

    # ------------------------------------------------------------------------------------------ output
    def emergency_banner(self, flags: list[RedFlag] | tuple[RedFlag, ...]) -> str:
        """A short Chinese banner to show before the answer; empty when there are no flags."""
        if not flags:
            return ""
        labels: list[str] = []
        for flag in flags:
            label = self.rules.categories.get(flag.category) or (
                MODEL_CATEGORY_LABEL if flag.category == MODEL_CATEGORY else flag.category
            )
            if label not in labels:
                labels.append(label)
        actions = sorted({f.action for f in flags}, key=lambda a: (self.rules.actions[a].priority, a))
        lines = [
            f"{EMERGENCY_NOTICE}您描述的情况可能属于急危重症（"
            + "；".join(labels)
            + "），请不要等待线上回复："
        ]
        lines += ["▶ " + self.rules.actions[a].text for a in actions]
        return "\n".join(lines)

    def has_disclaimer(self, answer: str) -> bool:
        return DISCLAIMER in answer or "disclaimer" in self._scan(answer, answer=True).by_concept

    def ensure_disclaimer(self, answer: str) -> str:
        """The answer with :data:`DISCLAIMER` appended, unless it already carries one."""
        return answer if self.has_disclaimer(answer) else _with_disclaimer(answer)

    def guard(self, question: str, answer: str, policy: str = "annotate") -> GuardedReply:
        """What serving shows for one exchange.

        ``annotate`` keeps the answer and adds a 【安全提示】 line per finding; ``block`` replaces an answer
        that has a ``block`` finding. Either way red flags put the emergency banner first, and every
        flag and finding is logged.
        """
        if policy not in ("annotate", "block"):
            raise ValueError(f"policy must be 'annotate' or 'block', not {policy!r}")
        report = self.check(question, answer, require_disclaimer=False)
        for flag in report.flags:
            logger.warning("red flag %s (%s) in question: %s", flag.rule_id, flag.category, flag.matched)
        for finding in report.findings:
            logger.warning("answer finding %s [%s]: %s", finding.rule_id, finding.severity, finding.matched)
        blocked = policy == "block" and report.blocked
        if blocked:
            body = BLOCKED_TEXT
        else:
            notes = [f"{SAFETY_NOTICE}{f.message}" for f in report.findings if f.kind != "missing_disclaimer"]
            body = "\n\n".join([answer.rstrip(), *notes]) if notes else answer
        banner = self.emergency_banner(report.flags)
        text = f"{banner}\n\n{body}" if banner else body
        # Only what the model wrote can carry its own disclaimer: a safety note ("请以医生面诊…为准") is ours.
        if not self.has_disclaimer(body if blocked else answer):
            text = _with_disclaimer(text)
        return GuardedReply(text, report.flags, report.findings, blocked)


@lru_cache(maxsize=1)
def default_engine() -> SafetyEngine:
    """The engine for the packaged rules and learned model, built once per process."""
    try:
        return SafetyEngine.load(None)
    except ModelError as exc:  # a broken install must not leave serving without its rules
        logger.error("safety model unusable, rules only: %s", exc)
        return SafetyEngine.load(None, model=None)
