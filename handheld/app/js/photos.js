// Photos on the phone: shrunk to at most 1600 px on the long side as JPEG (quality 0.85, as the
// camera's orientation shows it), then hashed: the ref is `sha256:<hex>` of exactly the bytes that
// will be uploaded, so the server's ref for them is the same and a report can name its photos
// before they have arrived.

export const MAX_SIDE = 1600;
export const QUALITY = 0.85;

async function bitmapOf(file) {
  if (typeof createImageBitmap === "function") {
    try { return await createImageBitmap(file, { imageOrientation: "from-image" }); } catch { /* try <img> */ }
  }
  const url = URL.createObjectURL(file);
  try {
    const img = new Image();
    img.src = url;
    await img.decode();
    return img;
  } finally {
    URL.revokeObjectURL(url);
  }
}

export async function sha256Ref(blob) {
  const digest = await crypto.subtle.digest("SHA-256", await blob.arrayBuffer());
  return "sha256:" + Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

// a picked file → {blob, ref, width, height}; throws an Error with words when it is not an image
export async function prepare(file) {
  let image;
  try {
    image = await bitmapOf(file);
  } catch {
    throw new Error("这不是可读的照片 · This is not a photo the phone can read");
  }
  const w = image.width, h = image.height;
  const scale = Math.min(1, MAX_SIDE / Math.max(w, h));
  const width = Math.max(1, Math.round(w * scale)), height = Math.max(1, Math.round(h * scale));
  const canvas = document.createElement("canvas");
  canvas.width = width;
  canvas.height = height;
  const context = canvas.getContext("2d");
  context.fillStyle = "#fff";          // a transparent PNG becomes white, not black, as JPEG
  context.fillRect(0, 0, width, height);
  context.drawImage(image, 0, 0, width, height);
  if (image.close) image.close();
  const blob = await new Promise((resolve, reject) =>
    canvas.toBlob((b) => (b ? resolve(b) : reject(new Error("照片压缩失败 · The photo could not be made smaller"))),
      "image/jpeg", QUALITY));
  return { blob, ref: await sha256Ref(blob), width, height };
}
