"""Image perturbations at severities 1..5 (Pillow + numpy), in the spirit of ImageNet-C (Hendrycks & Dietterich 2019).

``imagecorruptions`` implements the ImageNet-C set, but it pulls in OpenCV and scikit-image and was last released
in 2020; these few operations need nothing beyond Pillow. Every function takes an RGB image, a severity and a
generator whose draws do not depend on the severity, so severity s+1 applies the same random choices (noise
field, crop position, rotation direction …) more strongly than severity s. Strengths scale with the image, so a
200 px thumbnail and a 4000 px photo are hurt alike.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFilter

# One row per perturbation: the parameter at severities 1..5.
BLUR_RADIUS = (0.5, 1.0, 1.5, 2.5, 4.0)  # Gaussian radius, % of the short side
JPEG_QUALITY = (40, 25, 15, 10, 5)
NOISE_SIGMA = (0.03, 0.06, 0.10, 0.15, 0.22)  # fraction of the 0..255 range
KEEP_CONTRAST = (0.85, 0.7, 0.55, 0.4, 0.25)  # fraction of each pixel's distance to the grey level kept
CROP_KEEP = (0.9, 0.8, 0.7, 0.6, 0.5)  # fraction of each side kept, then zoomed back to full size
ROTATION_DEG = (5, 10, 20, 30, 45)
HUE_SHIFT_DEG = (10, 20, 35, 50, 70)


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.float32)


def _from_pixels(values: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), "RGB")


def gaussian_blur(image: Image.Image, severity: int, rng: np.random.Generator) -> Image.Image:
    """Out-of-focus or motion-softened photos."""
    radius = BLUR_RADIUS[severity - 1] * min(image.size) / 100
    return image.convert("RGB").filter(ImageFilter.GaussianBlur(radius))


def jpeg(image: Image.Image, severity: int, rng: np.random.Generator) -> Image.Image:
    """Recompressed reseller copies: encode as JPEG at falling quality and decode again."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=JPEG_QUALITY[severity - 1])
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return decoded.convert("RGB")


def gaussian_noise(image: Image.Image, severity: int, rng: np.random.Generator) -> Image.Image:
    """Sensor noise of low-light phone photos: one noise field, scaled by the severity."""
    pixels = _pixels(image)
    noise = rng.standard_normal(pixels.shape).astype(np.float32)
    return _from_pixels(pixels + noise * NOISE_SIGMA[severity - 1] * 255)


def brightness_contrast(image: Image.Image, severity: int, rng: np.random.Generator) -> Image.Image:
    """Under- or over-exposure: every pixel moves towards a dark or a light grey (which one is drawn per image),
    so brightness shifts and contrast falls together."""
    grey = 255 * (0.1 if rng.random() < 0.5 else 0.9)
    keep = KEEP_CONTRAST[severity - 1]
    return _from_pixels(grey + (_pixels(image) - grey) * keep)


def crop_zoom(image: Image.Image, severity: int, rng: np.random.Generator) -> Image.Image:
    """Tight or off-centre framing: keep a window of each side (its position drawn per image), zoom it back."""
    image = image.convert("RGB")
    width, height = image.size
    u, v = rng.random(2)
    keep = CROP_KEEP[severity - 1]
    crop_w, crop_h = max(1, round(width * keep)), max(1, round(height * keep))
    left, top = round(u * (width - crop_w)), round(v * (height - crop_h))
    box = (left, top, left + crop_w, top + crop_h)
    return image.resize((width, height), Image.Resampling.BICUBIC, box=box)


def rotation(image: Image.Image, severity: int, rng: np.random.Generator) -> Image.Image:
    """A tilted camera: rotate by a growing angle (direction drawn per image); corners take the border colour."""
    image = image.convert("RGB")
    pixels = np.asarray(image)
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    fill = tuple(int(c) for c in np.median(border, axis=0))
    sign = 1 if rng.random() < 0.5 else -1
    return image.rotate(sign * ROTATION_DEG[severity - 1], resample=Image.Resampling.BICUBIC, fillcolor=fill)


def color_shift(image: Image.Image, severity: int, rng: np.random.Generator) -> Image.Image:
    """White balance and dyes that photograph differently: rotate every hue by a growing angle (direction drawn
    per image). Greys stay grey; a red product drifts towards orange or pink."""
    hsv = np.asarray(image.convert("RGB").convert("HSV")).copy()
    sign = 1 if rng.random() < 0.5 else -1
    shift = round(sign * HUE_SHIFT_DEG[severity - 1] / 360 * 256)
    hsv[..., 0] = (hsv[..., 0].astype(np.int16) + shift) % 256
    return Image.fromarray(hsv, "HSV").convert("RGB")
