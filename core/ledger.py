"""The words of the grid's ledger (基础数据, issue 26): the five elements' kinds and states, each with
its label (English and Chinese, core.catalogue.Label). This is their one spelling: the ledger's
store and screens, the handheld's registration forms, the demo ledger and migration 0032's check
constraints use these values (tests/unit/test_ledger_words.py compares the SQL with them).

place: building → entrance (单元) → floor → house (房屋, its `HouseUse`);
people: household (户, its head 户主 and each member's `Relation` to the head) → resident
(`Registration`, `Gender`, care and restricted `Tag`s);
things: urban parts (部件, CJ/T 214: `ThingKind`, `ThingState`);
organisations: the city's shops and units (门店/单位, with the fire-safety key unit flag) and social
organisations;
events: the cases, linked to what they concern (`SubjectKind`).
"""
from __future__ import annotations

from enum import StrEnum

from core.catalogue import Label


class HouseUse(StrEnum):
    OWNER_OCCUPIED = "owner_occupied"     # 自住
    RENTED = "rented"                     # 出租
    COMMERCIAL = "commercial"             # 商用
    VACANT = "vacant"                     # 空置
    OTHER = "other"                       # 其他


HOUSE_USE_LABELS: dict[HouseUse, Label] = {
    HouseUse.OWNER_OCCUPIED: Label("owner-occupied", "自住"), HouseUse.RENTED: Label("rented", "出租"),
    HouseUse.COMMERCIAL: Label("commercial", "商用"), HouseUse.VACANT: Label("vacant", "空置"),
    HouseUse.OTHER: Label("other", "其他"),
}


class Gender(StrEnum):
    MALE = "male"
    FEMALE = "female"


GENDER_LABELS: dict[Gender, Label] = {Gender.MALE: Label("male", "男"), Gender.FEMALE: Label("female", "女")}


class Registration(StrEnum):
    LOCAL = "local"         # 户籍人口
    FLOATING = "floating"   # 流动人口
    FOREIGN = "foreign"     # 境外人员


REGISTRATION_LABELS: dict[Registration, Label] = {
    Registration.LOCAL: Label("local", "户籍"), Registration.FLOATING: Label("floating", "流动"),
    Registration.FOREIGN: Label("foreign", "境外"),
}


class Relation(StrEnum):
    """A resident's relation to the head of their household (与户主关系)."""
    HEAD = "head"               # 户主
    SPOUSE = "spouse"           # 配偶
    CHILD = "child"             # 子女
    PARENT = "parent"           # 父母
    GRANDCHILD = "grandchild"   # 孙辈
    GRANDPARENT = "grandparent"  # 祖辈
    SIBLING = "sibling"         # 兄弟姐妹
    TENANT = "tenant"           # 租户
    OTHER = "other"             # 其他


RELATION_LABELS: dict[Relation, Label] = {
    Relation.HEAD: Label("head", "户主"), Relation.SPOUSE: Label("spouse", "配偶"),
    Relation.CHILD: Label("child", "子女"), Relation.PARENT: Label("parent", "父母"),
    Relation.GRANDCHILD: Label("grandchild", "孙辈"), Relation.GRANDPARENT: Label("grandparent", "祖辈"),
    Relation.SIBLING: Label("sibling", "兄弟姐妹"), Relation.TENANT: Label("tenant", "租户"),
    Relation.OTHER: Label("other", "其他"),
}


class Tag(StrEnum):
    """What the grid keeps an eye on for a resident: care tags (who needs help first at an alarm)
    and the restricted ones, seen only with the restricted-tags permission (`RESTRICTED_TAGS`)."""
    ELDERLY_ALONE = "elderly_alone"                 # 独居老人
    DISABLED = "disabled"                           # 残疾人
    LOW_INCOME = "low_income"                       # 低保
    VETERAN = "veteran"                             # 退役军人
    LEFT_BEHIND_CHILD = "left_behind_child"         # 留守儿童
    COMMUNITY_CORRECTION = "community_correction"   # 社区矫正
    DRUG_REHABILITATION = "drug_rehabilitation"     # 社区戒毒康复
    PETITION_KEY_PERSON = "petition_key_person"     # 信访重点人员


TAG_LABELS: dict[Tag, Label] = {
    Tag.ELDERLY_ALONE: Label("elderly living alone", "独居老人"), Tag.DISABLED: Label("disabled", "残疾人"),
    Tag.LOW_INCOME: Label("low-income", "低保"), Tag.VETERAN: Label("veteran", "退役军人"),
    Tag.LEFT_BEHIND_CHILD: Label("left-behind child", "留守儿童"),
    Tag.COMMUNITY_CORRECTION: Label("community correction", "社区矫正"),
    Tag.DRUG_REHABILITATION: Label("drug rehabilitation", "社区戒毒康复"),
    Tag.PETITION_KEY_PERSON: Label("petition key person", "信访重点人员"),
}
RESTRICTED_TAGS = frozenset({Tag.COMMUNITY_CORRECTION, Tag.DRUG_REHABILITATION, Tag.PETITION_KEY_PERSON})
NEEDS_HELP_FIRST = (Tag.ELDERLY_ALONE, Tag.DISABLED, Tag.LEFT_BEHIND_CHILD)   # at an alarm, in this order


class ThingKind(StrEnum):
    """Urban parts (部件) the grid keeps, as CJ/T 214 names them."""
    HYDRANT = "hydrant"                       # 消防栓
    MANHOLE_COVER = "manhole_cover"           # 井盖
    STREET_LAMP = "street_lamp"               # 路灯
    CAMERA = "camera"                         # 监控
    FIRE_EXTINGUISHER = "fire_extinguisher"   # 灭火器
    AED = "aed"                               # 自动体外除颤器


THING_KIND_LABELS: dict[ThingKind, Label] = {
    ThingKind.HYDRANT: Label("hydrant", "消防栓"), ThingKind.MANHOLE_COVER: Label("manhole cover", "井盖"),
    ThingKind.STREET_LAMP: Label("street lamp", "路灯"), ThingKind.CAMERA: Label("camera", "监控"),
    ThingKind.FIRE_EXTINGUISHER: Label("fire extinguisher", "灭火器"), ThingKind.AED: Label("AED", "除颤器"),
}


class ThingState(StrEnum):
    GOOD = "good"                   # 完好
    DAMAGED = "damaged"             # 损坏
    MISSING = "missing"             # 丢失
    UNDER_REPAIR = "under_repair"   # 维修中


THING_STATE_LABELS: dict[ThingState, Label] = {
    ThingState.GOOD: Label("good", "完好"), ThingState.DAMAGED: Label("damaged", "损坏"),
    ThingState.MISSING: Label("missing", "丢失"), ThingState.UNDER_REPAIR: Label("under repair", "维修中"),
}


class RecordKind(StrEnum):
    """A ledger record's kind: what a change in the history, and a case's subject, names."""
    BUILDING = "building"
    HOUSE = "house"
    HOUSEHOLD = "household"
    RESIDENT = "resident"
    THING = "thing"
    UNIT = "unit"                   # a shop or a unit (门店/单位): the city's `units`
    ORGANIZATION = "organization"   # a social organisation: the city's `organizations`


RECORD_KIND_LABELS: dict[RecordKind, Label] = {
    RecordKind.BUILDING: Label("building", "楼栋"), RecordKind.HOUSE: Label("house", "房屋"),
    RecordKind.HOUSEHOLD: Label("household", "户"), RecordKind.RESIDENT: Label("resident", "人口"),
    RecordKind.THING: Label("part", "部件"), RecordKind.UNIT: Label("shop or unit", "门店/单位"),
    RecordKind.ORGANIZATION: Label("social organisation", "社会组织"),
}


class Channel(StrEnum):
    """Where a change of the ledger came from."""
    HANDHELD = "handheld"   # a member's registration (采集登记), approved by a reviewer
    SCREEN = "screen"       # typed on the basic-data page
    IMPORT = "import"       # a CSV or XLSX import
    JOB = "job"             # a job of ours (the moved-out deletion)
    DEMO = "demo"           # the demo ledger


CHANNEL_LABELS: dict[Channel, Label] = {
    Channel.HANDHELD: Label("handheld", "采集登记"), Channel.SCREEN: Label("screen", "页面"),
    Channel.IMPORT: Label("import", "导入"), Channel.JOB: Label("job", "定时任务"), Channel.DEMO: Label("demo", "演示"),
}


class ChangeAction(StrEnum):
    """What a change in a record's history did."""
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"


CHANGE_ACTION_LABELS: dict[ChangeAction, Label] = {
    ChangeAction.CREATE: Label("created", "新增"), ChangeAction.UPDATE: Label("updated", "变更"),
    ChangeAction.DELETE: Label("deleted", "删除"),
}


class SubmissionKind(StrEnum):
    """What a member registers from the handheld (采集登记); each waits for review."""
    NEW_RESIDENT = "new_resident"             # 新增人口
    MOVED_OUT = "moved_out"                   # 人口迁出
    HOUSEHOLD_CHANGED = "household_changed"   # 户信息变更
    HOUSE_USE_CHANGED = "house_use_changed"   # 房屋用途变更
    NEW_SHOP = "new_shop"                     # 新增门店
    THING_DAMAGED = "thing_damaged"           # 部件损坏 (also reports a case)


SUBMISSION_KIND_LABELS: dict[SubmissionKind, Label] = {
    SubmissionKind.NEW_RESIDENT: Label("new resident", "新增人口"),
    SubmissionKind.MOVED_OUT: Label("moved out", "人口迁出"),
    SubmissionKind.HOUSEHOLD_CHANGED: Label("household changed", "户信息变更"),
    SubmissionKind.HOUSE_USE_CHANGED: Label("house use changed", "房屋用途变更"),
    SubmissionKind.NEW_SHOP: Label("new shop", "新增门店"),
    SubmissionKind.THING_DAMAGED: Label("part damaged", "部件损坏"),
}


class SubmissionState(StrEnum):
    PENDING = "pending"     # 待审核
    APPROVED = "approved"   # 已通过 (as submitted, or edited by the reviewer)
    RETURNED = "returned"   # 已退回, with a reason


SUBMISSION_STATE_LABELS: dict[SubmissionState, Label] = {
    SubmissionState.PENDING: Label("to review", "待审核"), SubmissionState.APPROVED: Label("approved", "已通过"),
    SubmissionState.RETURNED: Label("sent back", "已退回"),
}


class Permission(StrEnum):
    """What a screen user may be granted over the ledger's personal data, per org unit."""
    UNMASK = "unmask"                       # see an ID number or phone in full (each view audited)
    RESTRICTED_TAGS = "restricted_tags"     # see the restricted tags (RESTRICTED_TAGS)


PERMISSION_LABELS: dict[Permission, Label] = {
    Permission.UNMASK: Label("see personal data unmasked", "查看完整个人信息"),
    Permission.RESTRICTED_TAGS: Label("see restricted tags", "查看重点人员标签"),
}


def values(enum: type[StrEnum]) -> list[str]:
    """The values of one of these vocabularies, in their order (for SQL's `= any(%s)` and checks)."""
    return [member.value for member in enum]
