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
  "alarm/check": ["紧急核实", "alarm check"], photo: ["照片", "photo"], "ledger/submissions": ["采集登记", "registration"],
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
