// Enrolment (once, from the link or QR code the community gives: #enrol=<code>, a 6-digit PIN
// chosen twice) and the sign-in of each shift (the PIN). A refusal is said in words, the reason
// why the member was sent here first (a revoked phone: ask your community).

import * as session from "../session.js";
import { bi, field, h } from "../ui.js";
import { reasonWords } from "../words.js";

function pinInput(name, autocomplete) {
  return h("input", { name, type: "password", inputmode: "numeric", pattern: "[0-9]{6}", maxlength: "6", minlength: "6",
    autocomplete, required: true, class: "pin", "aria-label": "PIN" });
}

function errorBox() { return h("p", { class: "error", role: "alert", hidden: true }); }
function say(box, text) { box.hidden = !text; box.textContent = text || ""; }

function wordsOf(e) {
  if (e && e.reason) return reasonWords(e.reason, e.status === 400 ? e.detail : null);
  return String(e && e.message || e);
}

function page(root, ...children) {
  root.replaceChildren(h("section", { class: "signin" },
    h("div", { class: "signin-mark" }, h("img", { src: "icons/icon.svg", alt: "", width: 72, height: 72 }),
      h("h1", {}, bi("网格通", "Grid — members' handheld"))), ...children));
}

export async function renderSignIn(root, reason, onSignedIn) {
  const pin = pinInput("pin", "current-password");
  const error = errorBox();
  const go = h("button", { type: "submit", class: "btn primary wide" }, bi("登录", "Sign in"));
  const form = h("form", { class: "card", novalidate: true }, field("PIN 码", "your 6-digit PIN", pin), error, go);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!session.PIN.test(pin.value)) { say(error, "请输入 6 位数字 PIN · Enter your 6-digit PIN"); return; }
    go.disabled = true;
    say(error, "");
    try {
      await session.signIn(pin.value);
      pin.value = "";
      await onSignedIn();
    } catch (e) {
      say(error, wordsOf(e));
      pin.select();
    } finally {
      go.disabled = false;
    }
  });
  const why = reason ? h("p", { class: `notice ${reason === "revoked_device" ? "danger" : ""}`, role: "alert",
    text: reasonWords(reason) }) : null;
  page(root, why, form);
  pin.focus();
  return {};
}

export async function renderNotEnrolled(root) {
  page(root, h("div", { class: "card" },
    h("p", {}, bi("本手机尚未登记。", "This phone is not enrolled yet.")),
    h("p", {}, bi("请打开社区发给您的登记链接或扫描二维码。", "Open the enrolment link or scan the QR code your community gives you."))));
  return {};
}

export async function renderEnrol(root, code, onSignedIn) {
  const pin1 = pinInput("pin", "new-password");
  const pin2 = pinInput("pin2", "new-password");
  const label = h("input", { name: "label", type: "text", maxlength: "60", autocomplete: "off",
    value: "我的手机 My phone" });
  const error = errorBox();
  const go = h("button", { type: "submit", class: "btn primary wide" }, bi("登记本手机", "Enrol this phone"));
  const already = await session.identity();
  const form = h("form", { class: "card", novalidate: true },
    h("p", {}, bi("请设置 6 位数字 PIN，每次上岗用它登录。", "Choose a 6-digit PIN: you sign in with it each shift.")),
    already ? h("p", { class: "notice" }, bi("本手机已登记过，重新登记将替换原有身份。",
      "This phone is already enrolled: enrolling again replaces it.")) : null,
    field("设置 PIN", "choose a PIN", pin1), field("再输一次", "the PIN again", pin2),
    field("手机名称", "name of this phone", label), error, go);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!code || code.length > 200) { say(error, reasonWords("bad_code")); return; }
    if (!session.PIN.test(pin1.value)) { say(error, "PIN 须为 6 位数字 · The PIN is 6 digits"); return; }
    if (pin1.value !== pin2.value) { say(error, "两次输入的 PIN 不一致 · The two PINs differ"); return; }
    go.disabled = true;
    say(error, "");
    try {
      await session.enrol(code, pin1.value, label.value.trim() || "phone");
      await session.signIn(pin1.value);
      history.replaceState(null, "", location.pathname);   // the used code leaves the address bar
      await onSignedIn();
    } catch (e) {
      say(error, wordsOf(e));
    } finally {
      go.disabled = false;
    }
  });
  page(root, form);
  return {};
}
