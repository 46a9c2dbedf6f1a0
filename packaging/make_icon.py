"""Draw the application icon (a face and a slider) as PNG at several sizes."""
from pathlib import Path

from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent


def draw(size: int) -> Image.Image:
    s = size / 256
    im = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    d = ImageDraw.Draw(im)
    d.rounded_rectangle((8 * s, 8 * s, 248 * s, 248 * s), radius=44 * s, fill=(52, 78, 140, 255))
    d.ellipse((64 * s, 36 * s, 192 * s, 180 * s), fill=(250, 214, 186, 255))
    for cx in (104, 152):
        d.ellipse(((cx - 9) * s, 88 * s, (cx + 9) * s, 106 * s), fill=(40, 60, 90, 255))
    d.arc((92 * s, 110 * s, 164 * s, 158 * s), 20, 160, fill=(170, 60, 70, 255), width=max(1, int(7 * s)))
    d.rounded_rectangle((40 * s, 204 * s, 216 * s, 216 * s), radius=6 * s, fill=(200, 210, 235, 255))
    d.ellipse((146 * s, 192 * s, 178 * s, 228 * s), fill=(255, 190, 60, 255))
    return im


if __name__ == "__main__":
    for n in (256, 128, 64, 48):
        draw(n).save(HERE / f"icon-{n}.png")
    print("wrote", ", ".join(f"icon-{n}.png" for n in (256, 128, 64, 48)))
