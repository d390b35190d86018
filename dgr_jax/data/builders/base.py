"""What every dgr-jax TFDS builder shares: the element contract, encoding helpers, errors.

Element contract (shared/design.md), for every builder and split:
  image  uint8 (H, W, 3)       stored as PNG or the source JPEG bytes (never re-encoded lossy)
  depth  float32 (H, W)        metres, 0 where invalid; zlib-compressed tensor
  focal  float32               pixels, at the stored resolution
  id     string                unique within the split
Builders never resize. They write `array_record` files that are read back without TensorFlow
through `as_data_source()` (random access) and grain.
"""

from __future__ import annotations

import io

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

VERSION = "1.0.0"


class DatasetError(RuntimeError):
    """A problem with the user's data: the message says what is wrong and how to fix it."""


def depth_features(image_format: str = "png") -> tfds.features.FeaturesDict:
    """The FeaturesDict of the element contract; `image_format` is "png" or "jpeg"."""
    return tfds.features.FeaturesDict(
        {
            "image": tfds.features.Image(shape=(None, None, 3), encoding_format=image_format),
            "depth": tfds.features.Tensor(shape=(None, None), dtype=np.float32, encoding="zlib"),
            "focal": tfds.features.Scalar(dtype=np.float32),
            "id": tfds.features.Text(),
        }
    )


def encode_png(image: np.ndarray) -> bytes:
    """uint8 (H, W, 3) -> PNG bytes (lossless), without TensorFlow."""
    buf = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()
