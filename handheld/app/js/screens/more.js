// More (更多): announcements, diary, registration, what waits to be sent, this phone, sign out.

import * as downlink from "../downlink.js";
import * as outbox from "../outbox.js";
import * as position from "../position.js";
import * as session from "../session.js";
import { bi, button, h, icon } from "../ui.js";

function entry(route, iconName, zh, en, badge) {
  return h("a", { class: "menu-entry", href: `#${route}` }, icon(iconName), bi(zh, en),
    badge ? h("span", { class: "badge", text: String(badge) }) : null);
}

export async function render(root, ctx) {
  const unread = (await downlink.inbox((i) => i.kind === "announcement" && !i.done)).length;
  const { waiting, refused } = await outbox.status();
  const me = ctx.me || {};
  const id = (await session.identity()) || {};
  root.append(
    h("h2", { class: "screen-title" }, bi("更多", "More")),
    h("nav", { class: "menu" },
      entry("announcements", "announcements", "通知公告", "Announcements", unread),
      entry("diary", "diary", "民情日记", "People's diary"),
      entry("registration", "registration", "采集登记", "Registration"),
      entry("sos", "sos", "紧急上报 / 紧急核实", "SOS / check an alarm"),
      entry("outbox", "outbox", "发送队列", "Waiting to send", waiting + refused)),
    h("section", { class: "card" },
      h("h3", {}, bi("本机", "This phone")),
      h("dl", { class: "facts" },
        h("dt", {}, bi("网格员", "member")), h("dd", { text: me.name ?? "" }),
        h("dt", {}, bi("网格", "grid")), h("dd", { text: me.grid_name ?? me.grid_code ?? "" }),
        h("dt", {}, bi("终端", "terminal")), h("dd", { text: me.terminal_id ?? "" }),
        h("dt", {}, bi("设备", "device")), h("dd", { text: id.device_id ?? "" })),
      h("p", { class: "muted small" }, bi("后台定位请使用 OwnTracks 或 Traccar Client；本应用在打开时巡查定位。",
        "Background tracking stays with OwnTracks or Traccar Client; this app tracks the patrol while it is open.")),
      button("退出登录", "Sign out", async () => {
        await position.stopPatrol();
        downlink.stop();
        await session.signOut();
        location.hash = "today";
        location.reload();
      }, "ghost wide")));
  return {};
}
