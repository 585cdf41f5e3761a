"""Load and validate the clinician-reviewable safety rules (``rules.yaml``).

The YAML holds everything a clinician may want to change: the word lists (symptoms, drugs, time and
negation cues), the red-flag rules with their actions, and the dangerous-advice rules, each with a
rationale. This module only turns it into frozen dataclasses and refuses a file that the engine could
silently misread (an unknown concept in a rule, a phrase that is not a valid pattern, one phrase listed
under two concepts), naming the rule or concept at fault.

Phrase syntax: plain Chinese text matches itself; ``…`` stands for a short gap (up to four characters in
the same clause, containing no negation word); anything else is a Python regular expression. A regular
expression must begin with a definite set of characters (a literal, a class, ``\\d``): the scanner only
tries it where such a character occurs, so adding phrases does not slow the scan of every position.
A regex that starts with a digit must start with ``\\d+`` (it is only tried at the first digit of a number).
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import opencc
import yaml

from medtune.safety.pinyin import read_pinyin

if sys.version_info >= (3, 11):
    from re import _constants as _sre_c
    from re import _parser as _sre_p
else:  # pragma: no cover - Python 3.10 keeps the same parser under its old name
    import sre_constants as _sre_c
    import sre_parse as _sre_p

ACTIONS_REQUIRED = ("call_120", "emergency_department", "crisis_line")
FINDING_KINDS = (
    "contraindication",
    "dose",
    "antibiotic",
    "dismissive",
    "certain_diagnosis",
    "missing_disclaimer",
)
SEVERITIES = ("block", "warn")
# Contraindication populations: "child" and "older_adult" (derived from ages and words), otherwise any cue class
# (pregnant, breastfeeding, planning_pregnancy, renal_failure) or symptoms-section condition (glaucoma, g6pd ...).
POPULATIONS = ("child", "older_adult", "pregnant", "breastfeeding", "planning_pregnancy", "renal_failure")

# Cue classes the engine itself interprets; each must be defined under ``cues`` in the YAML.
REQUIRED_CUES = (
    "negation",
    "pseudo_negation",
    "clause_break",
    "past",
    "present",
    "sudden",
    "recurrence",
    "resolved",
    "assessed",
    "prohibition",
    "strong_prohibition",
    "doctor",
    "hedge",
    "conditional",
    "referral",
    "dismissive_strong",
    "dismissive_soft",
    "disclaimer",
    "med_context",
    "diet_context",
    "dose_amount",
    "dose_count",
    "certain",
    "more_of",
    "child_word",
    "infant_word",
    "age_years",
    "age_months",
    "age_weeks",
    "age_days",
    "pregnant",
    "breastfeeding",
)
# Concepts the engine derives from others (age arithmetic), usable in rules but not defined as phrases.
# Cue classes that only describe (time, population): a symptom concept may list the same word. The others
# steer the reading of every mention (negation, clause breaks, resolution) and keep their words to themselves.
SHAREABLE_CUES = frozenset(
    {
        "present",
        "sudden",
        "pregnant",
        "breastfeeding",
        "planning_pregnancy",
        "renal_failure",
        "child_word",
        "infant_word",
    }
)
DERIVED_CONCEPTS = ("child", "infant_under_3m", "older_adult")
CLAUSE_SEP = "_clause_sep"
SENTENCE_SEP = "_sentence_sep"
LOOKALIKE = "_lookalike"

# The ``…`` gap: a few characters inside one clause, never across a negation word, so "胸口…疼" does not
# read "胸口不疼" as chest pain. Replaced before normalisation, which would turn "…" into "...".
GAP_MARK = "…"
GAP = "[^,;:!?。\\n不没无未别]{0,4}?"
_META = re.compile(r"[\\.^$*+?{}\[\]|()]")
_DIGITS = "0123456789"
_MAX_FIRST_CHARS = 2000


class RulesError(ValueError):
    """The rules file is malformed; the message names the file and the rule or concept."""


@dataclass(frozen=True)
class Action:
    id: str
    text: str
    """The Chinese line shown to the user."""
    priority: int
    """Lower is more urgent; the banner lists actions in this order."""


@dataclass(frozen=True)
class RedFlagRule:
    id: str
    category: str
    action: str
    when: tuple[tuple[str, ...], ...]
    """All groups must hold; a group holds when any of its concepts is mentioned (not negated, not history)."""
    rationale: str
    unless: tuple[str, ...] = ()
    """The rule does not fire when any of these concepts is mentioned ("休息一下就好了" after breathlessness)."""


@dataclass(frozen=True)
class AdviceRule:
    id: str
    kind: str
    severity: str
    message: str
    rationale: str
    drugs: tuple[str, ...] = ()
    population: str | None = None
    max_age: float | None = None
    """For ``population: child``: the rule applies below this age (years)."""
    trigger: str = "phrase"
    """For ``kind: dismissive``: ``phrase`` (a dismissive phrase) or ``no_referral`` (no urgent referral at all)."""
    flagged: tuple[str, ...] = ()
    """For a contraindication that depends on the emergency itself (aspirin in a suspected stroke, insulin in a
    hypoglycaemia): red-flag categories or rule ids; the rule applies when a rule flagged the question with one."""
    unless: tuple[str, ...] = ()
    """For a contraindication: concepts that lift it when the question has one, not negated or feared (aspirin with
    clopidogrel is dangerous added for a toothache, and the cardiologist's regimen for a patient who takes both)."""


@dataclass(frozen=True)
class DiagnosisPatterns:
    """How a flat verdict is recognised without a certainty word ("你这是湿疹", "孩子是缺钙").

    The engine reads these only in answers with no hedge, condition or urgent referral anywhere: a copula
    (``assertion``) whose clause opens with no generic or doubting subject (``subject_excluded``), followed
    by a disease name (``disease``, matched whole) that ends the phrase (``follow``). A subject naming the
    patient's own condition (``patient_subject``: "你这高血压就是气虚") is a verdict, not a definition; an
    opening clause that names a disease as a risk (``risk_lead``: "容易出血") is none.

    ``benign`` (optional) is a harmless explanation stated as fact ("宝宝在睡觉，正常的", "这是恶露，正常现象"): a
    verdict only in an answer to an emergency that sends nobody to urgent care.

    ``reported_by`` (optional) names who or what made a diagnosis (医生, 已经, 核磁 ...): before "诊断为/确诊为/明确是"
    in its clause, the answer repeats that finding and asserts nothing.
    """

    assertion: re.Pattern[str]
    disease: re.Pattern[str]
    subject_excluded: re.Pattern[str]
    predicate_excluded: re.Pattern[str]
    follow: re.Pattern[str]
    patient_subject: re.Pattern[str]
    risk_lead: re.Pattern[str]
    max_length: int = 10
    benign: re.Pattern[str] | None = None
    reported_by: re.Pattern[str] | None = None


@dataclass(frozen=True)
class Phrase:
    concept: str
    pattern: str
    """Normalised source text (literal) or compiled-ready regular expression."""
    literal: bool
    first_chars: frozenset[str] = frozenset()
    """For a regular expression: every character a match can start with."""
    starts: frozenset[str] | None = None
    """For a regular expression: the first two characters of every match (one character where a match may be
    that short); ``None`` where they cannot be listed (a negated class such as the gap, ``.``)."""
    anchored: bool = False
    """For a regular expression: it opens with ``^`` and matches at the start of a text only."""


@dataclass(frozen=True)
class RuleSet:
    source: str
    version: int
    negation_window: int
    child_age_limit: float
    inner_concepts: frozenset[str]
    """Modifiers (severe, sudden ...) also looked for inside a longer regex match that swallowed them."""
    actions: dict[str, Action]
    categories: dict[str, str]
    phrases: tuple[Phrase, ...]
    parents: dict[str, tuple[str, ...]]
    """Drug group -> the broader groups it belongs to (fluoroquinolone -> antibiotic)."""
    red_flags: tuple[RedFlagRule, ...]
    advice: tuple[AdviceRule, ...]
    concepts: frozenset[str] = field(default_factory=frozenset)
    drug_groups: frozenset[str] = field(default_factory=frozenset)
    symptom_concepts: frozenset[str] = field(default_factory=frozenset)
    """Concepts from the ``symptoms`` section: read in questions only."""
    unknown_age_min_limit: float = 2.0
    """A child word with no age ("孩子") counts for contraindication age limits of this many years or more."""
    joke_proof: frozenset[str] = field(default_factory=frozenset)
    """Categories a joke or idiom cue does not cancel ("笑死" cancels 晕倒, never "想死")."""
    unborn_words: frozenset[str] = field(default_factory=frozenset)
    """Child words that, in a pregnancy, name the baby not yet born (宝宝, 胎儿), not a child patient."""
    record_context: frozenset[str] = field(default_factory=frozenset)
    """Concepts pasted paperwork leaves current (who the patient is, what they live with); the rest is history."""
    first_aid_acts: frozenset[str] = field(default_factory=frozenset)
    """Drug-section concepts that are acts (掐人中, 灌水, 拔出来), not medicines: see ``settings.first_aid_acts``."""
    plan_to_stop: frozenset[str] = field(default_factory=frozenset)
    """Drug-section concepts that are a plan to stop a medicine (停了华法林): see ``settings.plan_to_stop``."""
    foods: frozenset[str] = field(default_factory=frozenset)
    """Drug-section concepts that are foods (蜂蜜): an amount of one is no medication dose; see ``settings.foods``."""
    whole_words: frozenset[str] = field(default_factory=frozenset)
    """Words that keep none of the meanings of the shorter words inside them: see ``settings.whole_words``."""
    animal_words: tuple[str, ...] = ()
    """Regexes naming an animal (狗狗, 金毛, 兔子, 羊羔, 鸽子): a red flag said of one is none."""
    person_words: tuple[str, ...] = ()
    """Regexes naming a person as the subject of a sentence (女儿, 我爸, 外婆): who a red flag is said of."""
    digest: str = ""
    """sha256 (16 hex) of the rules text: the learned model records the rules it was trained with."""
    diagnosis: DiagnosisPatterns | None = None
    """Flat verdicts without a certainty word (optional section ``diagnosis``)."""


# Full-width ASCII (，１０ｍｇ！) to half-width, plus the few compatibility characters that matter for doses and
# temperatures. Not NFKC or str.translate: on a 300-character Chinese answer both cost ~45 µs, while a
# regex substitution that only visits the dozen full-width characters costs a few.
_COMPAT = {chr(code): chr(code - 0xFEE0) for code in range(0xFF01, 0xFF5F)}
_COMPAT.update({"\u3000": " ", "℃": "°c", "µ": "μ", "㎎": "mg", "㎖": "ml", "㎏": "kg"})
# Variant glyphs OpenCC leaves alone: the Taiwan form 睪 (睪丸), and look-alikes typed by mistake (岀世, 胸囗).
_COMPAT.update({"睪": "睾", "岀": "出", "囗": "口"})
# Cantonese function characters with one Mandarin reading, so negation and the Mandarin phrases apply to
# Hong Kong wording: 唔 不, 冇 没, 咗 了, 嘅 的, 佢 他 ("屙唔到尿" reads "屙不到尿", "冇力" reads "没力").
_COMPAT.update({"唔": "不", "冇": "没", "咗": "了", "嘅": "的", "佢": "他"})
_COMPAT_RE = re.compile("[\uff01-\uff5e\u3000℃µ㎎㎖㎏睪岀囗唔冇咗嘅佢]")


def _compat(match: re.Match[str]) -> str:
    return _COMPAT[match.group()]


# Value of each Chinese digit (the engine reads ages and counts with it too).
CN_DIGIT_VALUE = {ch: i for i, ch in enumerate("零一二三四五六七八九")} | {"两": 2}

# Southern Chinese written the way it is spoken (Cantonese, Hokkien, Shanghainese, Hakka): words with one
# Mandarin reading, so every Mandarin phrase of the rules applies ("阿妈头先呕咗" reads "阿妈刚才吐了"). Keys are
# in their form after OpenCC and the character table above (咗 is already 了), longest first; single
# characters only where Mandarin never writes them (喺, 睇, 畀), words where a character alone is Mandarin too.
_DIALECT = {
    # Cantonese
    "依家": "现在",
    "而家": "现在",
    "头先": "刚才",
    "实喺": "实系",
    "梗喺": "梗系",
    "啱啱": "刚刚",
    "琴日": "昨天",
    "琴晚": "昨晚",
    "寻日": "昨天",
    "今朝": "今早",
    "听日": "明天",
    "点算": "怎么办",
    "点办": "怎么办",
    "食了": "吃了",
    "食药": "吃药",
    "食晒": "全吃了",
    "食饭": "吃饭",
    "饮了": "喝了",
    "呕了": "吐了",
    "跌了": "摔了",
    "跌亲": "摔伤",
    "企不稳": "站不稳",
    "企不起身": "站不起来",
    "企不起": "站不起来",
    "行不到": "走不了",
    "行不郁": "走不动",
    "郁不到": "动不了",
    "郁不了": "动不了",
    "讲不到嘢": "说不出话",
    "讲不清": "说不清",
    "讲嘢": "说话",
    "唞不到气": "喘不上气",
    "唞不切": "喘不过气",
    "条颈": "脖子",
    "颈硬": "脖子硬",
    "成窦": "一窝",
    "块面": "脸",
    "肿晒": "全肿了",
    "睇医生": "看医生",
    "急症室": "急诊",
    "储了": "攒了",
    "谂住": "想着",
    "一世人": "一辈子",
    "乜嘢": "什么",
    "点解": "为什么",
    "边度": "哪里",
    "老豆": "爸爸",
    "老窦": "爸爸",
    "细路仔": "小孩",
    "细路": "小孩",
    "喺": "在",
    "畀": "被",
    "嘢": "东西",
    "睇": "看",
    "啲": "些",
    "哋": "们",
    "咁": "这么",
    "揾返": "找回",
    "揾": "找",
    "梳化": "沙发",
    "探热": "量体温",
    "先至": "才",
    "听朝": "明天早上",
    "嚟": "来",
    "啖": "口",
    "咩": "什么",
    "点样": "怎么样",
    "个孙": "孙子",
    "个女": "女儿",
    "个仔": "儿子",
    "㗎": "",
    "食奶": "吃奶",
    "食东西": "吃东西",
    "食降": "吃降",
    "食抗": "吃抗",
    "食过": "吃过",
    "食完": "吃完",
    "食多": "吃多",
    "食错": "吃错",
    "搽": "抹",
    "小毛头": "婴儿",
    # Northern (Northeastern, Shandong, Henan, Hebei, Shaanxi)
    "俺": "我",
    "夜儿个": "昨天",
    "夜里个": "昨晚",
    "今儿个": "今天",
    "明儿个": "明天",
    "晌午": "中午",
    "咋整": "怎么办",
    "咋弄": "怎么办",
    "咋办": "怎么办",
    "咋": "怎么",
    "嘎哈": "干什么",
    "贼": "很",
    "俩月": "两个月",
    "俩礼拜": "两周",
    "孩儿": "孩子",
    "蛋子": "蛋蛋",
    "拉肚": "拉肚子",
    "没觉着": "没感觉",
    "觉着": "感觉",
    "不管事": "不管用",
    "止不牢": "止不住",
    "好返": "好了",
    "落车": "下车",
    "个礼拜大": "周大",
    "个星期大": "周大",
    "听讲": "听说",
    "是真的伐": "是真的吗",
    "医生讲": "医生说",
    "医院讲": "医院说",
    "讲是": "说是",
    "新闻讲": "新闻说",
    "电视讲": "电视说",
    "食安眠": "吃安眠",
    # Hokkien (Taiwanese)
    "阮翁": "我老公",
    "阮某": "我老婆",
    "这马": "现在",
    "拄才": "刚才",
    "头拄仔": "刚才",
    "今仔日": "今天",
    "昨昏": "昨天",
    "头壳": "头",
    "胸坎": "胸口",
    "腹肚": "肚子",
    "规身躯": "全身",
    "无要紧": "不要紧",
    "予电着": "被电到",
    "予电": "被电",
    "电着": "电到",
    "噗噗跳": "怦怦跳",
    "新妇": "儿媳",
    "囡仔": "孩子",
    "囝仔": "孩子",
    "阿母": "妈妈",
    "两肢跤": "两条腿",
    "行路": "走路",
    "袂行": "走不了",
    "袂": "不",
    "毋": "不",
    "伫": "在",
    "眠床": "床",
    "按怎": "怎么",
    "欲予": "要给",
    "欲共": "要把",
    "共伊": "把他",
    "一寡": "一些",
    "会使无": "可以吗",
    "鼻空": "鼻孔",
    "一点外钟": "一个多小时",
    "外钟": "多小时",
    "嗽出": "咳出",
    "一大喙": "一大口",
    "喙": "嘴",
    "面桶": "脸盆",
    "规个": "整个",
    "掷落去": "扔下去",
    "目睭": "眼睛",
    "出世": "出生",
    "彼阵": "那时候",
    "矣": "了",
    "拢": "都",
    "逐工": "每天",
    "知影": "知道",
    "厝内": "家里",
    "厝边": "邻居",
    "囥": "放",
    "查某囝": "女儿",
    "阿嬷": "奶奶",
    # Shanghainese
    "勿应": "不应",
    "勿起来": "不起来",
    "勿好": "不好",
    "勿晓得": "不知道",
    "勿要": "不要",
    "勿动": "不动",
    "姆妈": "妈妈",
    "灶披间": "厨房",
    "老痛": "很痛",
    "晓得伐": "知道吗",
    "夜里向": "夜里",
    "囡囡": "孩子",
    "侬": "你",
    "困觉": "睡觉",
    "夜里厢": "夜里",
    "清清爽爽": "清醒",
    "讲不出": "说不出",
    "讲勿出": "说不出",
    "闲话": "话",
    "呒没": "没有",
    "一眼眼": "一点点",
    "用场": "用处",
    "要紧伐": "要紧吗",
    "哪能": "怎么",
    "啥物事": "什么东西",
    "搿种": "这种",
    "搿": "这",
    "里向": "里面",
    "爷叔": "叔叔",
    "旧年": "去年",
    "男小囡": "男孩",
    "小囡": "孩子",
    "勿出": "不出",
    "勿到": "不到",
    "勿懂": "不懂",
    "勿来": "不来",
    "勿会": "不会",
    "勿是": "不是",
    "勿能": "不能",
    "勿灵": "不灵",
    "勿醒": "不醒",
    # Shanghainese, more (round 29: Wu speakers from Shanghai, Suzhou, Ningbo, Hangzhou)
    "勿": "不",
    "侪": "都",
    "勿牢": "不住",
    "噎牢": "噎住",
    "卡牢": "卡住",
    "压牢": "压住",
    "捏牢": "捏住",
    "揿牢": "按住",
    "立勿牢": "站不住",
    "立不牢": "站不住",
    "闷煞": "闷得厉害",
    "痛煞": "痛得厉害",
    "疼煞": "疼得厉害",
    "吓煞": "吓死",
    "笑煞": "笑死",
    "急煞": "急死",
    "热煞": "热死",
    "气煞": "气死",
    "冷煞": "冷死",
    "吃力煞": "累死",
    "肚皮": "肚子",
    "头颈": "脖子",
    "面孔": "脸",
    "邪气": "非常",
    "交关": "很",
    "一记": "一下",
    "湿脱": "湿透",
    "吃脱": "吃掉",
    "停脱": "停掉",
    "断脱": "断掉",
    "丢脱": "丢掉",
    "死脱": "死掉",
    "好好叫": "好好的",
    "地浪": "地上",
    "身浪": "身上",
    "早浪": "早上",
    "路浪": "路上",
    "床浪": "床上",
    "手浪": "手上",
    "脚浪": "脚上",
    "屋里厢": "家里",
    "辰光": "时候",
    "吃老酒": "喝酒",
    "吃酒": "喝酒",
    "困过去": "睡过去",
    "老头子": "老伴",
    "老太婆": "老太太",
    "阿爹": "爷爷",
    "伊拉": "他们",
    "阿拉": "我们",
    "伐": "吗",
    "假使": "假如",
    # Hakka
    "琴晡日": "昨天",
    "今晡日": "今天",
    "孙仔": "孙子",
    "细人仔": "小孩",
    "肚屎": "肚子",
    "仲有": "还有",
    "仲发": "还发",
    "仲系": "还是",
    "仲在": "还在",
    "仲没": "还没",
    "厓": "我",
    # Cantonese, more (round 27: Hong Kong posts in written Cantonese)
    "都不得": "都不行",
    "预早": "提前",
    "食嘢": "吃东西",
    "饮嘢": "喝东西",
    "不好": "不要",
    "上年": "去年",
    "好返晒": "全好了",
    "啱": "对",
    "牙肉": "牙龈",
    "少少": "一点",
    "识应": "能应",
    "返工": "上班",
    "没点": "没怎么",
    "蒙蒙哋": "迷迷糊糊",
    "不系好清楚": "不太清楚",
    "吞不到": "吞不下",
    "坐起身": "坐起来",
    "晕低": "晕倒",
    "云低": "晕倒",
    "跌低": "摔倒",
    "瞓": "睡",
    "攰": "累",
    "肚屙": "拉肚子",
    "止屙": "止泻",
    "屙尿": "小便",
    "屙血": "便血",
    "屙": "拉",
    "屎忽": "屁股",
    "大髀": "大腿",
    "膊头": "肩膀",
    "企起身": "站起来",
    "企起": "站起",
    "起不到身": "起不来",
    "好似": "好像",
    "系咪": "是不是",
    "系不系": "是不是",
    "但系": "但是",
    "都系": "都是",
    "不系": "不是",
    "就系": "就是",
    "好像系": "好像是",
    "出晒汗": "出满汗",
    "没晒": "没",
    "湿晒": "湿透",
    "干晒": "干",
    "乱晒笼": "胡言乱语",
    "起晒水泡": "起满水泡",
    "㶶晒": "烧焦了",
    "眼凹晒": "眼窝凹陷",
    "一郁": "一动",
    "郁来郁去": "动来动去",
    "郁少": "动少",
    "没郁": "没动",
    "bb郁": "宝宝动",
    "BB郁": "宝宝动",
    "唞不顺": "喘不过气",
    "唞": "喘",
    "企起来": "站起来",
    "成日": "整天",
    "探耳": "量耳温",
    "成身": "全身",
    "成个人": "整个人",
    "成碗": "一碗",
    "成晚": "一整晚",
    "成个": "整个",
    "个钟": "个小时",
    "不识震": "不发抖",
    "发冷震": "发冷发抖",
    "面青青": "脸色发青",
    "面青": "脸色发青",
    "冻冰冰": "冰冷冰冷",
    "好冻": "好冷",
    "俾人": "被人",
    "俾刀": "被刀",
    "俾狗": "被狗",
    "俾蛇": "被蛇",
    "俾车": "被车",
    "跌落嚟": "掉下来",
    "跌落": "掉下",
    "烧亲": "烧伤",
    "撞亲": "撞伤",
    "烫亲": "烫伤",
    "整亲": "弄伤",
    "滚汤": "滚烫的汤",
    "滚水": "开水",
    "撞泻": "打翻",
    "把声": "声音",
    "咳紧": "在咳",
    "玩紧": "在玩",
    "旅行紧": "在旅行",
    "食紧": "在吃",
    "痛紧": "在痛",
    "流紧": "在流",
    "抽紧": "在抽",
    "后尾枕": "后脑勺",
    "黐脷根": "说话不清",
    "痺": "麻",
    "好蒙": "好迷糊",
    "细佬": "弟弟",
    "阿哥": "哥哥",
    "阿爷": "爷爷",
    "阿妈": "妈妈",
    "阿爸": "爸爸",
    "仔仔": "孩子",
    "钮扣电池": "纽扣电池",
    "钮扣电": "纽扣电池",
    "磁石": "磁铁",
    "啡色": "褐色",
    "尿片": "尿布",
    "士多啤梨": "草莓",
    "喊到": "哭到",
    "喊完": "哭完",
    "成日喊": "整天哭",
    "揽住": "抱住",
    "没乜": "没什么",
    "乜": "什么",
    "有糖尿": "有糖尿病",
    "糖尿药": "降糖药",
    "嗌交": "吵架",
    "执返嚟": "捡回来",
    "返嚟": "回来",
    "醒返": "醒过来",
    "食返": "吃",
    "抱埋": "抱着",
    "一齐": "一起",
    "跳落去": "跳下去",
    "跳落": "跳下",
    "定系": "还是",
    "使不使": "要不要",
    "洗不洗": "要不要",
    "不使": "不用",
    "冻水": "冷水",
    "寻晚": "昨晚",
    "饮完": "喝完",
    "饮醉": "喝醉",
    "食滞": "积食",
    "照食": "照吃",
    "英泥": "水泥",
    "入了眼": "进了眼睛",
    "入眼": "进眼睛",
    "差些": "差点",
    "sugar": "血糖",
    "Sugar": "血糖",
    "BB": "宝宝",
    "bb": "宝宝",
    "Bb": "宝宝",
    "话要": "说要",
    "话想": "说想",
    "呕": "吐",
    "仲": "还",
    # Written and classical Chinese (书面语; round 30: letters to a health column in formal style), read as
    # the everyday words the rules know. Only words that mean the same in every context they occur in.
    "去岁": "去年",
    "去夏": "去年夏天",
    "去冬": "去年冬天",
    "上月": "上个月",
    "数年前": "几年前",
    "数月前": "几个月前",
    "未几": "不久",
    "旋即": "随即",
    "骤觉": "突然觉得",
    "骤至": "突然来",
    "骤降": "突然降",
    "陡然": "突然",
    "猝然": "突然",
    "忽而": "突然",
    "忽如": "突然像",
    "如遭": "像被",
    "其痛如撕": "像撕裂一样痛",
    "痛如刀割": "像刀割一样痛",
    "痛不可忍": "痛得受不了",
    "疼不可忍": "疼得受不了",
    "痛不可耐": "痛得受不了",
    "呼之不应": "叫不应",
    "唤之不应": "叫不应",
    "呼之不醒": "叫不醒",
    "唤之不醒": "叫不醒",
    "呼之微应": "叫了不太应",
    "半个时辰": "一个小时",
    "一个时辰": "两个小时",
    "如厕": "上厕所",
    "颈项": "脖子",
    "气息短促": "呼吸急促",
    "气息急促": "呼吸急促",
    "手足": "手脚",
    "冷汗出": "出冷汗",
    "发绀": "发紫",
    "唇色": "嘴唇颜色",
    "不能成句": "说不了整句",
    "滴尿未出": "没尿出来",
    "滴尿不出": "尿不出来",
    "未觉得": "没觉得",
    "未觉": "没感觉到",
    "未进饮食": "没吃饭",
    "未进食": "没吃饭",
    "认不得": "不认识",
    "舌体": "舌头",
    "说话含混": "说话含糊",
    "言语含混": "说话含糊",
    "言语含糊": "说话含糊",
    "寒战已止": "不发抖了",
    "寒战停止": "不发抖了",
    "寒颤已止": "不发抖了",
    "神情呆滞": "反应迟钝",
    "迟迟方答": "反应慢",
    "迟迟才答": "反应慢",
    "失了知觉": "没了知觉",
    "尽数服下": "全吃了",
    "服下": "吃了",
    "已将": "已经把",
    "欲将": "想把",
    "将自己": "把自己",
    "携之同去": "带着孩子一起走",
    "携子同去": "带着孩子一起走",
    "无趣": "没意思",
    "执菜刀": "拿着菜刀",
    "执刀": "拿着刀",
    "执剪刀": "拿着剪刀",
    "命其": "命令他",
    "婴孩": "婴儿",
    "输注": "输了",
    "鼻中出血": "流鼻血",
    "已逾": "已经超过",
    "月余": "一个多月",
    "作痛": "疼",
    "经期推迟": "月经推迟",
    "背心正中": "后背正中",
    "倒于地": "倒在地",
    "于地上": "在地上",
    "亦": "也",
    "仍": "还",
    "险些": "差点",
    "会否": "会不会",
    "是否": "是不是",
    "何谓": "什么叫",
    "何意": "什么意思",
    "何以": "为什么",
    "何故": "为什么",
    "有何": "有什么",
    "戏言": "开玩笑说",
    **{f"十有{d}": f"十{d}" for d in "一二三四五六七八九"},
    "十余": "十多",
    "百余": "百多",
    # Hokkien, more (round 30: Minnan speakers from Xiamen, Quanzhou, Zhangzhou and Taiwan writing as they talk)
    "𫧃": "不",  # 𣍐 (bē, "cannot"), as OpenCC writes it
    "倒落去": "倒下去",
    "落去": "下去",
    "落来": "下来",
    "涂跤": "地上",
    "土跤": "地上",
    "过身": "去世",
    "无代志": "没事",
    "心肝": "心",
    "足紧": "很快",
    "喘气紧紧": "呼吸急促",
    "喘气紧": "呼吸急促",
    "喘气": "呼吸",
    "头眩": "头晕",
    "眩": "晕",
    "目睭暗": "眼前发黑",
    "目睭花": "看东西模糊",
    "物件": "东西",
    "亲像": "好像",
    "槌仔": "锤子",
    "摃": "打",
    "毋捌": "从来没",
    "遮痛": "这么痛",
    "遮尔": "这么",
    "颔颈": "脖子",
    "无应": "没反应",
    "无啥": "没什么",
    "昏去": "晕过去",
    "想欲": "想",
    "欲": "要",
    "愈来愈": "越来越",
    "戆戆": "迷迷糊糊",
    "戆": "糊涂",
    "应毋着": "答非所问",
    "乱乱讲": "胡言乱语",
    "徛": "站",
    "厝顶": "屋顶",
    "尾溜": "边上",
    "耳空": "耳朵",
    "灶脚": "厨房",
    "魔神仔": "魔鬼",
    "掷落": "扔下",
    "正爿": "右边",
    "倒爿": "左边",
    "一爿": "一边",
    "顶面": "上面",
    "面肿": "脸肿",
    "面白白": "脸色苍白",
    "面白": "脸色苍白",
    "面红红": "脸红",
    "面黄黄": "脸黄",
    "膨起来": "鼓起来",
    "规工": "整天",
    "目屎": "眼泪",
    "目眶": "眼眶",
    "冰冰": "冰凉",
    "冻甲硬": "冻僵",
    "时阵": "时候",
    "暝仔": "夜里",
    "暝": "夜",
    "挽的": "摘的",
    "菇仔": "蘑菇",
    "昨暗": "昨晚",
    "昨暝": "昨晚",
    "今仔早": "今早",
    "细汉人": "小人",
    "细汉": "小",
    "啉": "喝",
    "醉茫茫": "醉得厉害",
    "做伙": "一起",
    "生囝": "生孩子",
    "抱囡仔": "抱着孩子",
    "提菜刀": "拿着菜刀",
    "提刀": "拿着刀",
    "喙澜": "口水",
    "一点钟矣": "一个小时了",
    "一点钟就": "一个小时就",
    "嘛犹": "也还",
    "犹咧": "还在",
    "咧抽": "在抽",
    "咧流": "在流",
    "咧喘": "在喘",
    "咧吐": "在吐",
    "无咧喘气": "没有呼吸",
    "无咧": "没在",
    "小可": "有点",
    "放屎": "大便",
    "乌乌": "黑黑",
    "褪皮": "脱皮",
    "烫着": "烫到",
    "喷着": "喷到",
    "撞着": "撞到",
    "叮着": "叮了",
    "哽着": "噎住",
    "浸水": "溺水",
    "中昼": "中午",
    "归身躯": "全身",
    "身躯": "身上",
    "婴仔": "婴儿",
    "阮囝": "我孩子",
    "阮孙": "我孙子",
    "囝": "孩子",
    "跋落": "摔下",
    "跋倒": "摔倒",
    "跋": "摔",
    "凊": "冷",
    "毋免": "不用",
    "病院": "医院",
    "卵葩": "蛋蛋",
    "尻脊": "后背",
    "尻川": "屁股",
    "放尿": "小便",
    "放𫧃出来": "排不出来",
    "忍𫧃牢": "憋不住",
    "两跤": "两条腿",
    "跤软": "腿软",
    "行𫧃稳": "走不稳",
    "停𫧃落": "停不下来",
    "擘𫧃开": "睁不开",
    "摄护腺": "前列腺",
    "毋捌人": "不认识人",
    "暝日颠倒": "日夜颠倒",
    "正手": "右手",
    "倒手": "左手",
    "手骨": "手臂",
    "摸无脉": "摸不到脉",
    "入去": "进去",
    "乌影": "黑影",
    "乌点": "黑点",
    "愈来愈济": "越来越多",
    "遮咧": "挡着",
    "冷汗流甲": "出冷汗",
    "讲话乱乱": "胡言乱语",
    "拍胰岛素": "打胰岛素",
    "拍120": "打120",
    "目睭吊起来": "眼睛上翻",
    "按呢": "这样",
    "焦焦": "干干",
    "卫生棉": "卫生巾",
    "足大": "很大",
    "足痛": "很痛",
    "足严重": "很严重",
    "足厉害": "很厉害",
    "足艰苦": "很难受",
    "艰苦": "难受",
    "青恂恂": "发青",
    "捏咧": "捏着",
    "佮": "和",
    "洗衫珠": "洗衣凝珠",
    "跋一倒": "摔了一跤",
    "礼拜": "周",
    # Teochew, Fuzhou, Hainanese and Hakka (round 30)
    "呾": "说",
    "做呢": "怎么办",
    "出过多汗": "出很多汗",
    "昏忒": "晕过去",
    "野痛": "很痛",
    "颈仔": "脖子",
    "𫧃落": "不下",
    "个多钟": "个多小时",
    "头那": "头",
    "溅着": "溅到",
    "几烫": "很烫",
    "几痛": "很痛",
    "几犀利": "很厉害",
    "犀利": "厉害",
    "不系几应": "不太应",
    "讲乱话": "胡言乱语",
    "乱讲话": "胡言乱语",
    "找着": "找到",
    "无发抖": "不发抖",
    "今下": "现在",
    "食酒": "喝酒",
    "叫无醒": "叫不醒",
    "日大": "天大",
    "孥仔": "孩子",
    "奴仔": "孩子",
    "感觉着": "感觉到",
    "目珠": "眼睛",
    "雾雾": "模糊",
    "一日一暝": "一天一夜",
    "不识人": "不认识人",
    "伊": "他",
    "食": "吃",
    "甲": "得",
    "跤": "脚",
    "予": "被",
    "摆": "次",
    "对": "从",
    # Emergency numbers said digit by digit (voice input, older writers): "马上打一二零", "拨幺幺零".
    "一二零": "120",
    "一二〇": "120",
    "幺二零": "120",
    "幺二〇": "120",
    "一一零": "110",
    "幺幺零": "110",
    "一一九": "119",
    "幺幺九": "119",
}
# Mandarin uses a few keys too: 头先着地 is "head first", not "just now".
_DIALECT_GUARD = {
    "头先": "(?![着落撞磕摔倒碰])",
    "贼": "(?=[快疼痛难冷热多大高厉猛])",
    "拉肚": "(?!子)",
    "拍120": "(?![\\d.张次下个块元])",  # "拍120张照片" is Mandarin
    "毋": "(?!庸)",  # 毋庸置疑
    "仲": "(?![裁介夏秋春冬])",
    "都不得": "(?![不了])",
    # 唔好 ("don't") before a verb; Mandarin 不好 ("not good") is left alone (不好吃, 不好意思, 情况不好).
    "不好": "(?=俾|食|饮|自己|郁|行|等|搽|打|放|让|再|乱|掂|畀|给|摸|碰|催|挖|拔|扶|揉|喂|塞|瞓|睡|理)",
    "上年": "(?![纪级])",
    "呕": "(?![吐心血])",
    "个钟": "(?![头表])",
    "BB": "(?![a-zA-Z霜机弹])",
    "bb": "(?![a-zA-Z霜机弹])",
    "Bb": "(?![a-zA-Z霜机弹])",
    "成个": "(?![体])",
    "返嚟": "(?!了)",
    "伊拉": "(?!克)",  # 伊拉克
    "阿拉": "(?![伯斯丁善])",  # 阿拉伯, 阿拉斯加, 阿拉丁, 阿拉善
    "伐": "(?=[?？,，。!！~\\s]|$)",  # 吗 only at the end of a question: 砍伐, 步伐 are Mandarin
    "邪气": "(?![入侵])",
    "勿": "(?![忘扰])",  # 勿忘我, 请勿打扰
    "吃酒": "(?![糟])",
    "仍": "(?![然旧])",  # 仍然 and 仍旧 stay words
    "服下": "(?![去来])",
    "是否": "(?!则)",
    # round 30 (Hokkien): single characters that Mandarin also writes, read as Hokkien only where Mandarin
    # would not put them (伊曲康唑, 食物, 欲望, 指甲, 摔跤, 给予, 摆动 stay)
    "心肝": "(?![宝肾脾肺功])",
    "眩": "(?![晕目])",
    "欲": "(?![望念罢言])",
    "伊": "(?![曲拉马布托班立维丽朗斯利犁春甸宁万蚊])",
    "食": "(?![物欲道管品堂疗用醋盐谱材指量客性油])",
    "甲": "(?![状亢硝氨钴醛基酸巯氧乐])",
    "予": "(?=[人狗蛇蜂车电猫虫鸡马牛蚊])",
    "对": "(?=[一二三四五六七八九十\\d]{1,3}楼|楼顶|屋顶|厝顶|楼梯)",
    "囝": "(?!仔)",
    "跋": "(?![涉扈])",
}
# ... and a few behind: "说话要小心" keeps its 话, "他话要跳" ("he says he will jump") is Cantonese.
_DIALECT_GUARD_BEFORE = {
    # Cantonese "我个女" is my daughter; Mandarin "有个女生", "一个女的" is a girl or a woman
    "个女": "(?<=[我佢你他她])",
    "个仔": "(?<=[我佢你他她])",
    "个孙": "(?<=[我佢你他她])",
    "话要": "(?<![说讲电对废笑童神情闲实大好回])",
    "话想": "(?<![说讲电对废笑童神情闲实大好回])",
    "不使": "(?<![说讲])",
    "定系": "(?<![一肯确决稳必注])",
    "勿": "(?<![切请务毋])",  # 切勿, 请勿: the prohibition cue keeps its word
    "伐": "(?<![砍征讨步采杀攻北诛挞滥盗])",  # 步伐, 砍伐 at a sentence's end stay Mandarin
    "眩": "(?<![目晕])",
    "欲": "(?<![食性情求物贪色爱肉淫私])",
    "食": "(?<![饮零进粮主甜肉素伙美流禁绝节饱暴偏挑辅冷熟生寒误膳])",
    "甲": "(?<=[痛疼烧吐泻哭冻喘酸醉惊肿红气热冷饿累笑吓])",
    "跤": "(?<![摔跌绊一])",
    "予": "(?<![给授赋准免赐寄施])",
    "摆": "(?<=[一二两三四五六七八九十几若])",
    "礼拜": "(?<=[一二两三四五六七八九十几\\d])",
}


def _trie_pattern(words: dict[str, tuple[str, str]]) -> str:
    """One regex for many words, as a trie: at each character the longer words are tried first, then the word
    ending there. ``words`` maps each word to its guards (a lookbehind before it, a lookahead after it, or "").
    An alternation of 370 words tried one by one at every position of every text was a third of the safety
    check's time."""
    trie: dict[str, dict] = {}
    for word in words:
        node = trie
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = word

    def emit(node: dict) -> str:
        branches = [re.escape(ch) + emit(child) for ch, child in sorted(node.items()) if ch]
        if "" in node:
            word = node[""]
            before, after = words[word]
            # the guard before the word is read at its end: (?<![说讲]) + 不使 -> (?<![说讲]不使)
            behind = f"{before[:-1]}{re.escape(word)})" if before else ""
            branches.append(behind + after)
        return branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"

    return emit(trie)


def _bucketed_pattern(words: dict[str, tuple[str, str]], buckets: int = 8) -> str:
    """:func:`_trie_pattern` with its first characters split into a few classes, each tried behind a lookahead.

    sre tries the top-level branches of an alternation one by one: with some 360 first characters every
    candidate position paid for up to 360 tries. A character class is one test, so a position now tries the
    class of each bucket and then only the branches of its own (dialect reading 0.17 -> 0.07 s per 20,000
    texts, the same output).
    """
    by_first: dict[str, dict[str, tuple[str, str]]] = {}
    for word, guards in words.items():
        by_first.setdefault(word[0], {})[word] = guards
    firsts = sorted(by_first)
    size = -(-len(firsts) // buckets)
    parts = []
    for i in range(0, len(firsts), size):
        chunk = firsts[i : i + size]
        chars = "".join(re.escape(c) for c in chunk)
        parts.append(f"(?=[{chars}])" + _trie_pattern({w: g for c in chunk for w, g in by_first[c].items()}))
    every = "".join(re.escape(c) for c in firsts)
    return f"(?=[{every}])(?:" + "|".join(parts) + ")"


_DIALECT_RE = re.compile(
    _bucketed_pattern({k: (_DIALECT_GUARD_BEFORE.get(k, ""), _DIALECT_GUARD.get(k, "")) for k in _DIALECT})
)


def _dialect(match: re.Match[str]) -> str:
    return _DIALECT[match.group()]


# Numbers in words before a unit (三十五周, 四十天, 六十八岁, 血压一百七/一百一十) as digits, so the digit patterns
# of the rules read them. Only numbers with 十 or 百: a bare 一天 or 三周 stays a word in an idiom as in a count.
_CN_NUM = "[一二两三四五六七八九]"
_CN_NUMBER_RE = re.compile(
    f"((?:{_CN_NUM}百(?:零?{_CN_NUM}(?:十{_CN_NUM}?)?|{_CN_NUM})?)|(?:{_CN_NUM}?十{_CN_NUM}?))"
    "(?=\\s*多?\\s*(?:周|天|岁|个月|个星期|个礼拜|斤|公斤|毫米汞柱|mmhg|/|毫摩尔|片|粒|下))"
    # the second number of a blood pressure: 一百七/一百一十
    f"|(?<=/)((?:{_CN_NUM}百(?:零?{_CN_NUM}(?:十{_CN_NUM}?)?|{_CN_NUM})?)|(?:{_CN_NUM}?十{_CN_NUM}?))"
)


def _cn_number(match: re.Match[str]) -> str:
    text = match.group(1) or match.group(2)
    value = 0
    if "百" in text:
        hundreds, _, rest = text.partition("百")
        value = CN_DIGIT_VALUE[hundreds] * 100
        rest = rest.lstrip("零")
        if rest and "十" not in rest:  # 一百七 is 170, 一百零七 is 107
            return str(value + CN_DIGIT_VALUE[rest] * (1 if text.find("零") > 0 else 10))
        text = rest
    if "十" in text:
        tens, _, ones = text.partition("十")
        value += (CN_DIGIT_VALUE[tens] if tens else 1) * 10 + (CN_DIGIT_VALUE[ones] if ones else 0)
    elif text:
        value += CN_DIGIT_VALUE[text]
    return str(value)


# Hokkien counts days in 工 ("出世十二工" is twelve days old).
_HOKKIEN_DAYS_RE = re.compile("(\\d+|[一二两三四五六七八九十几]+)工(?![作人厂地程资具业夫钱])")


# Traditional -> simplified Chinese (頭暈 -> 头晕) with OpenCC's character and phrase tables: the rules are
# written in simplified characters once, and a question from Hong Kong or Taiwan reads the same. About 1 µs on
# a short question; simplified text passes through unchanged.
_T2S = opencc.OpenCC("t2s")
# Temperatures in words or split digits, read as numbers so "三十九度八" and "39度8" meet the fever patterns.
_CN_TEMP_RE = re.compile(
    "([三四])十([一二三四五六七八九]?)(?:度([一二三四五六七八九])|点([零一二三四五六七八九])度?|度)"
)
_SPLIT_TEMP_RE = re.compile(r"(?<![\d.])(3[5-9]|4[0-2])度([0-9])(?![\d.])")
_LATIN_LETTER = re.compile("[a-z]")
# Voice input and hurried typing separate clauses with spaces ("追尾了 车头撞烂了 他卡在里面"): a space between two
# Chinese characters is read as a comma, so what is said in one clause does not join words of the next. Spaces
# next to digits or Latin letters stay ("每次 2 片", "血压 160"): there they join the parts of one phrase.
_CJK_SPACE_RE = re.compile("(?<=[\u3400-\u9fff])[ \t]+(?=[\u3400-\u9fff])")
_CJK_RUN_RE = re.compile("[\u3400-\u9fff]+")


def _spaced_out(text: str) -> bool:
    """Written with a space after (nearly) every character or short word: sign-language word order on text relay
    ("我 头 疼 厉害 很"), children, one character at a time ("咳 血 很 多"). There the spaces join the parts of one
    phrase, not clauses: at least three gaps between Chinese characters, and the Chinese runs two characters long
    on average or less (clauses spoken into voice input run longer: "追尾了 车头撞烂了 他卡在里面")."""
    if len(_CJK_SPACE_RE.findall(text)) < 3:
        return False
    runs = _CJK_RUN_RE.findall(text)
    return sum(map(len, runs)) <= 2 * len(runs)


def _cn_temp(match: re.Match[str]) -> str:
    tens = "3" if match.group(1) == "三" else "4"
    ones = str(CN_DIGIT_VALUE[match.group(2)]) if match.group(2) else "0"
    dec = match.group(3) or match.group(4)
    return f"{tens}{ones}.{CN_DIGIT_VALUE[dec]}度" if dec else f"{tens}{ones}度"


def normalize(text: str, *, pinyin: bool = True) -> str:
    """The one normalisation for rules and inputs (``pinyin=False`` for the rules' own phrases: they are written
    in characters, a test holds them to it, and reading them would load the lexicon at every start).

    Traditional to simplified characters, full-width to half-width, southern and northern dialect words to
    Mandarin, lower case, runs of pinyin in characters (:mod:`medtune.safety.pinyin`), spaces between Chinese
    characters as commas, Hokkien day counts (十二工), numbers in
    words before a unit as digits, and temperatures in words or split digits (三十九度八, 39度8) as decimals.
    """
    try:
        text = _T2S.convert(text)
    except UnicodeEncodeError:  # lone surrogates (undecodable bytes passed through): drop them, then convert
        text = _T2S.convert(text.encode("utf-8", "replace").decode("utf-8"))
    text = _DIALECT_RE.sub(_dialect, _COMPAT_RE.sub(_compat, text)).lower()
    if pinyin and _LATIN_LETTER.search(text):  # nine texts in ten have no Latin letter: one quick search
        text = read_pinyin(text)
    if " " in text or "\t" in text:
        text = _CJK_SPACE_RE.sub("" if _spaced_out(text) else ",", text)
    if "工" in text:
        text = _HOKKIEN_DAYS_RE.sub(r"\1天", text)
    if "十" in text or "百" in text:
        text = _CN_NUMBER_RE.sub(_cn_number, text)
    if "度" in text:
        if "十" in text:
            text = _CN_TEMP_RE.sub(_cn_temp, text)
        text = _SPLIT_TEMP_RE.sub(r"\1.\2度", text)
    return text


# Every character ``\s`` matches (Unicode): a class this small can be listed like any other. None lies past
# U+3000 (the ideographic space), so the scan stops there rather than walking all of Unicode at import.
_SPACES = frozenset(chr(c) for c in range(0x3001) if chr(c).isspace())
_MAX_STARTS = 5000


def _starts(items: Any, k: int) -> set[str] | None:
    """The first ``k`` characters of every match of the parsed pattern ``items``, or the whole match where it is
    shorter; ``None`` where they cannot be listed (a negated class, ``.``, too many).

    The scanner tries the regexes of one first character only where the next character can continue one of
    them: about half the tries, and 94% of all tries fail. Zero-width assertions are read as matching
    anything, which can only list more starts than there are, never fewer.
    """
    found: set[str] | None = {""}
    for item in items:
        found = _extend(found, [item], k)
        if found is None:
            return None
    return found


def _extend(heads: set[str], items: Any, k: int) -> set[str] | None:
    """Each head (up to ``k`` characters) followed by the starts of a match of ``items``, cut at ``k``."""
    longer: set[str] = set()
    for head in heads:
        if len(head) >= k:
            longer.add(head)
            continue
        tails = _item_starts(items[0], k - len(head)) if len(items) == 1 else _starts(items, k - len(head))
        if tails is None:
            return None
        longer.update(head + tail for tail in tails)
    return None if len(longer) > _MAX_STARTS else longer


def _item_starts(item: Any, k: int) -> set[str] | None:
    op, av = item
    if op is _sre_c.LITERAL:
        return {chr(av)}
    if op is _sre_c.IN:
        chars: set[str] = set()
        for kind, value in av:
            if kind is _sre_c.LITERAL:
                chars.add(chr(value))
            elif kind is _sre_c.RANGE and value[1] - value[0] < _MAX_FIRST_CHARS:
                chars.update(chr(c) for c in range(value[0], value[1] + 1))
            elif kind is _sre_c.CATEGORY and value is _sre_c.CATEGORY_DIGIT:
                chars.update(_DIGITS)
            elif kind is _sre_c.CATEGORY and value is _sre_c.CATEGORY_SPACE:
                chars.update(_SPACES)
            else:  # a negated class, \w, a huge range
                return None
        return chars
    if op in (_sre_c.ASSERT, _sre_c.ASSERT_NOT, _sre_c.AT):
        return {""}
    if op is _sre_c.BRANCH:
        out: set[str] = set()
        for branch in av[1]:
            sub = _starts(branch, k)
            if sub is None:
                return None
            out |= sub
        return out
    if op is _sre_c.SUBPATTERN:
        return _starts(av[-1], k)
    if op in (_sre_c.MAX_REPEAT, _sre_c.MIN_REPEAT):
        low, high, sub_items = av
        out = {""} if low == 0 else set()
        current = {""}
        count = 0
        # Heads only grow up to k characters: once a repetition adds no new one, no later repetition will.
        while count < high:
            count += 1
            longer = _extend(current, sub_items, k)
            if longer is None:
                return None
            if count >= low:
                if count > low and longer <= out:
                    break
                out |= longer
            current = longer
        return out
    return None  # ANY, NOT_LITERAL, atomic groups, ...


def _refers_to_group(items: Any) -> bool:
    """Whether the parsed pattern ``items`` holds a backreference or a conditional group."""
    for op, av in items:
        if op in (_sre_c.GROUPREF, _sre_c.GROUPREF_EXISTS):
            return True
        for value in av if isinstance(av, (tuple, list)) else ():
            if isinstance(value, _sre_p.SubPattern) and _refers_to_group(value.data):
                return True
            if isinstance(value, list) and any(
                isinstance(b, _sre_p.SubPattern) and _refers_to_group(b.data) for b in value
            ):
                return True
    return False


def _phrase(concept: str, raw: Any, where: str) -> Phrase:
    if not isinstance(raw, str) or not raw.strip():
        raise RulesError(f"{where}: concept {concept!r} has an empty or non-text phrase: {raw!r}")
    text = normalize(raw.strip().replace(GAP_MARK, "\x00"), pinyin=False)
    if "\x00" not in text and not _META.search(text):
        return Phrase(concept, text, literal=True)
    pattern = text.replace("\x00", GAP)
    try:
        compiled = re.compile(pattern)
        parsed = _sre_p.parse(pattern)
    except re.error as exc:
        raise RulesError(
            f"{where}: concept {concept!r}: phrase {raw!r} is not a valid pattern ({exc})"
        ) from exc
    if compiled.match(""):
        raise RulesError(f"{where}: concept {concept!r}: phrase {raw!r} matches the empty string")
    # The scanner tries the regexes sharing a first character as one alternation: a flag for the whole
    # pattern or a group reference would change meaning there.
    if compiled.flags & ~re.UNICODE or _refers_to_group(parsed.data):
        raise RulesError(
            f"{where}: concept {concept!r}: phrase {raw!r} may not use inline flags or group references"
        )
    # The characters a match starts with, "" where it may be empty; a phrase may not start with a space either
    # (the scanner files a regex under each of its first characters).
    heads = _starts(parsed.data, 1)
    if heads is None or "" in heads or any(h.isspace() for h in heads):
        raise RulesError(
            f"{where}: concept {concept!r}: phrase {raw!r} must start with a definite character or class"
        )
    starts = _starts(parsed.data, 2)
    return Phrase(
        concept,
        pattern,
        literal=False,
        first_chars=frozenset(heads),
        starts=None if starts is None else frozenset(starts),
        anchored=parsed.data[0]
        in ((_sre_c.AT, _sre_c.AT_BEGINNING), (_sre_c.AT, _sre_c.AT_BEGINNING_STRING)),
    )


def _word_lists(section: Any, name: str, where: str) -> dict[str, list[Any]]:
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise RulesError(f"{where}: '{name}' must be a mapping of concept -> list of phrases")
    out: dict[str, list[Any]] = {}
    for concept, value in section.items():
        words = value.get("names") if isinstance(value, dict) else value
        if not isinstance(words, list) or not words:
            raise RulesError(f"{where}: {name}.{concept} must be a non-empty list of phrases")
        out[str(concept)] = words
    return out


def _require(entry: dict[str, Any], key: str, where: str, rule_id: str) -> Any:
    if key not in entry or entry[key] in (None, ""):
        raise RulesError(f"{where}: rule {rule_id!r} is missing '{key}'")
    return entry[key]


def _unless(
    entry: dict[str, Any], source: str, rule_id: str, concepts: frozenset[str] | set[str]
) -> tuple[str, ...]:
    """A rule's ``unless``: concepts that lift it when the question has one."""
    raw = entry.get("unless") or []
    if not isinstance(raw, list):
        raise RulesError(f"{source}: rule {rule_id!r}: 'unless' must be a list of concepts")
    unless = tuple(str(c) for c in raw)
    unknown = [c for c in unless if c not in concepts]
    if unknown:
        raise RulesError(f"{source}: rule {rule_id!r}: unknown concepts {unknown}")
    return unless


def parse_rules(data: Any, source: str = "<rules>") -> RuleSet:
    """Validate a parsed YAML document and build the rule set."""
    if not isinstance(data, dict):
        raise RulesError(f"{source}: the rules file must be a YAML mapping")
    settings = data.get("settings") or {}
    cues = _word_lists(data.get("cues"), "cues", source)
    missing = [c for c in REQUIRED_CUES if c not in cues]
    if missing:
        raise RulesError(f"{source}: cues missing required classes: {', '.join(missing)}")
    symptoms = _word_lists(data.get("symptoms"), "symptoms", source)
    drugs_raw = data.get("drugs") or {}
    drugs = _word_lists(drugs_raw, "drugs", source)
    lookalikes = data.get("lookalikes") or []
    if not isinstance(lookalikes, list):
        raise RulesError(f"{source}: 'lookalikes' must be a list of phrases")

    parents: dict[str, tuple[str, ...]] = {}
    for group, value in drugs_raw.items():
        if isinstance(value, dict) and value.get("is"):
            parents[str(group)] = tuple(str(p) for p in value["is"])

    phrases: list[Phrase] = []
    owner: dict[str, str] = {}
    added: set[tuple[str, str]] = set()
    sections = [
        ("cues", cues),
        ("symptoms", symptoms),
        ("drugs", drugs),
        ("lookalikes", {LOOKALIKE: lookalikes}),
    ]
    seen_concepts: dict[str, str] = {}
    for section_name, section in sections:
        for concept, words in section.items():
            if concept in seen_concepts and concept != LOOKALIKE:
                raise RulesError(
                    f"{source}: concept {concept!r} defined in both {seen_concepts[concept]} and {section_name}"
                )
            seen_concepts[concept] = section_name
            for raw in words:
                phrase = _phrase(concept, raw, f"{source}: {section_name}")
                if phrase.literal:
                    # A cue word or look-alike has one meaning; a symptom word may serve several concepts
                    # ("头晕" is both a sign of CO poisoning and of shock): the scanner emits one mention each.
                    previous = owner.setdefault(phrase.pattern, concept)
                    shared = section_name in ("symptoms", "drugs") and (
                        seen_concepts.get(previous) in ("symptoms", "drugs") or previous in SHAREABLE_CUES
                    )
                    if previous != concept and not shared:
                        raise RulesError(
                            f"{source}: phrase {phrase.pattern!r} is listed under both {previous!r} and {concept!r}"
                        )
                if (phrase.concept, phrase.pattern) in added:
                    continue
                added.add((phrase.concept, phrase.pattern))
                phrases.append(phrase)
    for sep in (",", ";", ":"):
        phrases.append(Phrase(CLAUSE_SEP, sep, literal=True))
    for sep in ("。", "!", "?", "\n"):
        phrases.append(Phrase(SENTENCE_SEP, sep, literal=True))
    concepts = frozenset(seen_concepts) | set(DERIVED_CONCEPTS)
    unknown_inner = [c for c in settings.get("inner_concepts") or () if c not in concepts]
    if unknown_inner:
        raise RulesError(f"{source}: settings.inner_concepts names unknown concepts {unknown_inner}")
    for group, ups in parents.items():
        unknown = [p for p in ups if p not in drugs]
        if unknown:
            raise RulesError(f"{source}: drugs.{group}.is names unknown groups: {unknown}")

    actions_raw = data.get("actions") or {}
    actions: dict[str, Action] = {}
    for action_id, spec in actions_raw.items():
        if not isinstance(spec, dict) or not spec.get("text"):
            raise RulesError(f"{source}: action {action_id!r} needs a 'text'")
        actions[str(action_id)] = Action(str(action_id), str(spec["text"]), int(spec.get("priority", 9)))
    for action_id in ACTIONS_REQUIRED:
        if action_id not in actions:
            raise RulesError(f"{source}: actions must define {action_id!r}")
    categories = {str(k): str(v) for k, v in (data.get("categories") or {}).items()}

    ids: set[str] = set()
    red_flags: list[RedFlagRule] = []
    for entry in data.get("red_flags") or []:
        rule_id = str(_require(entry, "id", source, "?"))
        if rule_id in ids:
            raise RulesError(f"{source}: duplicate rule id {rule_id!r}")
        ids.add(rule_id)
        category = str(_require(entry, "category", source, rule_id))
        if category not in categories:
            raise RulesError(
                f"{source}: rule {rule_id!r}: category {category!r} is not listed under 'categories'"
            )
        action = str(_require(entry, "action", source, rule_id))
        if action not in actions:
            raise RulesError(f"{source}: rule {rule_id!r}: unknown action {action!r}")
        when_raw = _require(entry, "when", source, rule_id)
        if not isinstance(when_raw, list) or not all(isinstance(g, list) and g for g in when_raw):
            raise RulesError(
                f"{source}: rule {rule_id!r}: 'when' must be a list of non-empty lists of concepts"
            )
        when = tuple(tuple(str(c) for c in group) for group in when_raw)
        unknown = [c for group in when for c in group if c not in concepts]
        if unknown:
            raise RulesError(f"{source}: rule {rule_id!r}: unknown concepts {unknown}")
        unless = _unless(entry, source, rule_id, concepts)
        red_flags.append(
            RedFlagRule(
                rule_id, category, action, when, str(_require(entry, "rationale", source, rule_id)), unless
            )
        )

    red_flag_ids = {rule.id for rule in red_flags}
    advice: list[AdviceRule] = []
    for entry in data.get("advice") or []:
        rule_id = str(_require(entry, "id", source, "?"))
        if rule_id in ids:
            raise RulesError(f"{source}: duplicate rule id {rule_id!r}")
        ids.add(rule_id)
        kind = str(_require(entry, "kind", source, rule_id))
        if kind not in FINDING_KINDS:
            raise RulesError(f"{source}: rule {rule_id!r}: kind {kind!r} is not one of {FINDING_KINDS}")
        severity = str(_require(entry, "severity", source, rule_id))
        if severity not in SEVERITIES:
            raise RulesError(f"{source}: rule {rule_id!r}: severity must be one of {SEVERITIES}")
        drug_groups = tuple(str(d) for d in entry.get("drugs") or ())
        unknown = [d for d in drug_groups if d not in drugs]
        if unknown:
            raise RulesError(f"{source}: rule {rule_id!r}: unknown drug groups {unknown}")
        population = entry.get("population")
        flagged_raw = entry.get("flagged") or []
        if not isinstance(flagged_raw, list):
            raise RulesError(
                f"{source}: rule {rule_id!r}: 'flagged' must be a list of categories or rule ids"
            )
        flagged = tuple(str(f) for f in flagged_raw)
        unknown = [f for f in flagged if f not in categories and f not in red_flag_ids]
        if unknown:
            raise RulesError(
                f"{source}: rule {rule_id!r}: 'flagged' names no red-flag category or earlier rule: {unknown}"
            )
        if flagged and kind != "contraindication":
            raise RulesError(f"{source}: rule {rule_id!r}: only a contraindication takes 'flagged'")
        if kind == "contraindication" and (not drug_groups or bool(population) == bool(flagged)):
            raise RulesError(
                f"{source}: rule {rule_id!r}: a contraindication needs 'drugs' and either a population or "
                "'flagged' (the emergencies it applies in)"
            )
        # A population is a derived age group (child, older_adult), a cue class (pregnant, renal_failure) or a
        # condition from the symptoms section, read in the question only (glaucoma, peptic_ulcer ...).
        # A drug group as population is someone the question says takes it (nitrates before sildenafil).
        if (
            population not in (None, "child", "older_adult")
            and population not in cues
            and population not in symptoms
            and population not in drugs
        ):
            raise RulesError(
                f"{source}: rule {rule_id!r}: population {population!r} needs a cue class, symptom concept or "
                "drug group of that name"
            )
        if population == "older_adult" and "older_word" not in symptoms:
            raise RulesError(
                f"{source}: rule {rule_id!r}: population 'older_adult' needs the symptom concept 'older_word'"
            )
        if kind == "antibiotic" and not drug_groups:
            raise RulesError(f"{source}: rule {rule_id!r}: an antibiotic rule needs 'drugs'")
        unless = _unless(entry, source, rule_id, concepts)
        if unless and kind != "contraindication":
            raise RulesError(f"{source}: rule {rule_id!r}: only a contraindication takes 'unless'")
        max_age = entry.get("max_age")
        trigger = str(entry.get("trigger", "phrase"))
        if trigger not in ("phrase", "no_referral"):
            raise RulesError(f"{source}: rule {rule_id!r}: trigger must be 'phrase' or 'no_referral'")
        advice.append(
            AdviceRule(
                id=rule_id,
                kind=kind,
                severity=severity,
                message=str(_require(entry, "message", source, rule_id)),
                rationale=str(_require(entry, "rationale", source, rule_id)),
                drugs=drug_groups,
                population=str(population) if population else None,
                max_age=float(max_age) if max_age is not None else None,
                trigger=trigger,
                flagged=flagged,
                unless=unless,
            )
        )

    joke_proof = frozenset(str(c) for c in settings.get("joke_proof_categories") or ())
    unknown = sorted(joke_proof - set(categories))
    if unknown:
        raise RulesError(f"{source}: settings.joke_proof_categories: unknown categories {unknown}")
    record_context = frozenset(str(c) for c in settings.get("record_context") or ())
    unknown = sorted(record_context - concepts)
    if unknown:
        raise RulesError(f"{source}: settings.record_context names unknown concepts {unknown}")
    first_aid_acts = frozenset(str(c) for c in settings.get("first_aid_acts") or ())
    unknown = sorted(first_aid_acts - set(drugs))
    if unknown:
        raise RulesError(f"{source}: settings.first_aid_acts names concepts not in 'drugs': {unknown}")
    plan_to_stop = frozenset(str(c) for c in settings.get("plan_to_stop") or ())
    unknown = sorted(plan_to_stop - set(drugs))
    if unknown:
        raise RulesError(f"{source}: settings.plan_to_stop names concepts not in 'drugs': {unknown}")
    foods = frozenset(str(c) for c in settings.get("foods") or ())
    unknown = sorted(foods - set(drugs))
    if unknown:
        raise RulesError(f"{source}: settings.foods names concepts not in 'drugs': {unknown}")
    whole_words = frozenset(normalize(str(w), pinyin=False) for w in settings.get("whole_words") or ())
    literals = {p.pattern for p in phrases if p.literal}
    unknown = sorted(whole_words - literals)
    if unknown:
        raise RulesError(
            f"{source}: settings.whole_words names words that are no phrase of the rules: {unknown}"
        )
    subject_words = {}
    for key in ("animal_words", "person_words"):
        words = tuple(str(w) for w in settings.get(key) or ())
        for w in words:
            try:
                named = re.compile(w).groupindex
            except re.error as exc:
                raise RulesError(f"{source}: settings.{key}: {w!r} is no regular expression: {exc}") from exc
            if named:  # the engine tells an animal from a person by its own group names
                raise RulesError(f"{source}: settings.{key}: {w!r} may not name a group")
        subject_words[key] = words
    return RuleSet(
        source=source,
        version=int(data.get("version", 1)),
        negation_window=int(settings.get("negation_window", 8)),
        child_age_limit=float(settings.get("child_age_limit", 16)),
        unknown_age_min_limit=float(settings.get("unknown_age_min_limit", 2)),
        inner_concepts=frozenset(str(c) for c in settings.get("inner_concepts") or ()),
        joke_proof=joke_proof,
        unborn_words=frozenset(normalize(str(w), pinyin=False) for w in settings.get("unborn_words") or ()),
        record_context=record_context,
        first_aid_acts=first_aid_acts,
        plan_to_stop=plan_to_stop,
        foods=foods,
        whole_words=whole_words,
        animal_words=subject_words["animal_words"],
        person_words=subject_words["person_words"],
        actions=actions,
        categories=categories,
        phrases=tuple(phrases),
        parents=parents,
        red_flags=tuple(red_flags),
        advice=tuple(advice),
        concepts=concepts,
        drug_groups=frozenset(drugs),
        symptom_concepts=frozenset(symptoms),
        diagnosis=_diagnosis(data.get("diagnosis"), source),
    )


def _diagnosis(raw: Any, source: str) -> DiagnosisPatterns | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise RulesError(f"{source}: 'diagnosis' must be a mapping of pattern lists")
    fields = (
        "assertion",
        "disease",
        "subject_excluded",
        "predicate_excluded",
        "follow",
        "patient_subject",
        "risk_lead",
        "benign",
        "reported_by",
    )
    compiled: dict[str, re.Pattern[str]] = {}
    for name in fields:
        parts = raw.get(name)
        if name in ("benign", "reported_by") and parts is None:
            continue
        if not isinstance(parts, list) or not parts or not all(isinstance(p, str) and p for p in parts):
            raise RulesError(f"{source}: diagnosis.{name} must be a non-empty list of patterns")
        # Each item is a regex (plain words are valid regexes), written as the normalised text reads: simplified
        # script, half-width punctuation, lower case.
        alternatives = []
        for part in parts:
            try:
                re.compile(part)
            except re.error as exc:
                raise RulesError(
                    f"{source}: diagnosis.{name}: {part!r} is not a valid pattern ({exc})"
                ) from exc
            alternatives.append(f"(?:{part})")
        compiled[name] = re.compile("|".join(alternatives))
    max_length = raw.get("max_length", 10)
    if not isinstance(max_length, int) or max_length < 2:
        raise RulesError(f"{source}: diagnosis.max_length must be an integer of at least 2")
    return DiagnosisPatterns(max_length=max_length, **compiled)


def load_rules(path: str | Path | None = None) -> RuleSet:
    """Read a rules file; ``None`` reads the ``rules.yaml`` shipped inside the package."""
    if path is None:
        source = "medtune/safety/rules.yaml"
        text = resources.files("medtune.safety").joinpath("rules.yaml").read_text(encoding="utf-8")
    else:
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise RulesError(f"{source}: cannot read rules file ({exc.strerror or exc})") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RulesError(f"{source}: not valid YAML ({exc})") from exc
    return dataclasses.replace(
        parse_rules(data, source), digest=hashlib.sha256(text.encode()).hexdigest()[:16]
    )
