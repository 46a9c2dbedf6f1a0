"""Procedural toy faces with ground-truth factors and part masks.

Every face is a pure function of its seed (and the output size). Faces are drawn
at ``SUPERSAMPLE`` times the output size with PIL and downsampled with a box
filter, so edges are antialiased. The part mask is drawn on the same canvas and
downsampled by nearest neighbour, so labels stay integral.

Factors (see :class:`Factors`): smile, mouth_open, eyeglasses, hair_colour,
hair_style (bald / short / long), beard (only ever with short hair: the
correlated pair), skin_tone, eye_size, face_width, yaw, position, background.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image, ImageDraw

SUPERSAMPLE = 4

PARTS = ["background", "face", "hair", "left_eye", "right_eye", "brows", "mouth", "glasses"]
PART_INDEX = {name: i for i, name in enumerate(PARTS)}

HAIR_COLOURS = {
    "black": (30, 25, 25),
    "brown": (105, 65, 35),
    "blond": (225, 190, 95),
    "red": (175, 60, 30),
    "grey": (165, 165, 170),
}
HAIR_STYLES = ["bald", "short", "long"]
SKIN_TONES = {
    "light": (250, 215, 190),
    "medium": (225, 175, 135),
    "tan": (180, 125, 85),
    "dark": (110, 70, 45),
}
BACKGROUNDS = {
    "blue": (90, 130, 200),
    "green": (110, 170, 110),
    "grey": (190, 190, 190),
    "pink": (220, 150, 180),
    "yellow": (225, 210, 120),
}


@dataclass(frozen=True)
class Factors:
    """Ground truth of one face. Continuous factors lie in [-1, 1] unless noted."""

    smile: float  # -1 frown .. +1 smile
    mouth_open: bool
    eyeglasses: bool
    hair_colour: str
    hair_style: str
    beard: bool  # only with short hair
    skin_tone: str
    eye_size: float
    face_width: float
    yaw: float  # -1 looking left .. +1 looking right
    dx: float
    dy: float
    background: str

    def as_dict(self) -> dict:
        return asdict(self)


def sample_factors(seed: int) -> Factors:
    rng = np.random.default_rng([int(seed), 0x70F])
    hair_style = HAIR_STYLES[rng.choice(3, p=[0.2, 0.45, 0.35])]
    beard = bool(hair_style == "short" and rng.random() < 0.5)
    return Factors(
        smile=float(rng.uniform(-1, 1)),
        mouth_open=bool(rng.random() < 0.35),
        eyeglasses=bool(rng.random() < 0.3),
        hair_colour=str(rng.choice(list(HAIR_COLOURS))),
        hair_style=hair_style,
        beard=beard,
        skin_tone=str(rng.choice(list(SKIN_TONES))),
        eye_size=float(rng.uniform(-1, 1)),
        face_width=float(rng.uniform(-1, 1)),
        yaw=float(rng.uniform(-1, 1)),
        dx=float(rng.uniform(-1, 1)),
        dy=float(rng.uniform(-1, 1)),
        background=str(rng.choice(list(BACKGROUNDS))),
    )


def _shade(colour, factor):
    return tuple(int(max(0, min(255, c * factor))) for c in colour)


class _Painter:
    """Draws the RGB image and the label map side by side on one canvas."""

    def __init__(self, size: int, background):
        self.rgb = Image.new("RGB", (size, size), background)
        self.lab = Image.new("L", (size, size), PART_INDEX["background"])
        self.d_rgb = ImageDraw.Draw(self.rgb)
        self.d_lab = ImageDraw.Draw(self.lab)

    def ellipse(self, box, fill, part, outline=None, width=0):
        self.d_rgb.ellipse(box, fill=fill, outline=outline, width=width)
        if part is not None:
            self.d_lab.ellipse(box, fill=PART_INDEX[part])

    def polygon(self, pts, fill, part):
        self.d_rgb.polygon(pts, fill=fill)
        if part is not None:
            self.d_lab.polygon(pts, fill=PART_INDEX[part])

    def line(self, pts, fill, width, part):
        self.d_rgb.line(pts, fill=fill, width=width, joint="curve")
        if part is not None:
            self.d_lab.line(pts, fill=PART_INDEX[part], width=width, joint="curve")


def _mouth_curve(cx, cy, half_w, smile, n=13):
    """Points of a parabola: positive smile bends the corners up."""
    pts = []
    for i in range(n):
        u = -1 + 2 * i / (n - 1)
        pts.append((cx + u * half_w, cy - smile * half_w * 0.45 * (u * u - 0.5)))
    return pts


def render(seed: int, size: int = 64, factors: Factors | None = None):
    """Return ``(rgb uint8 (size, size, 3), labels uint8 (size, size), factors)``."""
    f = factors if factors is not None else sample_factors(seed)
    S = size * SUPERSAMPLE
    s = S / 64.0  # design units are a 64-pixel face
    p = _Painter(S, BACKGROUNDS[f.background])
    skin = SKIN_TONES[f.skin_tone]
    hair = HAIR_COLOURS[f.hair_colour]

    cx = S / 2 + f.dx * 4 * s
    cy = S / 2 + 2 * s + f.dy * 3 * s
    rx = (17 + 3 * f.face_width) * s
    ry = 21 * s
    shift = f.yaw * 5 * s  # features slide across the face with the yaw

    if f.hair_style == "long":
        p.polygon([(cx - rx - 4 * s, cy - 6 * s), (cx + rx + 4 * s, cy - 6 * s),
                   (cx + rx + 6 * s, cy + ry + 4 * s), (cx - rx - 6 * s, cy + ry + 4 * s)],
                  hair, "hair")
    if f.hair_style != "bald":
        p.ellipse((cx - rx - 3 * s, cy - ry - 5 * s, cx + rx + 3 * s, cy + 4 * s), hair, "hair")
    # ears
    for side in (-1, 1):
        ex = cx + side * rx
        p.ellipse((ex - 3 * s, cy - 4 * s, ex + 3 * s, cy + 5 * s), _shade(skin, 0.92), "face")
    p.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), skin, "face")
    if f.hair_style != "bald":  # fringe over the forehead
        p.ellipse((cx - rx + shift * 0.3, cy - ry - 2 * s, cx + rx + shift * 0.3, cy - ry + 11 * s),
                  hair, "hair")
        p.ellipse((cx - rx * 0.8, cy - ry + 6 * s, cx + rx * 0.8, cy - ry + 16 * s), skin, "face")
    if f.beard:
        p.polygon([(cx - rx * 0.9, cy + 3 * s), (cx + rx * 0.9, cy + 3 * s),
                   (cx + rx * 0.55, cy + ry * 0.85), (cx, cy + ry + 1 * s),
                   (cx - rx * 0.55, cy + ry * 0.85)], _shade(hair, 0.9), "hair")

    # eyes
    eye_r = (2.6 + 1.1 * f.eye_size) * s
    eye_y = cy - 4 * s
    eye_dx = 7 * s * (1 + 0.08 * f.face_width)
    brow_col = _shade(hair, 0.8) if f.hair_style != "bald" else _shade(skin, 0.55)
    for side, part in ((-1, "left_eye"), (1, "right_eye")):
        ex = cx + side * eye_dx + shift
        p.ellipse((ex - eye_r * 1.5, eye_y - eye_r, ex + eye_r * 1.5, eye_y + eye_r), (250, 250, 250), part)
        p.ellipse((ex - eye_r * 0.75 + f.yaw * eye_r * 0.5, eye_y - eye_r * 0.75,
                   ex + eye_r * 0.75 + f.yaw * eye_r * 0.5, eye_y + eye_r * 0.75), (40, 60, 90), part)
        by = eye_y - eye_r - 3 * s
        p.line([(ex - 4 * s, by + 1 * s), (ex, by - 0.5 * s), (ex + 4 * s, by + 1 * s)],
               brow_col, int(max(1, 1.8 * s)), "brows")
    # nose
    nx = cx + shift * 1.2
    p.polygon([(nx, cy - 1 * s), (nx - 2.2 * s, cy + 5 * s), (nx + 2.2 * s, cy + 5 * s)],
              _shade(skin, 0.82), "face")
    # mouth
    mx, my, mw = cx + shift, cy + 10.5 * s, 6.5 * s
    lip = (170, 60, 70)
    top = _mouth_curve(mx, my, mw, f.smile)
    if f.mouth_open:
        bottom = [(x, y + (3.8 * s) * (1 - ((x - mx) / mw) ** 2)) for x, y in top]
        p.polygon(top + bottom[::-1], (70, 20, 30), "mouth")
        p.line(top, lip, int(max(1, 1.5 * s)), "mouth")
        p.line(bottom, lip, int(max(1, 1.5 * s)), "mouth")
    else:
        p.line(top, lip, int(max(1, 2.2 * s)), "mouth")
    # glasses
    if f.eyeglasses:
        gw = int(max(1, 1.3 * s))
        gr = 5 * s
        for side in (-1, 1):
            ex = cx + side * eye_dx + shift
            p.ellipse((ex - gr, eye_y - gr * 0.85, ex + gr, eye_y + gr * 0.85), None, None,
                      outline=(20, 20, 20), width=gw)
            ring = Image.new("L", (S, S), 0)
            ImageDraw.Draw(ring).ellipse((ex - gr, eye_y - gr * 0.85, ex + gr, eye_y + gr * 0.85),
                                         outline=255, width=gw)
            p.lab.paste(PART_INDEX["glasses"], mask=ring)
        p.line([(cx - eye_dx + shift + gr, eye_y), (cx + eye_dx + shift - gr, eye_y)],
               (20, 20, 20), gw, "glasses")

    rgb = np.asarray(p.rgb.resize((size, size), Image.BOX), dtype=np.uint8)
    lab = np.asarray(p.lab.resize((size, size), Image.NEAREST), dtype=np.uint8)
    return rgb, lab, f


def to_model_range(rgb: np.ndarray) -> np.ndarray:
    """Rendered images (N, H, W, 3) uint8 as float32 (N, 3, H, W) in [-1, 1]."""
    return rgb.astype(np.float32).transpose(0, 3, 1, 2) / 127.5 - 1.0


def render_batch(seeds, size: int = 64):
    """Images as float32 (N, 3, size, size) in [-1, 1], labels (N, size, size), factors list."""
    imgs, labs, facs = [], [], []
    for seed in seeds:
        rgb, lab, f = render(int(seed), size)
        imgs.append(rgb)
        labs.append(lab)
        facs.append(f)
    return to_model_range(np.stack(imgs)), np.stack(labs), facs


# Binary attributes the shipped classifier predicts, as functions of the ground truth.
ATTRIBUTES = {
    "smiling": lambda f: f.smile > 0,
    "mouth_open": lambda f: f.mouth_open,
    "eyeglasses": lambda f: f.eyeglasses,
    "bald": lambda f: f.hair_style == "bald",
    "long_hair": lambda f: f.hair_style == "long",
    "beard": lambda f: f.beard,
    "black_hair": lambda f: f.hair_style != "bald" and f.hair_colour == "black",
    "blond_hair": lambda f: f.hair_style != "bald" and f.hair_colour == "blond",
    "red_hair": lambda f: f.hair_style != "bald" and f.hair_colour == "red",
    "grey_hair": lambda f: f.hair_style != "bald" and f.hair_colour == "grey",
    "dark_skin": lambda f: f.skin_tone in ("tan", "dark"),
    "big_eyes": lambda f: f.eye_size > 0,
    "wide_face": lambda f: f.face_width > 0,
    "looking_right": lambda f: f.yaw > 0,
}
ATTRIBUTE_NAMES = list(ATTRIBUTES)


def attribute_vector(f: Factors) -> np.ndarray:
    return np.array([float(ATTRIBUTES[a](f)) for a in ATTRIBUTE_NAMES], dtype=np.float32)


# Continuous ground truth, for correlating directions with factors.
def factor_vector(f: Factors) -> dict:
    return {
        "smile": f.smile,
        "mouth_open": float(f.mouth_open),
        "eyeglasses": float(f.eyeglasses),
        "beard": float(f.beard),
        "bald": float(f.hair_style == "bald"),
        "long_hair": float(f.hair_style == "long"),
        "hair_lightness": float(np.mean(HAIR_COLOURS[f.hair_colour])) / 255.0,
        "skin_lightness": float(np.mean(SKIN_TONES[f.skin_tone])) / 255.0,
        "background_lightness": float(np.mean(BACKGROUNDS[f.background])) / 255.0,
        "eye_size": f.eye_size,
        "face_width": f.face_width,
        "yaw": f.yaw,
        "dx": f.dx,
        "dy": f.dy,
    }
