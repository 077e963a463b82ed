"""Rendering of the synthetic catalogue's product photos: silhouettes, patterns, materials, backgrounds.

:func:`render_view` draws one view of a :class:`Product` from a seeded generator, so the same product, view and
seed give the same pixels; :func:`encode_image` writes them as reproducible PNG or JPEG bytes. What each product
is (its attributes, titles and ids) is decided in :mod:`workbench.data.catalog`.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

JPEG_RATE = 1 / 3
OCCLUSION_RATE = 0.15
_SUPERSAMPLE = 2


@dataclass(frozen=True)
class Product:
    """One catalogue product: its attributes and the drawn look every view of it shares."""

    product_id: str
    category: str
    color: str
    material: str
    pattern: str
    brand: str
    rgb: np.ndarray  # (3,) float32, jittered main colour
    accent: np.ndarray  # (3,) float32, pattern colour
    period: float  # pattern period in object units
    vertical: bool  # stripe direction
    flowers: np.ndarray  # (K, 3) x, y, radius of floral motifs in object units


@dataclass(frozen=True)
class _Part:
    """One piece of a silhouette in object units (y down, about [-1, 1]); ``width`` > 0 draws a polyline."""

    role: str  # "main" (coloured, patterned) or a key of _detail_colors
    points: np.ndarray
    cut: bool = False
    width: float = 0.0


# --- silhouettes --------------------------------------------------------------------------------------------


def _ellipse(cx: float, cy: float, rx: float, ry: float, a0: float = 0, a1: float = 360, n: int = 32) -> np.ndarray:
    a = np.radians(np.linspace(a0, a1, n))
    return np.column_stack([cx + rx * np.cos(a), cy + ry * np.sin(a)])


def _rect(x0: float, y0: float, x1: float, y1: float, r: float = 0.0) -> np.ndarray:
    if r <= 0:
        return np.array([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], float)
    corners = [(x1 - r, y1 - r, 0), (x0 + r, y1 - r, 90), (x0 + r, y0 + r, 180), (x1 - r, y0 + r, 270)]
    return np.concatenate([_ellipse(cx, cy, r, r, a, a + 90, 6) for cx, cy, a in corners])


def _pts(*points: tuple[float, float]) -> np.ndarray:
    return np.array(points, float)


def _umbrella() -> list[_Part]:
    tips = np.linspace(0.95, -0.95, 5)
    scallops = [
        _ellipse((a + b) / 2, 0.0, (a - b) / 2, 0.12, 0, -180, 10) for a, b in zip(tips[:-1], tips[1:], strict=True)
    ]
    canopy = np.concatenate([_ellipse(0, 0, 0.95, 0.78, 180, 360, 40), *scallops])
    ribs = [_Part("main_dark", _pts((0, -0.78), (x, 0.0)), width=0.03) for x in tips[1:-1]]
    return [
        _Part("main", canopy),
        *ribs,
        _Part("dark", _pts((0, -0.92), (0, 0.75)), width=0.05),
        _Part("dark", _ellipse(0.13, 0.75, 0.13, 0.12, 180, 0, 12), width=0.05),
    ]


@cache
def _shapes() -> dict[str, list[_Part]]:
    """Category -> silhouette parts, drawn in order (details always over the main colour)."""
    return {
        "tshirt": [
            _Part(
                "main",
                _pts(
                    (-0.25, -0.85),
                    (-0.12, -0.72),
                    (0, -0.69),
                    (0.12, -0.72),
                    (0.25, -0.85),
                    (0.65, -0.75),
                    (1.0, -0.35),
                    (0.75, -0.12),
                    (0.6, -0.28),
                    (0.6, 0.9),
                    (-0.6, 0.9),
                    (-0.6, -0.28),
                    (-0.75, -0.12),
                    (-1.0, -0.35),
                    (-0.65, -0.75),
                ),
            ),
            _Part("main_dark", _ellipse(0, -0.86, 0.25, 0.17, 10, 170, 12), width=0.06),
        ],
        "mug": [
            _Part("main", _ellipse(0.45, 0.05, 0.4, 0.4)),
            _Part("main", _ellipse(0.45, 0.05, 0.22, 0.22), cut=True),
            _Part("main", _rect(-0.65, -0.65, 0.45, 0.8, 0.12)),
            _Part("main_dark", _ellipse(-0.1, -0.65, 0.5, 0.1)),
        ],
        "sneaker": [
            _Part(
                "main",
                _pts(
                    (-0.92, 0.3),
                    (-0.9, -0.3),
                    (-0.78, -0.45),
                    (-0.55, -0.42),
                    (-0.4, -0.25),
                    (-0.2, -0.3),
                    (-0.12, -0.48),
                    (0.02, -0.42),
                    (0.2, -0.28),
                    (0.5, -0.1),
                    (0.8, 0.0),
                    (0.95, 0.15),
                    (0.95, 0.3),
                ),
            ),
            _Part("light", _pts((-0.96, 0.28), (0.92, 0.28), (1.0, 0.36), (0.95, 0.5), (-0.96, 0.5))),
            *[
                _Part("light", _pts((x - 0.06, y - 0.08), (x + 0.06, y + 0.08)), width=0.04)
                for x, y in ((0.0, -0.3), (0.13, -0.22), (0.26, -0.15), (0.39, -0.08))
            ],
            _Part("main_dark", _pts((-0.92, 0.28), (-0.9, -0.3), (-0.78, -0.45), (-0.7, 0.28))),
        ],
        "handbag": [
            _Part("main", _ellipse(0, -0.2, 0.45, 0.6)),
            _Part("main", _ellipse(0, -0.2, 0.34, 0.49), cut=True),
            _Part("main", _pts((-0.7, -0.2), (0.7, -0.2), (0.9, 0.72), (0.82, 0.8), (-0.82, 0.8), (-0.9, 0.72))),
            _Part("main_dark", _pts((-0.7, -0.2), (-0.62, 0.2), (0, 0.32), (0.62, 0.2), (0.7, -0.2)), width=0.05),
            _Part("metal", _rect(-0.08, 0.24, 0.08, 0.4, 0.03)),
        ],
        "phone": [
            _Part("main", _rect(-0.45, -0.92, 0.45, 0.92, 0.15)),
            _Part("dark", _rect(-0.38, -0.84, -0.02, -0.44, 0.08)),
            _Part("metal", _ellipse(-0.27, -0.74, 0.07, 0.07)),
            _Part("metal", _ellipse(-0.27, -0.55, 0.07, 0.07)),
            _Part("light", _ellipse(-0.11, -0.64, 0.04, 0.04)),
            _Part("main_dark", _rect(0.45, -0.5, 0.49, -0.28)),
        ],
        "watch": [
            _Part("main", _rect(-0.24, -1.0, 0.24, -0.3, 0.04)),
            _Part("main", _rect(-0.24, 0.3, 0.24, 1.0, 0.04)),
            _Part("main", _ellipse(0, 0, 0.5, 0.5)),
            _Part("main", _rect(0.45, -0.08, 0.6, 0.08)),
            _Part("light", _ellipse(0, 0, 0.39, 0.39)),
            *[
                _Part("dark", _pts((0.33 * c, 0.33 * s), (0.39 * c, 0.39 * s)), width=0.04)
                for c, s in ((1, 0), (0, 1), (-1, 0), (0, -1))
            ],
            _Part("dark", _pts((0, 0), (0, -0.3)), width=0.04),
            _Part("dark", _pts((0, 0), (0.2, 0.06)), width=0.05),
            *[_Part("main_dark", _ellipse(0, y, 0.04, 0.04, n=10)) for y in (0.6, 0.72, 0.84)],
        ],
        "lamp": [
            _Part("main", _pts((-0.28, -0.92), (0.28, -0.92), (0.68, -0.25), (-0.68, -0.25))),
            _Part("main", _pts((-0.45, 0.74), (0.45, 0.74), (0.55, 0.92), (-0.55, 0.92))),
            _Part("metal", _pts((0, 0.76), (0.3, 0.2), (0, -0.25)), width=0.08),
            _Part("glow", _ellipse(0, -0.25, 0.3, 0.13, 0, 180, 16)),
        ],
        "backpack": [
            _Part("main", _ellipse(0, -0.98, 0.2, 0.13)),
            _Part("main", _ellipse(0, -0.98, 0.11, 0.06), cut=True),
            _Part("main", _ellipse(0, -0.5, 0.62, 0.42)),
            _Part("main", _rect(-0.62, -0.5, 0.62, 0.92, 0.25)),
            _Part("main_dark", _pts((-0.62, -0.3), (-0.7, 0.75)), width=0.08),
            _Part("main_dark", _pts((0.62, -0.3), (0.7, 0.75)), width=0.08),
            _Part("main_dark", _rect(-0.42, 0.15, 0.42, 0.8, 0.12)),
            _Part("dark", _pts((-0.36, 0.22), (0.36, 0.22)), width=0.035),
            _Part("dark", _ellipse(0, -0.45, 0.5, 0.3, 190, 350, 16), width=0.035),
        ],
        "bottle": [
            _Part("main", _pts((-0.2, -0.74), (0.2, -0.74), (0.36, -0.48), (-0.36, -0.48))),
            _Part("main", _rect(-0.36, -0.5, 0.36, 0.92, 0.12)),
            _Part("dark", _rect(-0.22, -0.98, 0.22, -0.72, 0.05)),
            _Part("dark", _ellipse(0, -0.98, 0.1, 0.08, 180, 360, 10), width=0.04),
        ],
        "chair": [
            _Part("main", _rect(-0.48, -0.95, 0.48, -0.12, 0.12)),
            _Part("main", _pts((-0.55, -0.16), (0.55, -0.16), (0.68, 0.1), (-0.68, 0.1))),
            *[
                _Part("main", _pts((x, 0.05), (x, y)), width=w)
                for x, y, w in ((-0.42, 0.72, 0.08), (0.42, 0.72, 0.08), (-0.6, 0.95, 0.1), (0.6, 0.95, 0.1))
            ],
            _Part("main_dark", _pts((-0.66, 0.06), (0.66, 0.06)), width=0.06),
        ],
        "hat": [
            _Part("main", _ellipse(0, 0.25, 0.5, 0.75, 180, 360, 32)),
            _Part("main", _ellipse(0, 0.28, 0.95, 0.2)),
            _Part("main_dark", _rect(-0.48, 0.06, 0.48, 0.22)),
        ],
        "umbrella": _umbrella(),
    }


# --- rendering ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _View:
    """Placement of the object in one image: centre (pixels), pixels per object unit, rotation, mirroring."""

    cx: float
    cy: float
    half: float
    cos: float
    sin: float
    flip: float

    def to_canvas(self, points: np.ndarray) -> list[tuple[float, float]]:
        """Object-unit points -> supersampled canvas coordinates."""
        x, y = self.flip * points[:, 0], points[:, 1]
        px = (self.cx + self.half * (x * self.cos - y * self.sin)) * _SUPERSAMPLE
        py = (self.cy + self.half * (x * self.sin + y * self.cos)) * _SUPERSAMPLE
        return list(zip(px.tolist(), py.tolist(), strict=True))


@cache
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    xs = np.arange(size, dtype=np.float32) + 0.5
    return np.meshgrid(xs, xs)


def _smooth_noise(rng: np.random.Generator, size: int, cells: tuple[int, int]) -> np.ndarray:
    """Bilinearly upsampled uniform noise in [-1, 1]; ``cells`` = (columns, rows) of the coarse grid."""
    coarse = Image.fromarray(rng.uniform(-1, 1, (cells[1], cells[0])).astype(np.float32))
    return np.asarray(coarse.resize((size, size), Image.Resampling.BILINEAR), np.float32)


def _band(coord: np.ndarray, period: float, half_width: float, px: float) -> np.ndarray:
    """Anti-aliased weight of bands of ``half_width`` every ``period`` (object units; ``px`` pixels/unit)."""
    t = coord / period
    dist = np.abs(t - np.round(t)) * period
    return np.clip((half_width - dist) * px + 0.5, 0, 1)


def _pattern_weight(p: Product, u: np.ndarray, v: np.ndarray, view: _View) -> np.ndarray:
    """Per-pixel blend weight towards the accent colour."""
    px = view.half
    if p.pattern == "striped":
        return _band(u if p.vertical else v, p.period, 0.16 * p.period, px)
    if p.pattern == "dotted":
        row = np.floor(v / p.period)
        cu = u + 0.5 * p.period * (row % 2)  # alternate rows are offset by half a period
        dist = np.hypot(cu - np.round(cu / p.period) * p.period, v - (row + 0.5) * p.period)
        return np.clip((0.24 * p.period - dist) * px + 0.5, 0, 1)
    if p.pattern == "checked":
        return 0.45 * _band(u, p.period, 0.2 * p.period, px) + 0.45 * _band(v, p.period, 0.2 * p.period, px)
    if p.pattern == "gradient":
        return 0.8 * np.clip((v + 0.9) / 1.9, 0, 1) ** 1.4
    if p.pattern == "floral":  # five round petals per flower, drawn (cheaper than distance fields)
        size = u.shape[0]
        petals = Image.new("L", (size * _SUPERSAMPLE, size * _SUPERSAMPLE), 0)
        draw = ImageDraw.Draw(petals)
        angles = np.radians(np.arange(5) * 72.0)
        for x, y, r in p.flowers:
            centres = np.column_stack([x + 0.55 * r * np.cos(angles), y + 0.55 * r * np.sin(angles)])
            radius = 0.45 * r * view.half * _SUPERSAMPLE
            for cx, cy in view.to_canvas(centres):
                draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=255)
        return np.asarray(petals.reduce(_SUPERSAMPLE), np.float32) / 255
    return np.zeros_like(u)


def _material(p: Product, u: np.ndarray, v: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, float, float]:
    """Relative luminance texture, specular strength and opacity: subtle cues that tell materials apart."""
    size = u.shape[0]
    fine = rng.standard_normal((size, size), dtype=np.float32)
    x, y = _grid(size)
    if p.material == "cotton":
        return 0.035 * fine, 0.0, 1.0
    if p.material == "wool":
        return 0.07 * fine + 0.08 * _smooth_noise(rng, size, (size // 4, size // 4)), 0.0, 1.0
    if p.material == "leather":
        return 0.02 * fine + 0.08 * _smooth_noise(rng, size, (12, 12)), 0.15, 1.0
    if p.material == "denim":
        return 0.07 * np.sin((x + y) * np.pi / 1.5) + 0.05 * fine, 0.0, 1.0
    if p.material == "canvas":
        weave = (np.floor(x) + np.floor(y)) % 2 * 2 - 1
        return 0.05 * weave + 0.03 * fine, 0.0, 1.0
    if p.material == "metal":  # brushed: streaks along the image's x axis
        return 0.09 * _smooth_noise(rng, size, (2, size)) + 0.015 * fine, 0.3, 1.0
    if p.material == "wood":
        grain = np.sin(v * 30 + 2.5 * np.sin(u * 3 + 20 * p.period))
        return 0.1 * grain + 0.03 * fine, 0.05, 1.0
    if p.material == "glass":
        return 0.01 * fine, 0.45, 0.7
    return 0.01 * fine, (0.35 if p.material == "plastic" else 0.3), 1.0  # plastic, ceramic: smooth and glossy


def _detail_colors(rgb: np.ndarray) -> dict[str, tuple[int, int, int]]:
    return {
        "main_dark": tuple(int(c) for c in rgb * 0.62),
        "dark": (40, 40, 46),
        "light": (236, 235, 230),
        "metal": (176, 178, 186),
        "glow": (255, 240, 170),
    }


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Plain, gradient, noisy or table-top background, mostly light, sometimes dark."""
    x, y = _grid(size)
    level = rng.uniform(165, 248) if rng.random() < 0.85 else rng.uniform(40, 110)
    base = (level + rng.normal(0, 10, 3)).astype(np.float32)
    kind = rng.choice(["plain", "gradient", "noise", "floor"], p=[0.35, 0.25, 0.2, 0.2])
    bg = np.broadcast_to(base, (size, size, 3))
    if kind == "gradient":
        other = base + rng.normal(0, 35, 3).astype(np.float32)
        angle = rng.uniform(0, 2 * np.pi)
        t = ((x - size / 2) * np.cos(angle) + (y - size / 2) * np.sin(angle)) / size + 0.5
        bg = base + (other - base) * t[..., None]
    elif kind == "noise":
        pixel_noise = 4 * rng.standard_normal((size, size, 1), dtype=np.float32)
        bg = bg + 18 * _smooth_noise(rng, size, (size // 8, size // 8))[..., None] + pixel_noise
    elif kind == "floor":
        horizon = rng.uniform(0.55, 0.8) * size
        below = np.clip((y - horizon) / 3, 0, 1)[..., None]
        bg = bg * (1 - below * rng.uniform(0.1, 0.3))
    return np.array(bg, np.float32)  # a writable copy (the plain case is a broadcast view)


def render_view(p: Product, view_index: int, rng: np.random.Generator, size: int) -> Image.Image:
    """One view: the first is upright and clean; later views vary scale, rotation, mirroring and clutter."""
    first = view_index == 0
    scale = rng.uniform(0.68, 0.85) if first else rng.uniform(0.5, 0.88)
    angle = np.radians(rng.uniform(-6, 6) if first else rng.uniform(-28, 28))
    flip = 1.0 if first or rng.random() < 0.5 else -1.0
    half = scale * size / 2
    cx, cy = size / 2 + rng.uniform(-0.8, 0.8, 2) * (size / 2 - half)
    view = _View(float(cx), float(cy), half, float(np.cos(angle)), float(np.sin(angle)), flip)

    ss = _SUPERSAMPLE
    main = Image.new("L", (size * ss, size * ss), 0)
    detail = Image.new("RGB", main.size, (0, 0, 0))
    detail_mask = Image.new("L", main.size, 0)
    draw_main = ImageDraw.Draw(main)
    draw_detail, draw_detail_mask = ImageDraw.Draw(detail), ImageDraw.Draw(detail_mask)
    colors = _detail_colors(p.rgb)
    for part in _shapes()[p.category]:
        xy = view.to_canvas(part.points)
        targets = (
            [(draw_main, 0 if part.cut else 255)]
            if part.role == "main"
            else [(draw_detail, colors[part.role]), (draw_detail_mask, 255)]
        )
        for draw, fill in targets:
            if part.width:
                draw.line(xy, fill=fill, width=max(1, round(part.width * half * ss)), joint="curve")
            else:
                draw.polygon(xy, fill=fill)
    main = main.reduce(ss)
    mask = np.asarray(main, np.float32) / 255
    shadow = np.asarray(main.filter(ImageFilter.GaussianBlur(size / 40)), np.float32) / 255
    detail_alpha = np.asarray(detail_mask.reduce(ss), np.float32)[..., None] / 255
    detail_rgb = np.asarray(detail.reduce(ss), np.float32)  # premultiplied by coverage (drawn on black)

    # Object-frame coordinates of every pixel, so patterns and lighting turn with the object.
    gx, gy = _grid(size)
    dx, dy = (gx - view.cx) / half, (gy - view.cy) / half
    u, v = flip * (dx * view.cos + dy * view.sin), -dx * view.sin + dy * view.cos
    lum, specular, opacity = _material(p, u, v, rng)
    shade = (1 + 0.12 * np.clip(-(u + v) / 2, -1, 1) + lum)[..., None]
    if p.pattern == "solid":
        texture = p.rgb * shade
    else:
        texture = (p.rgb + (p.accent - p.rgb) * _pattern_weight(p, u, v, view)[..., None]) * shade
    if specular:
        highlight = (specular * np.exp(-((u + 0.35) ** 2 + (v + 0.4) ** 2) / 0.08))[..., None]
        texture += (255 - texture) * highlight

    out = _background(rng, size)
    shift = max(1, size // 40)
    out[shift:, shift:] *= (1 - 0.3 * shadow[:-shift, :-shift])[..., None]
    alpha = (mask * opacity)[..., None]
    out += (texture - out) * alpha
    out *= (1 - 0.5 * np.clip(mask - shadow, 0, 1))[..., None]  # a darker rim keeps pale objects visible
    out = out * (1 - detail_alpha) + detail_rgb
    if not first and rng.random() < OCCLUSION_RATE:
        w, h = (rng.uniform(0.22, 0.4, 2) * size).astype(int)
        ox, oy = (np.array([view.cx, view.cy]) + rng.uniform(-0.7, 0.7, 2) * half).astype(int)
        out[max(0, oy - h // 2) : oy + h // 2, max(0, ox - w // 2) : ox + w // 2] = rng.uniform(90, 190)
    sigma = rng.uniform(0, 5)
    out = out * rng.uniform(0.9, 1.08) + sigma * rng.standard_normal((size, size, 1), dtype=np.float32)
    image = Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8))
    if not first and rng.random() < 0.15:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 1.0)))
    return image


def encode_image(image: Image.Image, rng: np.random.Generator) -> tuple[bytes, str]:
    """PNG or (one in three) JPEG bytes with fixed settings and no metadata, so files are reproducible."""
    buf = io.BytesIO()
    if rng.random() < JPEG_RATE:
        image.save(buf, format="JPEG", quality=90, subsampling="4:2:0", optimize=False, progressive=False)
        return buf.getvalue(), "jpg"
    image.save(buf, format="PNG", compress_level=1, optimize=False)
    return buf.getvalue(), "png"
