"""The example lists find nothing in clean text: hearth's own corpora and knowledge-base
sample, and everyday business text written to sit close to the listed words (invoices,
verification codes, ID cards, classes in Essex, flame retardant, casinos in the news)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hearth.apps.moderation import EXAMPLES, Matcher, load_lists
from hearth.rag.parse import parse

DATA = Path(str(EXAMPLES["ads"])).parents[1]

EVERYDAY = """\
这家店的牛肉面汤头很足，面条筋道，就是周末排队有点久，建议错峰来。
服务员态度很好，主动帮我们加了一壶热茶，结账的时候还提醒我们可以开发票。
发货很快，包装结实，衣服尺码标准，颜色和图片一致，会回购。
快递小哥送货上门，东西完好无损，就是外包装有点脏，给四星。
房间干净，隔音一般，早餐种类不多但都很新鲜，离地铁站步行五分钟。
这款耳机降噪效果不错，通勤路上基本听不到车厢噪音，续航一天没问题。
您的验证码为482913，5分钟内有效，请勿将验证码告诉他人。
【安全提示】请勿向任何人透露银行卡密码、网银密码、短信验证码和信用卡背面三位数（CVV码）。
客服不会索要您的支付密码，如遇到自称客服要求转账，请立即挂断。
【银行】您尾号3021的储蓄卡于09:41支出人民币58.00元，余额以实际为准。
您预约的体检将于明天上午八点开始，请携带身份证原件并空腹前往。
您的订单已发货，运单号SF1234567890，可在小程序内查看物流进度。
会员日限时折扣：全场满二百减三十，活动截至本周日晚十点。
系统将于今晚零点至两点进行维护，期间暂停充值与提现服务，给您带来不便敬请谅解。
报销时请将发票原件、行程单和审批截图一并提交财务，票价超过标准的部分自理。
项目开发。票价统计表已更新到共享盘，请各组负责人在周五前确认。
本周三下午两点在三楼会议室召开季度复盘会，请准备好各自的数据。
新员工入职需填写个人信息登记表，人事部会通过企业邮箱发送链接。
市气象台发布暴雨蓝色预警，预计今天夜间到明天白天有中到大雨，请市民注意出行安全。
第十五届全国运动会男子百米决赛今晚举行，三名选手跑进十秒大关。
今年一季度全市社会消费品零售总额同比增长百分之六点二，线上消费增长明显。
央行宣布下调存款准备金率零点五个百分点，释放长期资金约一万亿元。
澳门博物馆推出“葡韵生活”特展，展出老照片和百年家具。
老虎机制造商的股价今天大跌，分析师认为与监管政策收紧有关。
哈哈，今天终于把代码提交了，明天继续加班。
这个方案我觉得挺好的，就是成本还可以再压一压。
他说话一向很直接，但人并不坏，大家慢慢就习惯了。
The ramen was rich and the noodles had a nice bite; expect a queue at weekends.
Fast delivery, sturdy packaging, true to size. Will buy again.
The hotel room was spotless, the breakfast small but fresh, and the metro is a five-minute walk.
Your verification code is 482913. It expires in 5 minutes. Never share it with anyone.
Your parcel has shipped. Track it in the app with tracking number 1Z999AA10123456784.
Reminder: your dentist appointment is tomorrow at 9:30. Reply C to confirm.
Flash sale: 30% off all outdoor gear this weekend only.
Our support team will never ask for your password or card details.
Never share your PIN number, your social security number, or your card number and CVV.
Security question: what is your mother's maiden name? Set a new online banking password.
The class will assess the assets of three companies in Essex, Sussex and Middlesex.
My son's ex-wife works as a therapist in Scunthorpe; she has ex-colleagues in Cockburn.
The assassin in the novel hides behind a flame retardant curtain at the embassy.
Please analyse the cocktail menu and the shuttle timetable before Monday.
The cold retard develops flavour and makes scoring easier.
He said the results were a sure bet for the next quarter, but the board disagreed.
Local news: the casino bill was debated in parliament for six hours on Tuesday.
Macau's gaming revenue rose for the third month running, the regulator said.
The city council approved a new cycling lane along the river, opening in May.
Shares of the chip maker fell 4% after it cut its full-year forecast.
Passwords must be at least 12 characters and are stored as salted hashes.
Click Save to keep your changes, or Cancel to go back.
Hello Kitty fans queued for hours; go to Hello Kitty Land by the east gate.
We shut up shop at six on Sundays.
Double-check your money transfers: the bank will never call you for a PIN.
Sextant, Sussex and sextet are all fine words; so are cockpit and Dickens.
"""


@pytest.fixture(scope="module")
def matcher() -> Matcher:
    return Matcher(load_lists(sorted(EXAMPLES), Path("/nonexistent")))


def documents() -> list[Path]:
    corpus = sorted((DATA / "corpus").glob("*.txt"))
    kb = sorted(p for p in (DATA / "kb_sample").rglob("*") if p.is_file())
    return corpus + kb


@pytest.mark.parametrize("path", documents(), ids=lambda p: p.name)
def test_shipped_corpora_have_no_hits(matcher: Matcher, path: Path) -> None:
    text = path.read_text(encoding="utf-8") if path.suffix == ".jsonl" else parse(path).text
    assert len(text) > 100
    assert [(h.text, h.word.text) for h in matcher.find(text)] == []


def test_everyday_business_text_has_no_hits(matcher: Matcher) -> None:
    hits = [(line, h.text) for line in EVERYDAY.splitlines() for h in matcher.find(line)]
    assert hits == []
    assert matcher.find(EVERYDAY) == []
