"""Reading photos: EXIF orientation, 16-bit greyscale, palettes and alpha, refusals."""

import numpy as np
import pytest
from PIL import Image

from gestaltxai import data
from gestaltxai.data.images import read_rgb

# EXIF tag 0x0112 (Orientation); 8: the stored image must turn 90 degrees
# counter-clockwise to stand upright.
ORIENTATION_TAG = 0x0112
ROTATE_90_CCW = 8


@pytest.fixture(scope='module')
def upright(fairface_dir):
  with Image.open(fairface_dir / 'train' / '1.jpg') as im:
    return np.asarray(im.convert('RGB'))


def sideways_phone_photo(upright_rgb, path):
  """The photo stored turned clockwise, with the EXIF tag that turns it back (as phones do)."""
  stored = Image.fromarray(upright_rgb).transpose(Image.Transpose.ROTATE_270)
  exif = Image.Exif()
  exif[ORIENTATION_TAG] = ROTATE_90_CCW
  stored.save(path, quality=95, exif=exif)


def sixteen_bit_grey(upright_rgb, path):
  """The photo as 16-bit greyscale: each 8-bit grey value v stored as v * 257."""
  grey = np.asarray(Image.fromarray(upright_rgb).convert('L'))
  Image.fromarray(grey.astype(np.uint16) * 257).save(path)
  return grey


def test_exif_orientation_is_applied_and_the_face_found(upright, tmp_path):
  path = tmp_path / 'phone.jpg'
  sideways_phone_photo(upright, path)
  with Image.open(path) as im:
    naive = np.asarray(im.convert('RGB'))
  rgb = read_rgb(path)
  assert rgb.shape == upright.shape
  # JPEG re-encoding moves pixels by a few levels.
  stored = np.rot90(upright, k=-1)  # turned clockwise
  assert np.abs(naive.astype(float) - stored).mean() < 3
  assert np.abs(rgb.astype(float) - upright).mean() < 3
  with pytest.raises(data.NoFaceError):  # what reading it sideways gave
    data.detect_landmarks(naive, name='phone.jpg')
  found = data.detect_landmarks(rgb, name='phone.jpg')
  reference = data.detect_landmarks(upright, name='1.jpg')
  np.testing.assert_allclose(found.five, reference.five, atol=3)


def test_sixteen_bit_greyscale_is_scaled_not_clipped(upright, tmp_path):
  path = tmp_path / 'grey16.png'
  grey = sixteen_bit_grey(upright, path)
  with Image.open(path) as im:
    assert im.mode.startswith('I')  # Pillow's 16-bit modes
    clipped = np.asarray(im.convert('RGB'))
  assert (clipped == 255).mean() > 0.9  # what convert('RGB') alone gives
  rgb = read_rgb(path)
  np.testing.assert_array_equal(rgb, np.repeat(grey[..., None], 3, axis=-1))
  data.detect_landmarks(rgb, name='grey16.png')  # a face again


def test_palette_and_alpha_images(upright, tmp_path):
  palette = Image.fromarray(upright).convert('P', palette=Image.Palette.ADAPTIVE, colors=64)
  palette.save(tmp_path / 'palette.png')
  expected = np.asarray(palette.getpalette(), np.uint8).reshape(-1, 3)[np.asarray(palette)]
  np.testing.assert_array_equal(read_rgb(tmp_path / 'palette.png'), expected)

  transparent = palette.copy()
  index = int(np.asarray(palette)[0, 0])
  transparent.info['transparency'] = index
  transparent.save(tmp_path / 'transparent.png', transparency=index)
  got = read_rgb(tmp_path / 'transparent.png')
  hidden = np.asarray(palette) == index
  assert (got[hidden] == 0).all() and (got[~hidden] == expected[~hidden]).all()

  alpha = np.linspace(0, 255, upright.shape[1]).astype(np.uint8)[None, :, None]
  rgba = np.concatenate([upright, np.broadcast_to(alpha, upright.shape[:2] + (1,))], -1)
  Image.fromarray(rgba, 'RGBA').save(tmp_path / 'rgba.png')
  over_black = np.rint(upright * (alpha / 255.0))  # float64: colour times opacity
  assert np.abs(read_rgb(tmp_path / 'rgba.png').astype(float) - over_black).max() <= 1


def test_unreadable_pixels_are_refused_with_the_file_name(tmp_path):
  Image.fromarray(np.zeros((8, 8), np.float32)).save(tmp_path / 'depth.tif')
  with pytest.raises(ValueError, match=r'depth\.tif: floating-point pixels'):
    read_rgb(tmp_path / 'depth.tif')
  (tmp_path / 'notes.jpg').write_text('not a photo')
  with pytest.raises(OSError, match='notes.jpg'):
    read_rgb(tmp_path / 'notes.jpg')
