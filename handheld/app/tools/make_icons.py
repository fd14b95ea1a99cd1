"""Makes the app's pictures (run by hand when they change; the results are committed, the app has no
build step):

- icons/icon.svg, icons/icon-192.png, icons/icon-512.png: the app's mark, a 3 × 3 grid with the
  member's own cell lit, on the theme colour (full bleed, so it is also a maskable icon);
- icons/lucide.svg: the few Lucide icons the app uses as one sprite of <symbol>s (ISC licence,
  icons/lucide-LICENSE.txt), from the npm package: `npm pack lucide-static` and unpack it, then
  `.venv/bin/python handheld/app/tools/make_icons.py /path/to/package`.

Not served (a .py is no type the app serves)."""
from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

from PIL import Image, ImageDraw

ICONS = Path(__file__).resolve().parent.parent / "icons"
THEME = "#0b3d91"
CELL = "#ffffff"
MINE = "#ffb000"

# the sprite: what the app names → the Lucide icon drawn
LUCIDE = {
    "exposed_garbage": "trash-2", "dirty_road": "brush-cleaning", "illegal_construction": "construction",
    "street_vending": "shopping-cart", "illegal_parking": "car", "blocked_fire_lane": "fire-extinguisher",
    "fire_hazard": "flame", "safety_hazard": "triangle-alert", "water_leak": "droplet",
    "neighbour_dispute": "users", "noise": "volume-2", "stray_animal": "paw-print", "flyposting": "sticker",
    "damaged_road": "road", "manhole_cover": "circle-dot", "street_light": "lightbulb", "elevator": "arrow-up-down",
    "public_facility": "armchair", "other": "circle-dot",
    "today": "map", "report": "circle-plus", "tasks": "list-todo", "verify": "clipboard-check", "more": "menu",
    "sos": "siren", "announcements": "megaphone", "diary": "notebook-pen", "registration": "clipboard-list",
    "camera": "camera", "clock": "clock", "building": "building-2", "outbox": "upload", "signout": "log-out",
    "online": "wifi", "offline": "wifi-off", "close": "x", "send": "send", "pin": "map-pin",
}


def mark_svg() -> str:
    cells = []
    for row in range(3):
        for col in range(3):
            colour = MINE if (row, col) == (1, 1) else CELL
            x, y = 22 + col * 54, 22 + row * 54
            cells.append(f'<rect x="{x}" y="{y}" width="44" height="44" rx="8" fill="{colour}"/>')
    return ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 208 208">'
            f'<rect width="208" height="208" rx="40" fill="{THEME}"/>{"".join(cells)}</svg>\n')


def mark_png(size: int, path: Path) -> None:
    """The mark at `size` px, full bleed (the launcher's mask cuts the corners), the grid inside the
    maskable safe zone (the middle 80 %)."""
    scale = 4
    big = size * scale
    image = Image.new("RGB", (big, big), THEME)
    draw = ImageDraw.Draw(image)
    inner = big * 0.56                         # the grid's side, well inside the safe circle
    gap = inner * 0.08
    cell = (inner - 2 * gap) / 3
    origin = (big - inner) / 2
    for row in range(3):
        for col in range(3):
            x = origin + col * (cell + gap)
            y = origin + row * (cell + gap)
            colour = MINE if (row, col) == (1, 1) else CELL
            draw.rounded_rectangle((x, y, x + cell, y + cell), radius=cell * 0.18, fill=colour)
    image.resize((size, size), Image.LANCZOS).save(path, optimize=True)


def sprite(package: Path) -> str:
    symbols = []
    for name, icon in LUCIDE.items():
        source = (package / "icons" / f"{icon}.svg").read_text()
        body = re.search(r"<svg[^>]*>(.*)</svg>", source, re.S).group(1)
        body = re.sub(r"\s+", " ", body).strip()
        symbols.append(f'<symbol id="{name}" viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="2" '
                       f'stroke-linecap="round" stroke-linejoin="round">{body}</symbol>')
    return ('<svg xmlns="http://www.w3.org/2000/svg" fill="none" stroke="currentColor" stroke-width="2" '
            'stroke-linecap="round" stroke-linejoin="round">\n<!-- Lucide icons (lucide-static, ISC licence: '
            'lucide-LICENSE.txt) -->\n' + "\n".join(symbols) + "\n</svg>\n")


def main() -> None:
    ICONS.mkdir(exist_ok=True)
    (ICONS / "icon.svg").write_text(mark_svg())
    for size in (192, 512):
        mark_png(size, ICONS / f"icon-{size}.png")
    if len(sys.argv) > 1:
        package = Path(sys.argv[1])
        (ICONS / "lucide.svg").write_text(sprite(package))
        shutil.copyfile(package / "LICENSE", ICONS / "lucide-LICENSE.txt")


if __name__ == "__main__":
    main()
