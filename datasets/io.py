"""Readers and writers of the KITTI-VIS files: Middlebury ``.flo``, segmentation ``.npy``, frames, ``cam.txt``.

Every reader raises :class:`DatasetError` with a one-line message ``"<path>: <what is wrong>"`` on bad
input.  Every writer is atomic: it writes a temporary file in the destination folder and renames it
with ``os.replace``, so a reader (or a crash) never sees half a file.
"""
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from errors import one_line
from fileio import atomic_open  # noqa: F401  (re-exported for the writers below and their users)

FLO_MAGIC = 202021.25
FLO_HEADER_BYTES = 12
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png')


class DatasetError(ValueError):
    """Bad dataset input; the message is ``"<path>: <what is wrong>"``.

    ``DatasetError(path, problem)`` is the normal form.  A DataLoader worker's error reaches the main
    process as ``DatasetError(text)``, ``text`` being torch's "Caught DatasetError in DataLoader
    worker process N" report with the worker's traceback; the one-line message of the worker's error
    is taken back from its last line, so ``-j 8`` reports bad input as ``-j 0`` does.
    """

    def __init__(self, path, problem=None):
        if problem is None:
            path, _, problem = one_line(path).partition(': ')
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem


def atomic_write_bytes(path, data):
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path) as handle:
        handle.write(data)


def _read_bytes(path):
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise DatasetError(path, "file not found") from None
    except OSError as error:
        raise DatasetError(path, f"cannot read file ({error.strerror})") from None


def read_flo(path):
    """Read a Middlebury ``.flo`` optical flow.

    Layout: float32 magic 202021.25, int32 width, int32 height, then ``H*W*2`` float32 values
    (u, v interleaved, row-major), all little-endian.

    Returns:
        ``[H,W,2]`` float32 flow ``(du, dv)`` in pixels.
    """
    data = _read_bytes(path)
    if len(data) < FLO_HEADER_BYTES:
        raise DatasetError(path, f"truncated .flo: {len(data)} bytes, shorter than the {FLO_HEADER_BYTES}-byte header")
    magic = np.frombuffer(data, '<f4', count=1)[0]
    if magic != np.float32(FLO_MAGIC):
        raise DatasetError(path, f"not a Middlebury .flo file: magic number {magic!r}, expected {FLO_MAGIC}")
    width, height = (int(v) for v in np.frombuffer(data, '<i4', count=2, offset=4))
    if width <= 0 or height <= 0:
        raise DatasetError(path, f"invalid .flo size {width}x{height}")
    expected = FLO_HEADER_BYTES + 8 * width * height
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "trailing bytes in"
        raise DatasetError(path, f"{what} .flo: {len(data)} bytes, expected {expected} for a {width}x{height} flow")
    flow = np.frombuffer(data, '<f4', offset=FLO_HEADER_BYTES).reshape(height, width, 2)
    finite = np.isfinite(flow)
    if not finite.all():
        raise DatasetError(path, f"{flow.size - int(finite.sum())} non-finite flow values (NaN or inf) in a "
                                 f"{width}x{height} flow; recompute this flow")
    return flow.astype(np.float32)


def write_flo(path, flow):
    """Write a ``[H,W,2]`` flow as a Middlebury ``.flo`` file (atomically)."""
    flow = np.asarray(flow)
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise DatasetError(path, f"flow to write must have shape [H,W,2], got {list(flow.shape)}")
    height, width = flow.shape[:2]
    header = np.array([FLO_MAGIC], '<f4').tobytes() + np.array([width, height], '<i4').tobytes()
    atomic_write_bytes(path, header + np.ascontiguousarray(flow, '<f4').tobytes())


def read_segmentation(path, expected_hw=None):
    """Read an instance segmentation ``.npy``: ``[1+N,H,W]`` with channel 0 all zeros.

    Args:
        path: the ``.npy`` file (uint8, bool, integer or float values; non-zero = instance).
        expected_hw: ``(H, W)`` the masks must have (the frame size), or ``None``.
    Returns:
        the ``[1+N,H,W]`` array as stored.
    """
    try:
        seg = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DatasetError(path, "file not found") from None
    except (OSError, ValueError, EOFError) as error:
        raise DatasetError(path, f"not a readable .npy array ({error})") from None
    if not (np.issubdtype(seg.dtype, np.number) or seg.dtype == bool):
        raise DatasetError(path, f"segmentation must be a numeric or bool array, got dtype {seg.dtype}")
    if seg.ndim != 3 or seg.shape[0] < 1:
        raise DatasetError(path, f"segmentation must have shape [1+N,H,W], got {list(seg.shape)}")
    if expected_hw is not None and tuple(seg.shape[1:]) != tuple(expected_hw):
        raise DatasetError(path, f"segmentation is {seg.shape[1]}x{seg.shape[2]} (HxW), "
                                 f"the frame is {expected_hw[0]}x{expected_hw[1]}")
    if np.any(seg[0] != 0):
        raise DatasetError(path, f"channel 0 of the segmentation {list(seg.shape)} must be empty (all zeros); "
                                 "instances start at channel 1")
    return seg


def write_segmentation(path, masks):
    """Write ``[N,H,W]`` binary instance masks as a ``[1+N,H,W]`` uint8 ``.npy`` (channel 0 empty), atomically."""
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise DatasetError(path, f"masks to write must have shape [N,H,W], got {list(masks.shape)}")
    seg = np.concatenate([np.zeros((1,) + masks.shape[1:], np.uint8), (masks != 0).astype(np.uint8)])
    save_npy(path, seg)


def save_npy(path, array):
    """Save an array as ``.npy`` atomically (depth maps, association cache entries)."""
    with atomic_open(path) as handle:
        np.save(handle, np.asarray(array), allow_pickle=False)


def read_cam(path):
    """Read ``cam.txt``: the 3x3 intrinsics of the stored frames (9 numbers, any whitespace layout).

    Returns:
        ``[3,3]`` float32 intrinsics.
    """
    text = _read_bytes(path).decode('utf-8', errors='replace')
    try:
        values = np.array(text.split(), dtype=np.float64)
    except ValueError:
        raise DatasetError(path, "cam.txt must hold a 3x3 intrinsics matrix (9 numbers); found non-numeric text") from None
    if values.size != 9:
        raise DatasetError(path, f"cam.txt must hold a 3x3 intrinsics matrix (9 numbers), found {values.size}")
    if not np.all(np.isfinite(values)):
        raise DatasetError(path, "cam.txt holds a non-finite value")
    intrinsics = values.reshape(3, 3)
    if np.linalg.matrix_rank(intrinsics) < 3:
        raise DatasetError(path, "cam.txt intrinsics matrix is singular (not invertible): expected "
                                 "[[fx 0 cx] [0 fy cy] [0 0 1]] with non-zero focal lengths")
    return intrinsics.astype(np.float32)


def write_cam(path, intrinsics):
    """Write a ``[3,3]`` intrinsics matrix as ``cam.txt`` (three rows), atomically."""
    intrinsics = np.asarray(intrinsics, dtype=np.float64)
    if intrinsics.shape != (3, 3):
        raise DatasetError(path, f"intrinsics to write must be 3x3, got {list(intrinsics.shape)}")
    text = ''.join(' '.join(f"{v:.10g}" for v in row) + '\n' for row in intrinsics)
    atomic_write_bytes(path, text.encode())


def read_image(path):
    """Read a jpg/png frame as RGB.

    Returns:
        ``[H,W,3]`` uint8 array (grey images are expanded to three channels).
    """
    data = _read_bytes(path)
    if not data:
        raise DatasetError(path, "empty file (0 bytes): not a jpg/png image")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise DatasetError(path, "cannot decode the image (not a valid jpg/png file)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_image_size(path):
    """``(height, width)`` of a jpg/png frame, from its header (the pixels are not decoded)."""
    try:
        with Image.open(path) as image:
            width, height = image.size
    except FileNotFoundError:
        raise DatasetError(path, "file not found") from None
    except (UnidentifiedImageError, OSError):
        raise DatasetError(path, "cannot read the image header (not a valid jpg/png file)") from None
    return height, width


def write_image(path, image, jpeg_quality=95):
    """Write an ``[H,W,3]`` uint8 RGB image as jpg or png (by extension), atomically."""
    image = np.asarray(image)
    suffix = Path(path).suffix.lower()
    if suffix not in IMAGE_EXTENSIONS:
        raise DatasetError(path, f"image extension must be one of {IMAGE_EXTENSIONS}")
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise DatasetError(path, f"image to write must be uint8 [H,W,3], got {image.dtype} {list(image.shape)}")
    params = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality] if suffix != '.png' else []
    ok, encoded = cv2.imencode(suffix, cv2.cvtColor(image, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise DatasetError(path, "image encoding failed")
    atomic_write_bytes(path, encoded.tobytes())
