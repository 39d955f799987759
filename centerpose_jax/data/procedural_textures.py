"""Random textures and cluttered backgrounds for domain randomisation, drawn with numpy and OpenCV.

Every function takes a numpy Generator and returns float32 linear RGB in [0, 1] of shape [H, W, 3]; the
result is a function of the Generator's state.
"""

import cv2
import numpy as np

from centerpose_jax.data import object_mesh

KINDS = ("solid", "checker", "stripes", "noise", "shapes")


def random_colour(rng) -> np.ndarray:
  """[3] a linear RGB colour with random hue, saturation and brightness (sRGB-uniform, then decoded)."""
  hsv = np.uint8([[[rng.integers(0, 180), rng.integers(0, 200), rng.integers(40, 256)]]])
  return object_mesh.srgb_to_linear(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0] / 255.0)


def _noise_field(rng, height, width, cells) -> np.ndarray:
  """[H, W, 3] smooth colour noise: a random `cells`-wide grid of colours upsampled bicubically."""
  grid = np.stack([random_colour(rng) for _ in range(cells * cells)]).reshape(cells, cells, 3)
  return np.clip(cv2.resize(grid.astype(np.float32), (width, height), interpolation=cv2.INTER_CUBIC), 0, 1)


def _draw_shapes(rng, image, count):
  """Draws `count` random filled rectangles, circles and thick lines of random colours on `image` in place."""
  height, width = image.shape[:2]
  side = max(height, width)
  for _ in range(count):
    colour = tuple(float(value) for value in random_colour(rng))
    x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
    extent = int(side * rng.uniform(0.03, 0.3))
    kind = rng.integers(3)
    if kind == 0:
      cv2.rectangle(image, (x, y), (x + extent, y + int(extent * rng.uniform(0.3, 3))), colour, -1)
    elif kind == 1:
      cv2.circle(image, (x, y), extent // 2, colour, -1, lineType=cv2.LINE_AA)
    else:
      angle = rng.uniform(0, np.pi)
      end = (int(x + extent * 2 * np.cos(angle)), int(y + extent * 2 * np.sin(angle)))
      cv2.line(image, (x, y), end, colour, max(1, int(side * rng.uniform(0.003, 0.02))), lineType=cv2.LINE_AA)


def with_contrast(image, contrast) -> np.ndarray:
  """`image` pulled towards its mean colour: contrast 1 keeps it, 0 gives a flat colour."""
  mean = image.mean(axis=(0, 1), keepdims=True)
  return (mean + contrast * (image - mean)).astype(np.float32)


def texture(rng, height, width, kind=None, contrast=1.0) -> np.ndarray:
  """[H, W, 3] a random texture of `kind` (one of `KINDS`, random when None) at `contrast` (see `with_contrast`)."""
  return with_contrast(_texture(rng, height, width, kind), contrast)


def _texture(rng, height, width, kind):
  kind = KINDS[rng.integers(len(KINDS))] if kind is None else kind
  first, second = random_colour(rng), random_colour(rng)
  if kind == "solid":
    return np.broadcast_to(first, (height, width, 3)).astype(np.float32)
  ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
  if kind == "checker":
    cells = int(rng.integers(2, 9))
    pattern = ((xs * cells // width + ys * cells // height) % 2)[..., None]
  elif kind == "stripes":
    angle, period = rng.uniform(0, np.pi), rng.uniform(0.05, 0.5) * max(height, width)
    phase = (xs * np.cos(angle) + ys * np.sin(angle)) / period
    pattern = (0.5 + 0.5 * np.sin(2 * np.pi * phase))[..., None] ** rng.uniform(0.3, 3)
  elif kind == "noise":
    return _noise_field(rng, height, width, int(rng.integers(2, 9)))
  elif kind == "shapes":
    image = np.ascontiguousarray(np.broadcast_to(first, (height, width, 3)), np.float32)
    _draw_shapes(rng, image, int(rng.integers(3, 15)))
    return image
  else:
    raise ValueError(f"unknown texture kind {kind!r}; expected one of {', '.join(KINDS)}")
  return (first * (1 - pattern) + second * pattern).astype(np.float32)


def background(rng, height, width, contrast=1.0) -> np.ndarray:
  """[H, W, 3] a cluttered background: smooth colour noise under 10-40 random shapes, slightly blurred, at
  `contrast` (see `with_contrast`)."""
  image = np.ascontiguousarray(_noise_field(rng, height, width, int(rng.integers(2, 6))))
  _draw_shapes(rng, image, int(rng.integers(10, 41)))
  sigma = rng.uniform(0.0, 2.0) * max(height, width) / 256
  return with_contrast(cv2.GaussianBlur(image, (0, 0), sigma) if sigma > 0.3 else image, contrast)
