"""The clinician-facing rules file: it loads, every rule is complete, and mistakes are refused by name."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from medtune.safety import RulesError, SafetyEngine, load_rules
from medtune.safety.rules import FINDING_KINDS, parse_rules

PACKAGED = Path(__file__).resolve().parents[2] / "src" / "medtune" / "safety" / "rules.yaml"


@pytest.fixture(scope="module")
def raw() -> dict:
    return yaml.safe_load(PACKAGED.read_text(encoding="utf-8"))


def test_packaged_rules_load_from_the_package() -> None:
    rules = load_rules()
    assert rules.source.endswith("rules.yaml")
    assert rules.red_flags and rules.advice


def test_every_rule_has_a_rationale_and_a_labelled_category() -> None:
    rules = load_rules()
    for rule in rules.red_flags:
        assert rule.rationale.strip(), rule.id
        assert rules.categories[rule.category].strip(), rule.id
    for rule in rules.advice:
        assert rule.rationale.strip() and rule.message.strip(), rule.id


def test_every_finding_kind_has_a_rule() -> None:
    assert {rule.kind for rule in load_rules().advice} == set(FINDING_KINDS)


def test_action_lines_carry_real_numbers() -> None:
    actions = load_rules().actions
    assert "120" in actions["call_120"].text
    assert "12356" in actions["crisis_line"].text and "010-82951332" in actions["crisis_line"].text
    assert actions["call_120"].priority < actions["emergency_department"].priority


def _broken(raw: dict, **changes) -> dict:
    data = copy.deepcopy(raw)
    for path, value in changes.items():
        node = data
        *parents, leaf = path.split("__")
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        node[int(leaf) if leaf.isdigit() else leaf] = value
    return data


def test_unknown_concept_in_a_rule_is_refused_by_rule_id(raw: dict) -> None:
    data = _broken(raw, red_flags__0__when=[["chest_pain"], ["no_such_concept"]])
    with pytest.raises(RulesError, match=r"rf_chest_pain_plus.*no_such_concept"):
        parse_rules(data, "test.yaml")


def test_a_cue_word_reused_as_a_symptom_is_refused(raw: dict) -> None:
    data = _broken(raw, symptoms__sweating=[*raw["symptoms"]["sweating"], "没有"])
    with pytest.raises(RulesError, match="没有"):
        parse_rules(data, "test.yaml")


def test_a_symptom_word_shared_by_two_concepts_yields_both(raw: dict) -> None:
    data = _broken(raw, symptoms__sweating=[*raw["symptoms"]["sweating"], "胸痛"])
    engine = SafetyEngine(parse_rules(data, "test.yaml"))
    assert {c for _, _, c in engine.tokens("胸痛")} >= {"chest_pain", "sweating"}


def test_invalid_or_unanchored_patterns_are_refused(raw: dict) -> None:
    with pytest.raises(RulesError, match="not a valid pattern"):
        parse_rules(_broken(raw, symptoms__sweating=["(出汗"]), "test.yaml")
    for unanchored in (".*汗", "(?:出)?\\s*汗", "(?=汗)"):  # any start; a space; nothing consumed
        with pytest.raises(RulesError, match="definite character"):
            parse_rules(_broken(raw, symptoms__sweating=[unanchored]), "test.yaml")


def test_patterns_with_inline_flags_or_group_references_are_refused(raw: dict) -> None:
    """The scanner tries the patterns sharing a first character as one alternation, where these would
    change meaning."""
    for bad in ("(?s)出.汗", "出(汗)\\1"):
        with pytest.raises(RulesError, match="inline flags or group references"):
            parse_rules(_broken(raw, symptoms__sweating=[bad]), "test.yaml")


def test_every_pattern_sharing_a_first_character_is_tried(raw: dict) -> None:
    """Patterns starting with the same character are screened together; each still matches on its own."""
    data = _broken(
        raw,
        symptoms__sweating=["满头(大汗)", "满头[^,不]{0,3}?冷汗", "满身[^,不]{0,2}?是汗"],
        symptoms__vomiting=["满头[^,]{0,6}?吐了"],
    )
    engine = SafetyEngine(parse_rules(data, "test.yaml"))
    assert "sweating" in {c for _, _, c in engine.tokens("满头大汗")}
    assert "sweating" in {c for _, _, c in engine.tokens("满头都是冷汗")}
    assert "sweating" in {c for _, _, c in engine.tokens("满身都是汗")}
    assert {c for _, _, c in engine.tokens("满头是汗又吐了")} == {"vomiting"}
    assert not {c for _, _, c in engine.tokens("满头不冷")} & {"sweating", "vomiting"}


def test_every_pattern_matching_after_the_first_branch_that_matched_counts(raw: dict) -> None:
    """The alternation's match names its first matching branch (by group number, past the patterns' own
    groups); that branch and every later one are tried, the earlier ones failed already."""
    data = _broken(
        raw,
        symptoms__sweating=["满头(大)(汗)", "满头[^,不]{0,3}?冷汗"],
        symptoms__vomiting=["满(头)(是)冷汗", "满头(?:都)?吐了"],
    )
    engine = SafetyEngine(parse_rules(data, "test.yaml"))
    assert {c for _, _, c in engine.tokens("满头是冷汗")} >= {"sweating", "vomiting"}
    assert "sweating" in {c for _, _, c in engine.tokens("满头大汗")}
    assert {c for _, _, c in engine.tokens("满头都吐了")} == {"vomiting"}
    assert not {c for _, _, c in engine.tokens("满头乱发")} & {"sweating", "vomiting"}


@pytest.mark.parametrize(
    ("pattern", "starts"),
    [
        ("胸口(?:疼|痛)", {"胸口"}),
        (r"\d+\s*(?:mg|毫克)", {d + e for d in "0123456789" for e in "0123456789 m毫"}),
        (r"(?:吃|含服)\s*[一两]片", {"吃一", "吃两", "含服", "吃 "}),
        ("(?<=[月岁])(?:大)?(?:的时候|时)", {"大的", "大时", "的时", "时"}),
        ("抽(?=搐)", {"抽"}),  # one character long: the next one is not part of the match
        ("满头[^,不]{0,3}?冷汗", {"满头"}),
        ("头[^,不]{0,3}?疼", None),  # after the first character, anything but a comma or 不
        ("发(?:烧|热){2,}", {"发烧", "发热"}),
    ],
)
def test_a_pattern_lists_the_first_two_characters_of_its_matches(pattern: str, starts: set | None) -> None:
    from medtune.safety.rules import _phrase

    phrase = _phrase("sweating", pattern, "test.yaml")
    if starts is None:
        assert phrase.starts is None
    else:
        assert phrase.starts is not None and starts <= phrase.starts
        # \s matches every Unicode space: the only pairs listed beyond those expected have one second
        assert all(s[1].isspace() and s[0] + " " in starts for s in phrase.starts - starts)


def test_every_match_starts_with_a_listed_pair() -> None:
    """The scanner skips a pattern where the next character starts none of its listed pairs: on text made of
    the packaged patterns' own characters, every match starts with one (else the skip would lose it)."""
    import random
    import re

    rules = load_rules()
    rng = random.Random(13)
    checked = 0
    for phrase in rules.phrases:
        if phrase.literal or phrase.starts is None:
            continue
        alphabet = list({ch for s in phrase.starts for ch in s} | set("，。不了的1 2"))
        compiled = re.compile(phrase.pattern)
        for _ in range(40):
            text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12)))
            for i in range(len(text)):
                m = compiled.match(text, i)
                if m is not None:
                    checked += 1
                    assert text[i : min(m.end(), i + 2)] in phrase.starts, (phrase.pattern, text, i)
                    assert not phrase.anchored or i == 0
    assert checked > 100


def test_the_scanner_tries_a_pattern_only_before_its_next_characters(raw: dict) -> None:
    """Each first character keeps, per next character, only the patterns that can go on with it."""
    data = _broken(raw, symptoms__sweating=["满头(?:大汗|冷汗)", "^出汗(?:了|多)"])
    engine = SafetyEngine(parse_rules(data, "test.yaml"))
    assert "sweating" in {c for _, _, c in engine.tokens("他满头大汗")}
    assert "sweating" in {c for _, _, c in engine.tokens("满头冷汗")}
    assert "sweating" in {c for _, _, c in engine.tokens("出汗了")}
    assert "sweating" not in {c for _, _, c in engine.tokens("他出汗了")}  # the pattern is anchored
    _, (at_start, later) = engine._first_question["满"]
    assert at_start["头"][1][0][1] == "sweating" and "头" in later
    assert later.get("意", later[None]) is None  # "满意" can continue no pattern: none is tried


def test_contraindication_needs_a_population(raw: dict) -> None:
    index = next(i for i, r in enumerate(raw["advice"]) if r["kind"] == "contraindication")
    with pytest.raises(RulesError, match="population"):
        parse_rules(_broken(raw, **{f"advice__{index}__population": "no_such_population"}), "test.yaml")
    with pytest.raises(RulesError, match="population"):
        parse_rules(_broken(raw, **{f"advice__{index}__population": None}), "test.yaml")


def test_contraindication_population_may_be_a_condition_or_older_adult(raw: dict) -> None:
    """A condition from the symptoms section (glaucoma), the derived age group older_adult, or a drug group (someone
    taking warfarin) is a population."""
    index = next(i for i, r in enumerate(raw["advice"]) if r["kind"] == "contraindication")
    for population in ("glaucoma", "older_adult", "warfarin"):
        rules = parse_rules(_broken(raw, **{f"advice__{index}__population": population}), "test.yaml")
        assert rules.advice[index].population == population


def test_an_emergency_contraindication_names_known_flags(raw: dict) -> None:
    """'flagged' takes red-flag categories or rule ids, and replaces the population, never joins it."""
    index = next(i for i, r in enumerate(raw["advice"]) if r.get("flagged"))
    rule = parse_rules(raw, "test.yaml").advice[index]
    assert rule.flagged and rule.population is None
    with pytest.raises(RulesError, match="no_such_emergency"):
        parse_rules(_broken(raw, **{f"advice__{index}__flagged": ["no_such_emergency"]}), "test.yaml")
    with pytest.raises(RulesError, match="either a population or 'flagged'"):
        parse_rules(_broken(raw, **{f"advice__{index}__population": "pregnant"}), "test.yaml")
    dose = next(i for i, r in enumerate(raw["advice"]) if r["kind"] == "dose")
    with pytest.raises(RulesError, match="only a contraindication"):
        parse_rules(_broken(raw, **{f"advice__{dose}__flagged": ["stroke"]}), "test.yaml")


def test_the_diagnosis_section_is_validated(raw: dict) -> None:
    assert parse_rules(raw, "test.yaml").diagnosis is not None
    with pytest.raises(RulesError, match=r"diagnosis\.disease"):
        parse_rules(_broken(raw, diagnosis__disease=[]), "test.yaml")
    with pytest.raises(RulesError, match=r"diagnosis\.follow.*not a valid pattern"):
        parse_rules(_broken(raw, diagnosis__follow=["(unclosed"]), "test.yaml")
    without = copy.deepcopy(raw)
    del without["diagnosis"]
    assert parse_rules(without, "test.yaml").diagnosis is None  # optional: no flat-verdict check at all


def test_unreadable_rules_file_is_a_rules_error(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match="cannot read"):
        load_rules(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("red_flags: [", encoding="utf-8")
    with pytest.raises(RulesError, match="not valid YAML"):
        load_rules(bad)


def test_a_clinician_extension_takes_effect(raw: dict, tmp_path: Path) -> None:
    """Adding a phrase to the YAML is all it takes for a new colloquial wording to trigger."""
    question = "我爸心里头咯噔一下，整个人瘫在沙发上"
    assert SafetyEngine(parse_rules(raw, "packaged")).triage(question) == []
    extended = _broken(raw, symptoms__unconscious=[*raw["symptoms"]["unconscious"], "瘫在沙发上"])
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(extended, allow_unicode=True), encoding="utf-8")
    assert SafetyEngine.load(path).triage(question)[0].category == "unconscious"


def test_every_coverage_row_names_existing_rules() -> None:
    import re

    table = (Path(__file__).resolve().parents[2] / "src" / "medtune" / "safety" / "COVERAGE.md").read_text(
        encoding="utf-8"
    )
    rows = re.findall(r"^\| `([a-z0-9_]+)` \|.*\| ([^|]*) \|$", table, flags=re.M)
    assert len(rows) == 62
    rule_ids = {rule.id for rule in load_rules().red_flags}
    for row, cell in rows:
        named = set(re.findall(r"\brf_[a-z0-9_]+", cell))
        assert named, f"{row}: no rule named"
        assert named <= rule_ids, f"{row}: unknown rules {named - rule_ids}"


def test_unless_names_known_concepts(raw: dict) -> None:
    data = _broken(raw, red_flags__0__unless=["no_such_concept"])
    with pytest.raises(RulesError, match=r"rf_chest_pain_plus.*no_such_concept"):
        parse_rules(data, "test.yaml")


def test_unless_stops_a_rule(raw: dict) -> None:
    engine = SafetyEngine(parse_rules(_broken(raw, red_flags__0__unless=["sudden"]), "test.yaml"))
    assert "rf_chest_pain_plus" not in {f.rule_id for f in engine.triage("我爸突然胸口疼，满头大汗")}
    assert "rf_chest_pain_plus" in {f.rule_id for f in engine.triage("我爸胸口疼，满头大汗")}


def test_a_contraindication_unless_names_known_concepts_and_lifts_the_rule(raw: dict) -> None:
    index = next(i for i, r in enumerate(raw["advice"]) if r["id"] == "ci_aspirin_antiplatelet")
    with pytest.raises(RulesError, match=r"ci_aspirin_antiplatelet.*no_such_concept"):
        parse_rules(_broken(raw, **{f"advice__{index}__unless": ["no_such_concept"]}), "test.yaml")
    dose = next(i for i, r in enumerate(raw["advice"]) if r["kind"] == "dose")
    with pytest.raises(RulesError, match="only a contraindication takes 'unless'"):
        parse_rules(_broken(raw, **{f"advice__{dose}__unless": ["dual_antiplatelet"]}), "test.yaml")
    # The patient on both antiplatelet drugs keeps taking them; the rule alone says so, the engine names no drug.
    question = "放了支架，一直吃着阿司匹林和氯吡格雷，刷牙有点出血"
    answer = "阿司匹林照常吃，别自己停，换个软毛牙刷。"
    found = {f.rule_id for f in SafetyEngine(parse_rules(raw, "test.yaml")).check_answer(answer, question)}
    assert "ci_aspirin_antiplatelet" not in found
    without = _broken(raw, **{f"advice__{index}__unless": []})
    found = {
        f.rule_id for f in SafetyEngine(parse_rules(without, "test.yaml")).check_answer(answer, question)
    }
    assert "ci_aspirin_antiplatelet" in found


def test_joke_proof_categories_are_read_from_the_rules(raw: dict) -> None:
    question = "药都攒好了，今晚就结束这一切哈哈哈"
    assert SafetyEngine(parse_rules(raw, "test.yaml")).triage(question)
    # Without the setting a joke cue takes even a suicide plan out of triage: the engine hard-codes nothing.
    data = _broken(raw, settings__joke_proof_categories=[])
    assert not SafetyEngine(parse_rules(data, "test.yaml")).triage(question)
    with pytest.raises(RulesError, match=r"joke_proof_categories.*no_such_category"):
        parse_rules(_broken(raw, settings__joke_proof_categories=["no_such_category"]), "test.yaml")


@pytest.mark.parametrize(
    ("setting", "question", "answer", "advised_with_it"),
    [
        # An act the question reports, urged by an answer that also refers, is advice only because the setting
        # names it an act (an answer that refers nobody takes up whatever it urges).
        ("first_aid_acts", "同事开会的时候突然嘴歪 话也说不利索 有人说掐人中", "先掐人中，同时打120。", True),
        # "华法林不能停" refuses the question's plan to stop warfarin only because the setting names
        # stop_anticoagulant a plan to stop: without it, keeping the drug going approves what the question names.
        (
            "plan_to_stop",
            "我爸换了瓣膜一直吃华法林，这两天牙龈出血，我想把华法林停了行吗",
            "华法林不能停，明天去医院查个INR。",
            False,
        ),
    ],
)
def test_drug_settings_are_read_from_the_rules(
    raw: dict, setting: str, question: str, answer: str, advised_with_it: bool
) -> None:
    for value, advised in ((raw["settings"][setting], advised_with_it), ([], not advised_with_it)):
        engine = SafetyEngine(parse_rules(_broken(raw, **{f"settings__{setting}": value}), "test.yaml"))
        found = {f.kind for f in engine.check_answer(answer, question)}
        assert ("contraindication" in found) is advised
    with pytest.raises(RulesError, match=rf"{setting}.*stroke"):
        parse_rules(_broken(raw, **{f"settings__{setting}": ["stroke"]}), "test.yaml")


def test_whole_words_are_read_from_the_rules(raw: dict) -> None:
    # "我有哮喘" names the disease: only the setting keeps the "喘" inside it from reading as breathless now.
    question = "我有哮喘 最近考试紧张手抖心慌 同学说普萘洛尔能压住 我能吃吗"
    assert not SafetyEngine(parse_rules(raw, "test.yaml")).triage(question)
    assert SafetyEngine(parse_rules(_broken(raw, settings__whole_words=[]), "test.yaml")).triage(question)
    # breathless now still is, in the same words as the disease
    assert SafetyEngine(parse_rules(raw, "test.yaml")).triage("我有哮喘 刚才突然心慌 喘得说不出话")
    with pytest.raises(RulesError, match=r"whole_words.*no such phrase"):
        parse_rules(_broken(raw, settings__whole_words=["no such phrase"]), "test.yaml")


def test_who_made_a_diagnosis_is_read_from_the_rules(raw: dict) -> None:
    # "您已经在急诊确诊为…" repeats a finding only because diagnosis.reported_by names 急诊 and 已经.
    question, answer = (
        "右边腰疼，尿里有血，昨天去了急诊",
        "您好，您已经在急诊确诊为右侧输尿管结石，多喝水，按时复查。",
    )
    data = copy.deepcopy(raw)
    for reported, certain in ((raw["diagnosis"]["reported_by"], False), (None, True)):
        if reported is None:
            del data["diagnosis"]["reported_by"]
        engine = SafetyEngine(parse_rules(data, "test.yaml"))
        assert ("certain_diagnosis" in {f.kind for f in engine.check_answer(answer, question)}) is certain
    with pytest.raises(RulesError, match=r"diagnosis.reported_by"):
        parse_rules(_broken(raw, diagnosis__reported_by=["(unclosed"]), "test.yaml")


@pytest.mark.parametrize(
    ("text", "reads"),
    [
        ("阿妈头先呕咗，依家企唔稳", "妈妈刚才吐了,现在站不稳"),  # Cantonese
        ("阮翁拄才去予电着，胸坎闷闷", "阮我老公刚才去被电到,胸口闷闷"[1:]),  # Hokkien
        ("阿拉囡囡敲门勿应", "我们孩子敲门不应"),  # Shanghainese
        # Wu, more (round 29), and the Mandarin that shares its characters
        ("老头子吃汤团噎牢了，讲勿出话，两只手捏牢头颈", "老伴吃汤团噎住了,说不出话,两只手捏住脖子"),
        ("姆妈叫了我十趟都叫勿醒，刷牙出血止勿牢", "妈妈叫了我十趟都叫不醒,刷牙出血止不住"),
        ("热性惊厥以后会变成癫痫伐", "热性惊厥以后会变成癫痫吗"),
        ("砍伐树木，步伐", "砍伐树木,步伐"),
        ("请勿打扰，勿忘我", "请勿打扰,勿忘我"),
        ("伊拉克，阿拉伯，伊曲康唑", "伊拉克,阿拉伯,伊曲康唑"),
        ("邪气入侵", "邪气入侵"),
        ("厓孙仔琴晡日肚屎痛", "我孙子昨天肚子痛"),  # Hakka
        ("出世十二工", "出生12天"),
        ("俺娘心跳得贼快，夜儿个一分钟一百八十多下", "我娘心跳得很快,昨天一分钟180多下"),  # Northern
        ("贼人", "贼人"),
        # Mandarin that shares the characters stays Mandarin
        ("头先着地", "头先着地"),
        ("毋庸置疑", "毋庸置疑"),
        # written Cantonese (round 27), and the Mandarin that shares its characters
        ("佢話要跳落去", "他说要跳下去"),
        ("说话要小心", "说话要小心"),
        ("一定係偏頭痛", "一定系偏头痛"),
        ("定係要早啲睇醫生", "还是要早些看医生"),
        ("唔好俾佢食嘢", "不要俾他吃东西"),
        ("不好吃，情况不好", "不好吃,情况不好"),
        ("BB發燒，塗咗BB霜，食BBQ", "宝宝发烧,涂了bb霜,吃bbq"),
        ("上年入過院，上年纪的人", "去年入过院,上年纪的人"),
        ("個鐘頭，兩個鐘", "个钟头,两个小时"),
        ("仲裁，仲有", "仲裁,还有"),
        ("作嘔，嘔吐", "作吐,呕吐"),
        ("三个工作日", "三个工作日"),
        ("切勿服用", "切勿服用"),
        # formal and classical written Chinese (round 30)
        ("家父七十有六，至今十余小时滴尿未出", "家父七十六,至今十多小时没尿出来"),
        ("去岁晕厥，呼之不应，未几即醒", "去年晕厥,叫不应,不久即醒"),
        ("石灰溅入左眼，仍痛，仍然红", "石灰溅入左眼,还痛,仍然红"),
        # Hokkien, Teochew and Hakka (round 30), and the Mandarin that shares their characters
        ("阮阿公倒佇涂跤，叫𣍐醒，无咧喘气", "阮阿公倒在地上,叫不醒,没有呼吸"),
        ("阮囝对三楼跋落来，吐三摆矣", "我孩子从三楼摔下来,吐三次了"),
        ("伊讲头壳痛甲欲死", "他讲头痛得要死"),
        (
            "伊曲康唑，食物，欲望，指甲，甲状腺，摔了一跤，给予，摆动，对面",
            "伊曲康唑,食物,欲望,指甲,甲状腺,摔了一跤,给予,摆动,对面",
        ),
        ("头那晕，喊佢唔系几应", "头晕,喊他不太应"),
        # Cantonese 个女/个仔 are a daughter and a son after a possessor; Mandarin "有个女生" keeps its girl
        ("我个女发烧，佢个仔跌亲", "我女儿发烧,他儿子摔伤"),
        ("有个女生跑完步，一个女的晕倒了", "有个女生跑完步,一个女的晕倒了"),
        # numbers in words before a unit read as digits; words that are not counts stay words
        ("怀孕三十五周，血压一百七/一百一十", "怀孕35周,血压170/110"),
        ("孙子才四十天", "孙子才40天"),
        ("我今年六十八岁", "我今年68岁"),
        ("吃了一百零七片", "吃了107片"),
        # words that are not counts stay words
        ("十几天", "十几天"),
        ("七十多了", "七十多了"),
        ("一天到晚", "一天到晚"),
        ("尿不出来十二个小时了", "尿不出来十二个小时了"),
        # voice input: a space between two Chinese words is a clause break; next to digits or Latin it joins
        ("追尾了 车头撞烂了  他卡在里面", "追尾了,车头撞烂了,他卡在里面"),
        ("每次 2 片，血压 160", "每次 2 片,血压 160"),
        ("吃了 tylenol 两片", "吃了 tylenol 两片"),
        # written with a space after nearly every character or short word (sign-language order, children): the
        # spaces join one phrase
        ("我 头 疼 厉害 很", "我头疼厉害很"),
        ("咳 血 很 多 ，支 气 管 扩 张", "咳血很多 ,支气管扩张"),
        ("老人 吃 年糕 噎 住 了 不 能 说 话", "老人吃年糕噎住了不能说话"),
    ],
)
def test_normalisation_reads_dialect_words_and_worded_numbers(text: str, reads: str) -> None:
    from medtune.safety.rules import normalize

    assert normalize(text) == reads


def test_every_dialect_word_is_written_as_the_text_reaches_it() -> None:
    """The dialect words are matched after OpenCC and the character table: a key in another form (𣍐, which
    OpenCC writes 𫧃) could never match."""
    from medtune.safety import rules

    unreachable = {
        word
        for word in rules._DIALECT
        if rules._COMPAT_RE.sub(rules._compat, rules._T2S.convert(word)) != word
    }
    assert not unreachable


def test_dialect_reading_leaves_no_rule_phrase_ambiguous() -> None:
    # Rule phrases pass through the same normalisation; none may collapse onto a cue of another class
    # (a Cantonese 实喺 "definitely" must not become the Mandarin 实在 "really"). load_rules refuses a phrase
    # listed under two cue classes, so loading the packaged rules is the check.
    rules = load_rules()
    patterns = {p.pattern for p in rules.phrases if p.literal and p.concept == "certain"}
    assert "实在" not in patterns and "实系" in patterns


def test_dialect_trie_reads_like_the_longest_first_alternation() -> None:
    """The dialect words are matched through a trie for speed; it must pick what the plain alternation (longest
    word first, each with its guards) picks, on text built from the words themselves and their neighbours."""
    import random
    import re

    from medtune.safety import rules

    plain = re.compile(
        "|".join(
            rules._DIALECT_GUARD_BEFORE.get(k, "") + re.escape(k) + rules._DIALECT_GUARD.get(k, "")
            for k in sorted(rules._DIALECT, key=len, reverse=True)
        )
    )
    words = list(rules._DIALECT) + [
        "说",
        "讲",
        "一",
        "着",
        "子",
        "庸",
        "q",
        "霜",
        "纪",
        "头",
        "裁",
        "吐",
        "吃",
        "，",
    ]
    rng = random.Random(7)
    for _ in range(3000):
        text = "".join(rng.choice(words) for _ in range(rng.randint(1, 8)))
        assert rules._DIALECT_RE.sub(rules._dialect, text) == plain.sub(rules._dialect, text), text


def test_the_listed_spaces_are_every_space_in_unicode() -> None:
    import sys

    from medtune.safety.rules import _SPACES

    assert {chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()} == _SPACES


def test_foods_setting_makes_an_amount_of_a_food_no_dose(raw: dict) -> None:
    # honey stays a drug group (under one it is contraindicated); measured on the way to hospital it is food
    question, answer = "孩子吞了纽扣电池", "去医院的路上每10分钟喂两小勺（约10毫升）蜂蜜，最多6次。"
    for value, dosed in ((raw["settings"]["foods"], False), ([], True)):
        engine = SafetyEngine(parse_rules(_broken(raw, settings__foods=value), "test.yaml"))
        found = {f.kind for f in engine.check_answer(answer, question)}
        assert ("dose" in found) is dosed


def test_animal_and_person_words_must_be_plain_regexes(raw: dict) -> None:
    with pytest.raises(RulesError, match="animal_words.*no regular expression"):
        parse_rules(_broken(raw, settings__animal_words=["兔(子"]), "test.yaml")
    with pytest.raises(RulesError, match="person_words.*may not name a group"):
        parse_rules(_broken(raw, settings__person_words=["(?P<animal>我)"]), "test.yaml")


def test_without_animal_words_a_red_flag_is_read_as_a_persons(raw: dict) -> None:
    """Rules with no animal words (a clinician's own file) triage a lamb's fever like anyone's."""
    question = "奶奶家的羊羔子生下来十天了，今天不吃奶，趴着不动，身上发烫"
    assert not SafetyEngine(parse_rules(raw, "test.yaml")).triage(question)
    engine = SafetyEngine(parse_rules(_broken(raw, settings__animal_words=[]), "test.yaml"))
    assert engine.triage(question)


def test_animal_words_with_their_own_groups_still_tell_an_animal(raw: dict) -> None:
    words = [*raw["settings"]["animal_words"], "(羊)驼"]
    engine = SafetyEngine(parse_rules(_broken(raw, settings__animal_words=words), "test.yaml"))
    assert not engine.triage("我家羊驼突然倒在地上抽搐，叫不醒")
    assert engine.triage("我爸在喂羊驼，突然倒在地上抽搐，叫不醒")
