"""Names for the demo city: real Fuzhou district and street names, plausible community names
and people's names. Names are "Pinyin 汉字" so screens read in both languages."""
from __future__ import annotations

import random

DISTRICTS = ["Gulou 鼓楼区", "Taijiang 台江区", "Cangshan 仓山区", "Mawei 马尾区", "Jin'an 晋安区",
             "Changle 长乐区"]

_STREETS = ["Nanjie 南街街道", "Dongjie 东街街道", "Wenquan 温泉街道", "Gudong 鼓东街道",
            "Guxi 鼓西街道", "Huada 华大街道", "Antai 安泰街道", "Shuibu 水部街道", "Wufeng 五凤街道",
            "Hongshan 洪山镇", "Yangqiao 杨桥街道", "Aofeng 鳌峰街道", "Chating 茶亭街道",
            "Yingzhou 瀛洲街道", "Houzhou 后洲街道", "Yixu 义洲街道", "Xinggang 新港街道",
            "Shanghai 上海街道", "Duiwu 对湖街道", "Linjiang 临江街道", "Cangqian 仓前街道",
            "Dongsheng 东升街道", "Jinshan 金山街道", "Chengmen 城门镇", "Gaishan 盖山镇",
            "Luoxing 罗星街道", "Mawei 马尾镇", "Tingjiang 亭江镇", "Wangzhuang 王庄街道",
            "Xiangyuan 象园街道", "Gushan 鼓山镇", "Xindian 新店镇", "Yuefeng 岳峰镇",
            "Wuhang 吴航街道", "Hangcheng 航城街道", "Yingqian 营前街道"]

_COMMUNITY_STEMS = ["Sanfang 三坊", "Qixiang 七巷", "Guanglu 光禄", "Wenru 文儒", "Yijin 衣锦",
                    "Langguan 郎官", "Taxiang 塔巷", "Huangxiang 黄巷", "Gongxiang 宫巷",
                    "Anmin 安民", "Jibi 吉庇", "Qingcheng 庆城", "Hujie 虎节", "Pingshan 屏山",
                    "Yeshan 冶山", "Hubin 湖滨", "Xihu 西湖", "Shudou 树兜", "Dongda 东大",
                    "Wusi 五四", "Beimen 北门", "Xiyang 西洋", "Kaiyuan 开元", "Huaxiang 华祥",
                    "Bayi 八一", "Jiangbin 江滨", "Minjiang 闽江", "Jinji 金鸡", "Wushan 乌山",
                    "Yushan 于山", "Baita 白塔", "Dongjie 东街", "Shuixi 水西", "Guanjing 官井",
                    "Longfeng 龙峰", "Fengle 丰乐", "Meiliu 梅柳", "Huiting 汇亭", "Xiaoliu 小柳"]

SURNAMES = "林陈黄郑王李张刘吴杨周徐赵孙马朱胡郭何罗高梁谢宋唐许韩冯邓曹彭曾肖田董潘袁蔡蒋余叶"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍建国文辉鹏海燕红志晨宇欣怡思婷浩然子涵"

UNIT_KINDS = ["restaurant", "grocery", "pharmacy", "clinic", "kindergarten", "primary_school",
              "hotel", "market", "repair_shop", "bank", "hair_salon", "tea_house"]
UNIT_SITE_KINDS = ["campus", "wholesale_market", "factory", "hospital", "office_park"]
ORG_KINDS = ["property_company", "owners_committee", "volunteer_group", "elderly_association"]


class NamePicker:
    """Draws names without repeats; numbers them once a list runs out."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self._streets = list(_STREETS)
        self._communities = list(_COMMUNITY_STEMS)
        rng.shuffle(self._streets)
        rng.shuffle(self._communities)
        self._issued: dict[str, int] = {}

    def _draw(self, pool: list[str]) -> str:
        name = pool.pop(0)
        pool.append(name)
        count = self._issued.get(name, 0) + 1
        self._issued[name] = count
        return name if count == 1 else f"{name} {count}"

    def street(self) -> str:
        return self._draw(self._streets)

    def community(self) -> str:
        pinyin, hanzi, *number = self._draw(self._communities).split(" ")
        return " ".join([pinyin, *number, f"{hanzi}社区"])  # "Sanfang 三坊社区", "Sanfang 2 三坊社区"

    def person(self) -> str:
        given = "".join(self.rng.choice(GIVEN) for _ in range(self.rng.choice((1, 2))))
        return self.rng.choice(SURNAMES) + given
