// The app's words, Chinese first and English second: the one place a phrase of the phone is spelled.
// Labels of the catalogue (categories, states) come from the server (GET /catalogue, the case lists);
// the fallbacks here are used only before the first answer has been cached.

export const REASONS = {
  no_session: ["请输入 PIN 登录", "Sign in with your PIN"],
  bad_session: ["登录已过期，请重新输入 PIN", "Your session ended: sign in with your PIN again"],
  revoked_device: ["本手机已被停用，请联系社区", "This phone was revoked: ask your community"],
  bad_code: ["登记码无效、已使用或已过期，请向社区索取新的登记码",
    "This enrolment code is used, expired or unknown: ask your community for a new one"],
  bad_pin: ["PIN 不正确", "Wrong PIN"],
  bad_credentials: ["PIN 不正确", "Wrong PIN"],
  too_many_failed_logins: ["PIN 错误次数过多，请稍后再试", "Too many wrong PINs: wait and try again"],
  rate_limited: ["发送过于频繁，稍后自动重试", "Sending too fast: it will try again"],
  over_quota: ["今日照片已达上限", "Today's photo quota is used up"],
  not_yours: ["这不是您的任务", "This is not yours"],
  outside_grid: ["不在您的网格内", "Outside your grid"],
  not_found: ["未找到", "Not found"],
  payload_too_large: ["内容过大", "Too large"],
  unsupported_media_type: ["照片格式不支持", "This photo's type is not accepted"],
  not_stored_yet: ["服务器尚未保存，将重试", "Not stored yet: it will be sent again"],
  network: ["无网络连接", "No network"],
};

export function reasonWords(reason, detail) {
  const words = REASONS[reason];
  const text = words ? `${words[0]} · ${words[1]}` : `${reason || "error"}`;
  return detail ? `${text} (${detail})` : text;
}

// an incident's severity 1..4 (core.catalogue.SEVERITY_LABELS), used when GET /catalogue has no
// `severities` (its `urgencies` are the case's urgent / normal, which the server derives from them)
export const SEVERITIES = [
  { severity: 1, label_zh: "低", label_en: "low" },
  { severity: 2, label_zh: "一般", label_en: "medium" },
  { severity: 3, label_zh: "较高", label_en: "high" },
  { severity: 4, label_zh: "紧急", label_en: "critical" },
];

// core/catalogue.py's DIARY_CATEGORIES and incident categories, for a phone that has not yet read
// GET /catalogue (the service worker keeps its last answer)
export const FALLBACK_CATALOGUE = {
  incident_categories: [
    ["exposed_garbage", "暴露垃圾", "Exposed garbage", "trash", 1],
    ["dirty_road", "道路不洁", "Dirty road surface", "broom", 1],
    ["illegal_construction", "违法建设", "Illegal construction", "crane", 2],
    ["street_vending", "无照经营游商", "Unlicensed street vending", "cart", 1],
    ["illegal_parking", "违章停车", "Illegal parking", "car", 1],
    ["blocked_fire_lane", "占用消防通道", "Blocked fire lane", "lane", 3],
    ["fire_hazard", "消防隐患", "Fire hazard", "fire", 3],
    ["safety_hazard", "安全隐患", "Safety hazard", "warning", 3],
    ["water_leak", "漏水", "Water leak", "drop", 2],
    ["neighbour_dispute", "邻里纠纷", "Neighbour dispute", "people", 2],
    ["noise", "噪声扰民", "Noise nuisance", "noise", 1],
    ["stray_animal", "流浪动物", "Stray animal", "paw", 1],
    ["flyposting", "乱张贴乱涂写", "Flyposting and graffiti", "poster", 1],
    ["damaged_road", "道路破损", "Damaged road", "road", 2],
    ["manhole_cover", "井盖缺损", "Missing or damaged manhole cover", "manhole", 4],
    ["street_light", "路灯损坏", "Broken street light", "lamp", 1],
    ["elevator", "电梯故障", "Elevator problem", "lift", 3],
    ["public_facility", "公共设施损坏", "Damaged public facility", "bench", 1],
  ].map(([key, label_zh, label_en, icon, severity]) => ({ key, label_zh, label_en, icon: key, severity })),
  diary_categories: [
    ["livelihood", "民生", "livelihood"], ["safety", "治安", "safety"], ["environment", "环境", "environment"],
    ["dispute", "矛盾纠纷", "dispute"], ["suggestion", "意见建议", "suggestion"], ["other", "其他", "other"],
  ].map(([key, label_zh, label_en]) => ({ key, label_zh, label_en })),
  severities: SEVERITIES,
};

export const CHECK_OUTCOMES = [
  { outcome: "confirmed", zh: "确有险情", en: "Confirmed" },
  { outcome: "false_alarm", zh: "误报", en: "False alarm" },
  { outcome: "need_help", zh: "需要支援", en: "Need help" },
];

export const EXTENSIONS = [
  { value: "2h", zh: "2 小时", en: "2 hours" },
  { value: "5wh", zh: "5 个工作小时", en: "5 working hours" },
  { value: "1wd", zh: "1 个工作日", en: "1 working day" },
  { value: "3wd", zh: "3 个工作日", en: "3 working days" },
];

// what each uplink is called on the outbox and refused lists
export const LEAF_WORDS = {
  fix: ["位置", "position"], status: ["状态", "status"], incident: ["事件上报", "incident report"],
  case: ["案件处置", "case update"], "task/ack": ["任务回执", "task answer"],
  "announcement/read": ["已读回执", "read receipt"], diary: ["民情日记", "diary"],
  "alarm/check": ["紧急核实", "alarm check"], photo: ["照片", "photo"],
};

export const CASE_ACTION_WORDS = {
  accept: ["接单", "Accept"], reject: ["拒绝", "Decline"], start: ["到达现场", "On scene"],
  feedback: ["处置反馈", "Handled"], extension: ["申请延期", "Ask for more time"],
  verify_pass: ["核查通过", "Pass"], verify_fail: ["核查不通过", "Fail"],
};

export const NOTICE_WORDS = {
  dispatched: ["新任务", "New task"], accepted: ["已接单", "Accepted"], verify: ["待核查", "To verify"],
  rework: ["需返工", "Rework"], reopened: ["重新办理", "Reopened"], resumed: ["恢复办理", "Resumed"],
  extension_approved: ["延期已批准", "Extension approved"], extension_refused: ["延期未批准", "Extension refused"],
  escalated: ["已督办", "Escalated"], withdrawn: ["已撤回", "Withdrawn"], closed: ["已结案", "Closed"],
  check: ["紧急核实", "Check an alarm"],
};
