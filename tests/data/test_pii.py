"""Personal data scrubbing: every kind is replaced and counted; medical numbers and ordinary words are not."""

from collections import Counter

import pytest

from medtune.config import DataConfig
from medtune.data.pii import PII_KINDS, PiiScrubber, valid_resident_id


def _id(body: str) -> str:
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    return body + "10X98765432"[sum(int(d) * w for d, w in zip(body, weights)) % 11]


VALID_ID = _id("11010519491231002")


def _scrub(text, kinds=PII_KINDS):
    counts = Counter()
    return PiiScrubber(kinds).scrub(text, counts), counts


def test_resident_id_checksum():
    assert valid_resident_id(VALID_ID)
    wrong = VALID_ID[:-1] + ("0" if VALID_ID[-1] != "0" else "1")
    assert not valid_resident_id(wrong)
    assert not valid_resident_id("110105194913310021")  # month 13


@pytest.mark.parametrize(
    ("text", "expected", "kind"),
    [
        ("电话13812345678", "电话<PHONE>", "mobile"),
        ("手机 138-1234-5678 随时联系", "手机 <PHONE> 随时联系", "mobile"),
        ("打+86 139 1234 5678", "打<PHONE>", "mobile"),
        ("座机010-62345678转123", "座机<PHONE>", "landline"),
        ("科室（0755）82345678", "科室<PHONE>", "landline"),
        (f"身份证{VALID_ID}报销", "身份证<ID>报销", "id_card"),
        ("发到zhang.san@163.com了", "发到<EMAIL>了", "email"),
        ("加QQ：12345678", "加QQ：<QQ>", "qq"),
        ("微信号:wxid_abc123，", "微信号:<WECHAT>，", "wechat"),
        ("加vx 13912345678", "加vx <WECHAT>", "wechat"),
        ("见https://www.haodf.com/x/1.html。", "见<URL>。", "url"),
        ("我找了王医生", "我找了<NAME>医生", "name"),
        ("是李建国主任说的", "是<NAME>主任说的", "name"),
        ("昨天高医生说", "昨天<NAME>医生说", "name"),
        ("谢谢王医生", "谢谢<NAME>医生", "name"),
    ],
)
def test_each_kind_is_replaced_and_counted(text, expected, kind):
    out, counts = _scrub(text)
    assert out == expected
    assert counts == Counter({kind: 1})


@pytest.mark.parametrize(
    "text",
    [
        "血压150/100mmHg，心率88次/分，白细胞5.2×10⁹/L",
        "2023年3月12日复查，血糖7.8mmol/L，体重65.5kg",
        "订单号123456789012345678",  # 18 digits, wrong checksum: not an ID
        "谢谢医生",
        "任何医生都会这么说",
        "马上找医生看看",
        "吃叶酸医生说可以",
        "韩国医生和金牌医生",
        "问了主管大夫",
        "前段时间医生说没事",
    ],
)
def test_medical_numbers_and_ordinary_words_are_left_alone(text):
    out, counts = _scrub(text)
    assert out == text and not counts


def test_only_the_configured_kinds_are_scrubbed():
    out, counts = _scrub("电话13812345678，邮箱a@b.com", kinds=["email"])
    assert out == "电话13812345678，邮箱<EMAIL>" and counts == Counter({"email": 1})
    with pytest.raises(ValueError, match="unknown personal-data kinds"):
        PiiScrubber(["passport"])


def test_config_knows_exactly_the_scrubber_kinds():
    assert set(DataConfig().pii_kinds) == set(PII_KINDS)
