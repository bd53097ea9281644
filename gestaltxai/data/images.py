"""Reading photos as 8-bit RGB, upright, whatever their file stores.

``PIL.Image.convert('RGB')`` alone gets three kinds of file wrong: a phone
photo whose EXIF orientation says "rotate" comes out sideways (and the face
detector finds nothing), a 16-bit greyscale PNG is clipped to 255 (all
white), and a transparent palette or RGBA image keeps whatever colour its
invisible pixels hold. :func:`read_rgb` handles all three and refuses, with
the file's name, what it cannot convert without guessing.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, ImageOps

#: Modes holding unsigned 16-bit samples (Pillow's names for 16-bit greyscale).
SIXTEEN_BIT_MODES = ('I;16', 'I;16L', 'I;16B', 'I;16N')
#: Modes with an alpha channel; composited onto black, the aligned crop's border.
ALPHA_MODES = ('RGBA', 'LA', 'PA', 'RGBa', 'La')
_UINT16_MAX = np.iinfo(np.uint16).max
_UINT8_MAX = np.iinfo(np.uint8).max
# Formats whose 32-bit integer mode ('I') can only come from 16-bit samples
# (PNG has no deeper greyscale; Pillow before 10 opened 16-bit PNGs as 'I').
_SIXTEEN_BIT_ONLY_FORMATS = ('PNG',)


def _sixteen_to_eight(samples: np.ndarray) -> np.ndarray:
  """uint16-range samples -> uint8, full range onto full range (x * 255 / 65535, rounded)."""
  scaled = np.rint(samples.astype(np.float64) * (_UINT8_MAX / _UINT16_MAX))
  return scaled.astype(np.uint8)


def to_rgb(image: Image.Image, name: str) -> np.ndarray:
  """An opened image -> (H, W, 3) uint8 RGB, upright.

  Args:
    image: a PIL image, any mode.
    name: its file name, for messages.

  Raises:
    ValueError: a mode with no unambiguous 8-bit reading (32-bit integer or
      float samples), naming the file and the mode.
  """
  file_format = image.format  # the transposed copy forgets it
  image = ImageOps.exif_transpose(image)
  mode = image.mode
  if mode in SIXTEEN_BIT_MODES or (mode == 'I' and file_format in _SIXTEEN_BIT_ONLY_FORMATS):
    samples = np.asarray(image)
    if samples.min() < 0 or samples.max() > _UINT16_MAX:
      raise ValueError(f'{name}: {mode} samples outside the 16-bit range')
    return np.repeat(_sixteen_to_eight(samples)[..., None], 3, axis=-1)
  if mode in ('I', 'F'):
    kind = 'floating-point' if mode == 'F' else '32-bit integer'
    raise ValueError(f'{name}: {kind} pixels (mode {mode}) have no standard 8-bit reading; '
                     'save the photo with 8- or 16-bit samples')
  if mode == 'P':
    image = image.convert('RGBA' if 'transparency' in image.info else 'RGB')
  if image.mode in ALPHA_MODES:
    rgba = image.convert('RGBA')
    black = Image.new('RGBA', rgba.size, (0, 0, 0, _UINT8_MAX))
    image = Image.alpha_composite(black, rgba)
  return np.asarray(image.convert('RGB'))


def read_rgb(path: str | os.PathLike) -> np.ndarray:
  """A photo file -> (H, W, 3) uint8 RGB, EXIF orientation applied.

  16-bit greyscale is scaled to 8 bits, palette images expanded, alpha
  composited onto black.

  Raises:
    OSError: the file is missing or not an image Pillow can read.
    ValueError: pixels with no standard 8-bit reading (see :func:`to_rgb`).
  """
  with Image.open(path) as image:
    return to_rgb(image, os.fspath(path))
