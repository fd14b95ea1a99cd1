// Taking photos for a report, a feedback, a verification or an alarm check: the camera (capture),
// each photo shrunk and hashed at once (photos.js), shown as a thumbnail that can be removed.

import { prepare } from "./photos.js";
import { bi, h, toast } from "./ui.js";

export function photoPicker({ max = 4, zh = "拍照", en = "Take a photo" } = {}) {
  const chosen = [];          // {blob, ref, url}
  const input = h("input", { type: "file", accept: "image/*", capture: "environment", multiple: true, class: "file-input" });
  const add = h("label", { class: "btn photo-add" }, bi(zh, en), input);
  const thumbs = h("div", { class: "thumbs" });
  const count = h("span", { class: "muted" });
  const el = h("div", { class: "picker" }, thumbs, add, count);

  const draw = () => {
    thumbs.replaceChildren(...chosen.map((photo, i) => h("figure", { class: "thumb" },
      h("img", { src: photo.url, alt: `照片 photo ${i + 1}` }),
      h("button", { type: "button", class: "thumb-remove", "aria-label": "删除照片 remove photo",
        onclick: () => { URL.revokeObjectURL(photo.url); chosen.splice(i, 1); draw(); } }, "×"))));
    add.hidden = chosen.length >= max;
    count.textContent = `${chosen.length} / ${max}`;
  };

  input.addEventListener("change", async () => {
    const files = [...input.files];
    input.value = "";
    for (const file of files) {
      if (chosen.length >= max) { toast(`最多 ${max} 张照片 · at most ${max} photos`, "error"); break; }
      try {
        const photo = await prepare(file);
        if (chosen.some((c) => c.ref === photo.ref)) continue;
        chosen.push({ ...photo, url: URL.createObjectURL(photo.blob) });
      } catch (e) {
        toast(String(e.message || e), "error");
      }
      draw();
    }
  });
  draw();
  return {
    el,
    photos: () => chosen.map(({ blob, ref }) => ({ blob, ref })),
    clear: () => { for (const p of chosen) URL.revokeObjectURL(p.url); chosen.length = 0; draw(); },
  };
}
