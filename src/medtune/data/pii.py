"""Personal data scrubbing: phone numbers, resident ID numbers, emails, QQ/WeChat ids, URLs and names with
honorifics become typed placeholders (<PHONE>, <ID>, <EMAIL>, <QQ>, <WECHAT>, <URL>, <NAME>).

One combined regex scans each text once; a callback validates what a pattern cannot (the ID checksum,
words that only look like a surname). Keywords stay (``QQ号：<QQ>``, ``<NAME>医生``) so the sentence keeps
its meaning for training.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable

PII_KINDS = ("phone", "id_card", "email", "qq", "wechat", "url", "name")
PLACEHOLDERS = {
    "mobile": "<PHONE>",
    "landline": "<PHONE>",
    "id_card": "<ID>",
    "email": "<EMAIL>",
    "qq": "<QQ>",
    "wechat": "<WECHAT>",
    "url": "<URL>",
    "name": "<NAME>",
}

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def valid_resident_id(number: str) -> bool:
    """18-digit PRC resident ID: ISO 7064 MOD 11-2 check character and a plausible birth date."""
    if len(number) != 18 or not number[:17].isdigit():
        return False
    year, month, day = int(number[6:10]), int(number[10:12]), int(number[12:14])
    if not (1900 <= year <= 2099 and 1 <= month <= 12 and 1 <= day <= 31):
        return False
    total = sum(int(d) * w for d, w in zip(number[:17], _ID_WEIGHTS))
    return _ID_CHECK[total % 11] == number[17].upper()


# Common surnames, matched in front of an honorific (医生, 主任, 女士 ...).
SURNAMES = (
    "王李张刘陈杨赵黄周吴徐孙胡朱马郭何罗梁宋郑韩唐冯董萧程曹袁邓许傅沈曾彭吕苏卢蒋蔡贾丁魏薛叶阎余潘杜戴夏钟汪田姜"
    "范廖邹熊陆郝孔邱秦江史顾侯邵孟龙段钱汤尹黎易武乔贺赖龚庞樊殷施陶洪翟倪严牛温芦季俞章鲁葛伍韦申尤毕聂焦"
    "柴岳齐梅莫庄辛左涂谷祁舒耿牟卜詹欧阮钮柯蓝林肖姚崔谭闫雷覃邢裴"
)
# Surnames that are also common word characters (谢谢医生, 任何医生, 金牌医生): they count
# only at a boundary or after a word that introduces a person (找, 是, 和 ...).
RISKY_SURNAMES = "高谢金方任万文常安康于全关成白石毛向连明单付"
_ALL_SURNAMES = frozenset(SURNAMES + RISKY_SURNAMES)
HONORIFICS = ("护士长", "医生", "大夫", "医师", "主任", "教授", "护士", "院长", "先生", "女士", "小姐")
# Two characters ending in a surname character that form a word (上周医生说, 任何医生, 如何医生).
_BEFORE_SURNAME = {
    "上周", "下周", "本周", "这周", "每周", "一周", "两周", "几周", "数周", "半周", "三周", "四周", "任何",
    "如何", "为何", "几何", "奈何", "从何", "有何", "无何", "其余", "业余", "多余", "残余", "剩余",
}  # fmt: skip
# Words that start with a surname character (马上找医生, 叶酸医生说, 韩国医生).
_NOT_A_NAME = {
    "马上", "任何", "叶酸", "韩国", "金牌", "华西", "周围", "周末", "许多", "何时", "何种", "江湖", "黄疸", "夏天",
    "杨梅", "何首", "田七", "陈皮", "黄芪", "柴胡", "丁香", "牛黄", "严重", "严格", "余下", "孙子", "龙胆",
    "季节", "齐全", "罗汉", "苏打", "葛根", "江南", "欧美", "蓝色", "黄色", "梅毒", "乔木", "温度", "温水",
    "段时", "钟头", "易饿", "陆续", "庄重", "左右", "左侧", "舒服", "谷丙", "谷草", "钱的", "孟鲁",
}  # fmt: skip
# Characters that never sit inside a given name in running text (找医生, 去看医生, 祝您医生).
_NOT_IN_GIVEN = set(
    "的了是在和找看问个位去给让被把说这那有没不也都就还要会能过对请叫跟向由从与及该吧吗呢啊您你我他她谢"
)
_INTRODUCERS = set("找问请是叫和跟给向让由被对挂约位的了与及天前后次")

# URLs are ASCII: in Chinese text the next character is usually a Chinese one, never part of the URL, and
# trailing sentence punctuation (a final "." or ",") is not part of it either.
URL_PATTERN = (
    r"(?:https?://|ftp://|www\.)[A-Za-z0-9\-._~:/?#\[\]@!$&*+,;=%]*[A-Za-z0-9\-_~/#=%&]"
    r"|\b[a-zA-Z0-9][-a-zA-Z0-9]*(?:\.[a-zA-Z0-9][-a-zA-Z0-9]*)*\.(?:com|cn|net|org|gov|edu|info|cc|io)\b"
    r"(?:/[A-Za-z0-9\-._~:/?#\[\]@!$&*+,;=%]*[A-Za-z0-9\-_~/#=%&])?"
)
_SEP = r"[-\s－]?"
_PATTERNS = {
    "email": r"(?P<email>[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,})",
    "url": f"(?P<url>{URL_PATTERN})",
    "id_card": r"(?<![0-9A-Za-z])(?P<id_card>\d{17}[\dXx])(?![0-9A-Za-z])",
    "qq": r"(?P<qq_key>(?i:qq|扣扣|企鹅)(?:号码|号)?\s*[：:是为]?\s*)(?P<qq>[1-9]\d{4,11})(?!\d)",
    "wechat": r"(?P<wx_key>(?i:微信|威信|薇信|v信|weixin|wechat|vx|wx)(?:号码|号)?\s*[：:是为]?\s*)"
    r"(?P<wechat>[a-zA-Z][-_a-zA-Z0-9]{5,19}|\+?(?:86)?1[3-9]\d{9})(?![-_a-zA-Z0-9])",
    "phone": r"(?<![\d.])(?P<mobile>(?:\+?86" + _SEP + r")?1[3-9]\d(?:" + _SEP + r"\d{4}){2})(?!\d)"
    r"|(?<![\d.])(?P<landline>(?:\(0\d{2,3}\)|（0\d{2,3}）|0\d{2,3}" + _SEP + r")\d{7,8}(?:(?:-|转)\d{1,5})?"
    r"|[48]00" + _SEP + r"\d{3}" + _SEP + r"\d{4})(?!\d)",
}
# Most specific first: an email contains a domain, a QQ number could pass for a phone number. Each pass
# runs only when a cheap check (a substring, a run of digits) says it can match: scanning every character
# with every pattern would cost more than the rest of the cleaning.
# Names: only the honorific is matched; _name_before() looks back for a surname and a given name.
_HONORIFIC_RE = re.compile("|".join(HONORIFICS))
# Spelled out: `re` finds a run of literal [0-9] classes several times faster than \d{3} (Unicode digits).
_DIGITS_GATE = re.compile(r"[0-9][0-9][0-9][-\s－]?[0-9]{4}")
_URL_GATE = re.compile(r"\.(?:com|cn|net|org|gov|edu|info|cc|io)|://|www\.", re.IGNORECASE)


def _url_gate(t: str) -> bool:
    return ("." in t or "://" in t) and _URL_GATE.search(t) is not None


def _im_gate(t: str) -> bool:
    # Plain substring tests: a regex alternation of Chinese literals is several times slower in `re`.
    if "微信" in t or "扣扣" in t or "企鹅" in t or "威信" in t or "薇信" in t:
        return True
    if not ("q" in t or "Q" in t or "v" in t or "V" in t or "w" in t or "W" in t):
        return False
    low = t.lower()
    return "qq" in low or "vx" in low or "wx" in low or "v信" in low or "weixin" in low or "wechat" in low


def _name_gate(t: str) -> bool:
    return (
        "医生" in t or "主任" in t or "大夫" in t or "医师" in t or "教授" in t or "护士" in t
        or "院长" in t or "先生" in t or "女士" in t or "小姐" in t
    )  # fmt: skip


_PASSES: tuple[tuple[tuple[str, ...], Callable[[str], bool]], ...] = (
    (("email",), lambda t: "@" in t),
    (("url",), _url_gate),
    (("qq", "wechat"), _im_gate),
    (("id_card", "phone"), lambda t: _DIGITS_GATE.search(t) is not None),
)


class PiiScrubber:
    def __init__(self, kinds: Iterable[str] = PII_KINDS) -> None:
        kinds = set(kinds)
        unknown = kinds - set(PII_KINDS)
        if unknown:
            raise ValueError(f"unknown personal-data kinds {sorted(unknown)}; known: {', '.join(PII_KINDS)}")
        self.kinds = kinds
        self.passes = [
            (gate, re.compile("|".join(_PATTERNS[k] for k in group if k in kinds)))
            for group, gate in _PASSES
            if kinds & set(group)
        ]

    def scrub(self, text: str, counts: Counter | None = None) -> str:
        """``text`` with personal data replaced; ``counts`` (if given) is increased per kind found."""
        found = counts if counts is not None else Counter()

        def replace(m: re.Match[str]) -> str:
            kind = m.lastgroup
            groups = m.groupdict()
            if groups.get("qq"):
                kind, keep = "qq", groups["qq_key"]
            elif groups.get("wechat"):
                kind, keep = "wechat", groups["wx_key"]
            else:
                keep = ""
            value = m.group(kind)
            if kind == "id_card" and not valid_resident_id(value):
                return value
            found[kind] += 1
            return keep + PLACEHOLDERS[kind]

        for gate, pattern in self.passes:
            if gate(text):
                text = pattern.sub(replace, text)
        if "name" in self.kinds and _name_gate(text):
            text = _scrub_names(text, found)
        return text


def _is_cjk(ch: str) -> bool:
    return "\u3400" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff"


def _valid_name(text: str, start: int, end: int) -> bool:
    name = text[start:end]
    if name[0] not in _ALL_SURNAMES:
        return False
    prev = text[start - 1] if start else ""
    if name[0] in RISKY_SURNAMES and _is_cjk(prev) and prev not in _INTRODUCERS:
        return False
    if len(name) == 1:  # surname + honorific: 王医生
        return prev + name not in _BEFORE_SURNAME
    given = name[1:]
    return (
        name[:2] not in _NOT_A_NAME
        and all(_is_cjk(ch) for ch in given)
        and not any(ch in _NOT_IN_GIVEN for ch in given)
    )


def _scrub_names(text: str, found: Counter) -> str:
    """Replace surname (+ given name of one or two characters) before each honorific: 李建国主任 -> <NAME>主任.
    The longest plausible name wins; checking each candidate in code keeps a rejected long reading (谢谢王)
    from hiding a valid short one (王)."""
    out, last = [], 0
    for m in _HONORIFIC_RE.finditer(text):
        end = m.start()
        for length in (3, 2, 1):
            start = end - length
            if start >= last and _valid_name(text, start, end):
                out.append(text[last:start])
                out.append(PLACEHOLDERS["name"])
                last = end
                found["name"] += 1
                break
    if not out:
        return text
    out.append(text[last:])
    return "".join(out)
