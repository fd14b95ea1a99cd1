// Investigation and registration (采集登记): the basic-data forms arrive with the basic-data issue.
// The outbox already takes any message leaf (outbox.enqueue(leaf, body)), so a form only has to
// build its body and name its leaf; nothing else here changes.

import { bi, h, icon } from "../ui.js";

export async function render(root) {
  root.append(
    h("h2", { class: "screen-title" }, bi("采集登记", "Registration")),
    h("section", { class: "card" }, icon("registration", "big-icon"),
      h("p", {}, bi("人、地、事、物、组织的采集表单将随基础数据功能上线。",
        "The forms for people, places, things and organisations arrive with the basic-data release.")),
      h("p", { class: "muted" }, bi("届时在此填写，离线也可保存，有信号时自动发送，经审核后更新台账。",
        "You will fill them in here, offline too; they are sent when there is signal and reviewed before they change the ledger."))));
  return {};
}
