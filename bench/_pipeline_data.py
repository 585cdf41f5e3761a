"""Synthetic Chinese Q&A records with planted duplicates and personal data, for bench/data_pipeline.py.

The generator plants exact duplicates (same text up to spacing, punctuation width and Q&A-site formulas),
near-duplicates (1-5 % of characters substituted, inserted or deleted) and personal data (phones, ID
numbers, emails, QQ/WeChat ids, URLs, names with honorifics) and returns the truth that
``data_pipeline.score`` checks the outputs against. Not a benchmark itself.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from medtune.data.dedup import jaccard, shingles

DEPARTMENTS = ["消化内科", "呼吸内科", "心血管内科", "内分泌科", "神经内科", "肝病科", "肾内科", "儿科", "妇产科",
               "皮肤科", "骨科", "泌尿外科", "耳鼻喉科", "精神心理科"]  # fmt: skip
SYMPTOMS = ["头疼", "头晕", "咳嗽", "发烧", "胸闷", "心慌", "腹痛", "腹泻", "便秘", "恶心", "呕吐", "失眠", "乏力",
            "腰痛", "关节痛", "皮疹", "瘙痒", "尿频", "尿痛", "耳鸣", "鼻塞", "咽痛", "气短", "水肿", "口干",
            "多汗", "手麻", "胃胀", "反酸", "烧心", "黄疸", "食欲差", "消瘦", "心悸", "眼花", "视物模糊",
            "牙龈出血", "脱发", "痛经", "月经不调", "盗汗", "低热", "肩膀疼", "膝盖疼", "脚踝肿", "口腔溃疡",
            "嗓子有异物感", "打呼噜", "记忆力下降", "情绪低落"]  # fmt: skip
PARTS = ["左侧", "右侧", "上腹部", "下腹部", "后背", "胸口", "额头", "后脑勺", "腰部", "颈部", "小腿", "手指"]
DURATIONS = ["两天", "三天", "一周", "半个月", "一个多月", "三个月", "半年", "一年多", "好几年", "十来天"]
DRUGS = ["布洛芬", "阿莫西林", "奥美拉唑", "二甲双胍", "硝苯地平", "阿司匹林", "氯雷他定", "蒙脱石散", "头孢克肟",
         "甲硝唑", "维生素B12", "谷维素", "板蓝根", "连花清瘟", "复方甘草片", "铝碳酸镁", "莫沙必利", "坦索罗辛",
         "左氧氟沙星", "氨氯地平", "阿托伐他汀", "胰岛素", "甲钴胺", "叶酸", "碳酸钙"]  # fmt: skip
EXAMS = ["血常规", "尿常规", "肝功能", "肾功能", "心电图", "胃镜", "肠镜", "腹部B超", "胸部CT", "头颅核磁", "甲功",
         "血糖", "血脂", "幽门螺杆菌检测", "骨密度", "心脏彩超", "肺功能", "过敏原检测"]  # fmt: skip
CAUSES = ["病毒感染", "细菌感染", "饮食不规律", "精神压力大", "长期熬夜", "受凉", "过敏", "内分泌失调", "慢性炎症",
          "肌肉劳损", "胃酸分泌过多", "血压波动", "血糖控制不佳", "缺铁", "颈椎病", "神经功能紊乱"]  # fmt: skip
QUESTION_TEMPLATES = [
    "{sym}{dur}了，{sym2}，这是怎么回事？", "我{age}岁，{sex}，最近{dur}一直{sym}，需要做什么检查吗？",
    "{part}{sym}{dur}，吃了{drug}没用，该怎么办？", "孩子{age2}岁，{sym}，还有点{sym2}，要去医院吗？",
    "{sym}和{sym2}是什么原因引起的？已经{dur}了。", "体检{exam}有点异常，平时{sym}，严重吗？",
    "老人{age}岁，{sym}{dur}，能吃{drug}吗？", "{dur}前开始{sym}，晚上更明显，伴有{sym2}，要紧吗？",
    "怀孕{weeks}周，最近{sym}，可以用{drug}吗？", "{sym}反复发作{dur}，做过{exam}说没事，为什么还难受？",
    "{exam}显示{finding}，需要吃药吗？", "吃了{food}之后{sym}，{dur}还没好。", "{sym}的时候{part}也跟着{sym2}。",
    "{drug}和{drug2}能一起吃吗？我{sym}{dur}了。", "医生说是{cause}，开了{drug}，吃完还是{sym}。",
    "早上起来{sym}，下午又{sym2}，{dur}都这样。", "{sex}，{age}岁，{sym}伴{sym2}，去哪个科看？",
    "{sym}是不是{disease}的表现？家里人有{disease}。", "{exam}复查{finding}，比上次好一点吗？",
    "工作压力大，{dur}以来{sym}，睡不好。",
]  # fmt: skip
STORY = [
    "有{disease}病史{years}年。", "平时{habit}。", "之前在{place}看过，说是{cause}。", "血压{bp}。",
    "体温最高{temp}度。", "吃过{drug}{days}天。", "家里{relative}也有类似情况。", "没有过敏史。",
    "{exam}结果：{finding}。", "最近体重{weight}。", "上个月做过{exam}。", "症状在{time}最明显。",
]  # fmt: skip
DISEASES = [
    "高血压",
    "糖尿病",
    "胃炎",
    "乙肝",
    "哮喘",
    "冠心病",
    "甲亢",
    "痛风",
    "颈椎病",
    "鼻炎",
    "湿疹",
    "贫血",
]
HABITS = [
    "爱吃辣",
    "经常熬夜",
    "抽烟十几年",
    "喝酒比较多",
    "久坐不动",
    "饮食不规律",
    "喜欢喝浓茶",
    "很少运动",
]
PLACES = ["社区医院", "县医院", "诊所", "三甲医院", "药店", "中医院"]
FINDINGS = ["转氨酶偏高", "白细胞偏低", "尿蛋白阳性", "血糖7.8", "甘油三酯偏高", "窦性心律不齐", "轻度脂肪肝",
            "胆囊息肉", "甲状腺结节", "幽门螺杆菌阳性", "血红蛋白偏低", "尿酸偏高"]  # fmt: skip
RELATIVES = ["父亲", "母亲", "哥哥", "姐姐", "爷爷", "奶奶"]
TIMES = ["早上", "饭后", "夜里", "运动后", "天冷的时候", "情绪激动时"]
ANSWER_SENTENCES = [
    "根据你描述的{sym}和{sym2}，考虑{cause}的可能性比较大。", "建议先做{exam}和{exam2}，明确原因后再对症处理。",
    "可以在医生指导下短期使用{drug}，注意按说明书服用。", "平时注意清淡饮食，少吃辛辣油腻，规律作息。",
    "如果出现{sym}加重或者{sym2}，要及时到医院就诊。", "{drug}一般需要连续用{dur}左右，再评估效果。",
    "这种情况多数和{cause}有关，不必过度紧张。", "{exam}结果正常的话，可以先观察{dur}。",
    "注意监测{exam2}，必要时调整{drug}的用量。", "{part}的{sym}也可能来自{cause}，需要面诊检查。",
    "避免熬夜和劳累，适当运动，增强抵抗力。", "有{sym}的人群要戒烟限酒，控制体重。",
    "如果{dur}后仍无好转，建议复查{exam}。", "不建议自行长期服用{drug}，以免掩盖病情。",
    "{cause}导致的{sym}，经过规范治疗大多可以缓解。", "可以先热敷{part}，每次十五分钟，每天两三次。",
    "多喝温水，保证睡眠，{sym}一般会逐渐减轻。", "合并{sym2}时要警惕{cause}，尽早就医评估。",
    "{age}岁以上出现{sym}，建议常规做一次{exam}。", "饮食上可以多吃蔬菜水果，少吃{food}。",
]  # fmt: skip
FOODS = ["甜食", "咸菜", "油炸食品", "海鲜", "烧烤", "浓茶", "咖啡", "冷饮", "腌制食品", "动物内脏"]
BOILERPLATE = ["希望我的回答对您有帮助。", "感谢您的咨询！", "祝您身体健康！", "以上是我的建议，仅供参考。"]

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林高罗郑梁谢宋唐许韩冯邓曹彭曾肖田董潘袁蔡蒋余于杜叶程魏苏吕丁任卢姚沈钟姜崔谭陆范汪廖石金韦贾夏付方邹熊白孟秦邱侯江尹薛闫段雷龙黎史陶贺毛郝顾龚邵万覃武钱戴严莫孔向常"  # fmt: skip
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀英华玉兰桂建国平刚红文辉志宏霞波斌鹏晓燕佳宇浩晨欣雪梅琳"
HONORIFICS = ["医生", "大夫", "主任", "教授", "女士", "先生", "护士"]
PII_CONTEXTS = {
    "mobile": ["我的电话是{v}，方便的话联系我。", "手机{v}，麻烦医生回个电话。", "联系方式：{v}"],
    "landline": ["家里座机{v}，白天有人。", "科室电话是{v}吗？"],
    "id_card": ["我的身份证号{v}，医保能报吗？", "患者身份证：{v}"],
    "email": ["检查报告发到{v}了，请查收。", "邮箱 {v} 可以收到结果。"],
    "qq": ["加我QQ：{v}详细说。", "我的qq号{v}"],
    "wechat": ["加我微信{v}，我把化验单发给你。", "vx：{v}"],
    "url": ["我在{v}上看到的说法对吗？", "报告截图在 {v}"],
    "name": ["我挂了{v}的号，", "之前{v}说没事，", "{v}您好，", "昨天{v}给我开了药，", "是{v}让我来问的，"],
}  # fmt: skip


def _valid_id(rng: random.Random) -> str:
    area = rng.choice(["110105", "310104", "440305", "510107", "330106", "420111"])
    birth = f"{rng.randint(1950, 2015)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
    body = area + birth + f"{rng.randint(0, 999):03d}"
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    return body + "10X98765432"[sum(int(d) * w for d, w in zip(body, weights)) % 11]


def _pii_value(kind: str, rng: random.Random) -> tuple[str, str]:
    """(text inserted, the part that must disappear)."""
    if kind == "mobile":
        n = f"1{rng.choice('3456789')}{rng.randint(0, 999999999):09d}"
        v = rng.choice([n, f"{n[:3]}-{n[3:7]}-{n[7:]}", f"{n[:3]} {n[3:7]} {n[7:]}", f"+86 {n}"])
        return v, v
    if kind == "landline":
        v = f"0{rng.choice(['10', '21', '755', '571', '28'])}-{rng.randint(2000000, 89999999)}"
        return v, v
    if kind == "id_card":
        v = _valid_id(rng)
        return v, v
    if kind == "email":
        user = "".join(rng.choices("abcdefghijklmnopqrstuvwxyz0123456789", k=rng.randint(5, 10)))
        v = f"{user}@{rng.choice(['163.com', 'qq.com', 'gmail.com', 'sina.cn', 'hospital.org.cn'])}"
        return v, v
    if kind == "qq":
        v = str(rng.randint(10000, 3999999999))
        return v, v
    if kind == "wechat":
        v = "wxid_" + "".join(rng.choices("abcdefghijklmnopqrstuvwxyz0123456789", k=rng.randint(6, 12)))
        return v, v
    if kind == "url":
        path = "".join(rng.choices("abcdefghij0123456789", k=8))
        v = f"https://www.{rng.choice(['haodf', '120ask', 'xywy', 'dxy', 'chunyuyisheng'])}.com/{path}.html"
        return v, v
    # What must go is the name in front of its honorific (a lone surname character occurs in other words).
    shown = (
        rng.choice(SURNAMES) + "".join(rng.choices(GIVEN, k=rng.choice([0, 1, 2]))) + rng.choice(HONORIFICS)
    )
    return shown, shown


def _fill(template: str, rng: random.Random) -> str:
    s1, s2 = rng.sample(SYMPTOMS, 2)
    e1, e2 = rng.sample(EXAMS, 2)
    d1, d2 = rng.sample(DRUGS, 2)
    return template.format(
        sym=s1, sym2=s2, dur=rng.choice(DURATIONS), age=rng.randint(18, 85), age2=rng.randint(1, 14),
        sex=rng.choice("男女"), part=rng.choice(PARTS), drug=d1, drug2=d2, exam=e1, exam2=e2,
        cause=rng.choice(CAUSES), food=rng.choice(FOODS), weeks=rng.randint(6, 38), finding=rng.choice(FINDINGS),
        disease=rng.choice(DISEASES), years=rng.randint(1, 20), habit=rng.choice(HABITS), place=rng.choice(PLACES),
        bp=f"{rng.randint(100, 180)}/{rng.randint(60, 110)}", temp=f"{rng.uniform(37.2, 40.0):.1f}",
        days=rng.randint(2, 14), relative=rng.choice(RELATIVES), weight=rng.choice(["掉了五斤", "涨了不少", "没变化"]),
        time=rng.choice(TIMES),
    )  # fmt: skip


def _original(rng: random.Random) -> tuple[str, str, str]:
    parts = [_fill(t, rng) for t in rng.sample(QUESTION_TEMPLATES, rng.randint(1, 2))]
    parts += [_fill(t, rng) for t in rng.sample(STORY, rng.randint(1, 3))]
    rng.shuffle(parts)
    q = "".join(parts)
    a = "".join(_fill(t, rng) for t in rng.sample(ANSWER_SENTENCES, rng.randint(4, 8)))
    if rng.random() < 0.3:
        a = "你好，" + a + rng.choice(BOILERPLATE)
    return q, a, rng.choice(DEPARTMENTS)


_EDIT_POOL = "".join(SYMPTOMS) + "的了是在有我你他这那要会能就也都"


def _near_copy(text: str, rng: random.Random, rate: float) -> str:
    out = []
    for ch in text:
        r = rng.random()
        if r < rate / 3:
            continue
        if r < 2 * rate / 3:
            out.append(rng.choice(_EDIT_POOL))
        elif r < rate:
            out.extend((ch, rng.choice(_EDIT_POOL)))
        else:
            out.append(ch)
    return "".join(out)


def _exact_copy(text: str, rng: random.Random, formula: bool) -> str:
    """Same text after cleaning: half-width punctuation, extra spaces, or (answers) a Q&A-site formula."""
    choice = rng.random()
    if choice < 0.4:
        return text.replace("，", ",").replace("？", "?")
    if choice < 0.7 or not formula:
        return text.replace("，", "， ")
    return text + rng.choice(BOILERPLATE)


def generate(path: Path, n: int, seed: int, exact_rate: float = 0.05, near_rate: float = 0.10,
             pii_rate: float = 0.05) -> dict:  # fmt: skip
    """Write n records to ``path`` (JSONL); return the planted truth."""
    rng = random.Random(seed)
    n_dup = int(n * (exact_rate + near_rate))
    n_orig = n - n_dup
    rows: list[tuple[str, str, str]] = []
    cluster: list[int] = []
    kind: list[str] = []
    pii: dict[int, list[tuple[str, str]]] = {}
    similarity: dict[int, float] = {}
    for i in range(n_orig):
        q, a, d = _original(rng)
        if rng.random() < pii_rate:
            k = rng.choice(list(PII_CONTEXTS))
            shown, secret = _pii_value(k, rng)
            q = q + rng.choice(PII_CONTEXTS[k]).format(v=shown)
            pii[i] = [(k, secret)]
        rows.append((q, a, d))
        cluster.append(i)
        kind.append("original")
    for _ in range(n_dup):
        src = rng.randrange(n_orig)
        q, a, d = rows[src]
        if rng.random() < exact_rate / (exact_rate + near_rate):
            q, a, k = _exact_copy(q, rng, formula=False), _exact_copy(a, rng, formula=True), "exact"
        else:
            rate = rng.uniform(0.01, 0.05)
            q, a, k = _near_copy(q, rng, rate), _near_copy(a, rng, rate), "near"
            # The truth about "near": the n-gram Jaccard similarity to the original, as the rule defines it.
            similarity[len(rows)] = jaccard(
                shingles(f"{q}\n{a}", 3), shingles(f"{rows[src][0]}\n{rows[src][1]}", 3)
            )
        if src in pii:
            pii[len(rows)] = [(pk, v) for pk, v in pii[src] if v in q or v in a]
        rows.append((q, a, d))
        cluster.append(src)
        kind.append(k)
    order = list(range(len(rows)))
    rng.shuffle(order)
    truth = {"cluster": {}, "kind": {}, "pii": {}, "similarity": {}, "n": n}
    with open(path, "w", encoding="utf-8") as f:
        for pos, i in enumerate(order):
            rid = f"r{pos:07d}"
            q, a, d = rows[i]
            f.write(
                json.dumps({"id": rid, "question": q, "answer": a, "department": d}, ensure_ascii=False)
                + "\n"
            )
            truth["cluster"][rid] = cluster[i]
            truth["kind"][rid] = kind[i]
            if pii.get(i):
                truth["pii"][rid] = pii[i]
            if i in similarity:
                truth["similarity"][rid] = similarity[i]
    return truth
