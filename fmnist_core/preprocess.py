"""Any user image -> a 28x28 Fashion-MNIST-like model input (float32 in [0, 1], item bright on black).

Fashion-MNIST was made from product photos on a light background by (Xiao, Rasul & Vollgraf
2017, "Fashion-MNIST: a Novel Image Dataset...", section 2): trimming edges close to the corner
colour, resizing the longest edge to 28, sharpening, extending the short edge to 28 and
centring, negating, converting to 8-bit grayscale. So the item fills the frame on its long
edge (98% of the test images touch both ends) and is centred by its bounding box — unlike
MNIST digits there is no 20x20 box and no centre-of-mass shift. This module replays that
pipeline for drawings, scans and photos:

    decode safely -> EXIF orientation -> first frame -> mode to L/LA/RGB/RGBA (16-bit, CMYK,
    palette handled) -> shrink big images to ~512 px -> alpha composited over the detected
    background -> grayscale -> light or dark background? (light: negate; dark canvas: keep)
    -> background removed (a smooth surface fitted to the border, so uneven light is
    flattened) -> trim to the item (tolerance, on a lightly blurred copy of a big picture;
    specks and patches far smaller than the item ignored, so noise cannot move the box)
    -> longest edge to 28 (Lanczos) -> contrast to full range -> sharpen (only when shrunk a
    lot) -> short edge padded to 28, centred -> 8-bit

`preprocess(image, return_steps=True)` also returns every intermediate image, so the
dashboard can show the 28x28 the model really sees next to the original;
`preprocess_mapped(image)` also returns the `Frame`: where the 28x28 input lies in the
original's pixels, to draw what the model made of each input pixel over the user's photo.

Safety: the byte size is capped before reading (MAX_UPLOAD_BYTES, the same 10 MB as
.streamlit/config.toml's maxUploadSize) and the pixel count from the header before decoding
(MAX_PIXELS); only common raster formats are decoded (no EPS, which would run Ghostscript,
nor PDF/SVG); every decoder failure becomes an `ImageError` with one plain sentence. Nothing is
written anywhere.

Deliberately left out: the paper's subsampling without antialiasing (it aliases badly on
photos many times larger than 28 px; Lanczos plus a mild sharpen gives the same crisp look),
background removal for cluttered photos (the item should be on a plain background, as in the
dataset), shadow removal (a shadow is trimmed as part of the item and shrinks it a little;
trimming at a share of the item's brightness instead fixed shadows but cost 1.3 points of
accuracy on shadowless uploads, whose faint edges it cut), colour-aware trimming (an item
the same gray as its background disappears), close-ups where the item touches most of the
border (the border is taken for background), and HEIC/AVIF/SVG/PDF input.
"""
from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .data import IMAGE_SIZE
from .errors import ImageError

MAX_UPLOAD_BYTES = 10 * 1024 * 1024  # = maxUploadSize = 10 (MB) in .streamlit/config.toml
MAX_PIXELS = 40_000_000              # 40 MP: any phone photo. Measured peak memory of one
                                     # 36 MP PNG (6000x6000) above the imports: RGBA 274 MB (304 MB
                                     # with the steps), RGB 142 MB, gray 31 MB; the decode is 4, 3
                                     # or 1 bytes a pixel, and shrinking RGBA premultiplies a copy
                                     # (python scripts/bench_predict.py measures it again)
MIN_SIDE = 8                         # below this there is nothing to resize, only to guess
# decoders we trust with user bytes: common raster formats, nothing that shells out
# (multi-picture JPEGs from phones, "MPO", come through the JPEG opener)
FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF", "PPM")
WORK_SIDE = 512          # big images are box-averaged to this long edge first: an item a quarter
                         # of the frame wide still has 128 px for a 28 px result, and it is fast
JPEG_DRAFT = (320, 320)  # libjpeg decodes big JPEGs at 1/2..1/8 scale, both sides still >= 320
                         # (a 12 MP photo: 1/8, 504x378, twice as fast as decoding it whole)
TRIM_TOLERANCE = 0.08   # how far (0..1) from the background a pixel must be to count as item;
                        # the paper used 5%, photos and JPEG noise need a little more
NOISE_SIGMAS = 4.0      # ... or this many times the background's noise, if that is more
SPECK_FRACTION = 0.005  # a row/column is item only if this share of it is (dust is ignored)
COMPONENT_SHARE = 0.01  # a connected patch of item pixels smaller than this share of the largest
                        # one is noise or dust, not item: photo noise makes isolated specks of a
                        # few pixels wherever it pleases, so without this the box (and the result)
                        # changed with the noise seed
BLUR_MIN_SIDE = 4 * IMAGE_SIZE  # trim on a slightly blurred copy of pictures at least this big
SHARPEN_MIN_SCALE = 2.0  # sharpen only when shrunk at least this much (lanczos softened it)
SHARPEN_AMOUNT = 0.6     # unsharp mask, gaussian sigma 1 as in the paper; 0.6: crisp, no halos
DISPLAY_SIDE = 1024       # the "original" step is a copy at most this big
EMPTY_MESSAGE = "the image is empty — draw or upload a garment"

ImageInput = bytes | bytearray | memoryview | str | os.PathLike | BinaryIO | Image.Image | np.ndarray


# --- reading -------------------------------------------------------------------------------

SIGNATURES = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG", b"GIF8": "GIF",
              b"II*\x00": "TIFF", b"MM\x00*": "TIFF"}


def _sniff(head: bytes) -> str | None:
    """A plain message for well-known non-images (and cut-off images), from the first bytes."""
    for magic, fmt in SIGNATURES.items():
        if head.startswith(magic):
            return f"the {fmt} file is damaged or incomplete"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith(b"%!ps"):
        return "PostScript/EPS is not supported — export as PNG"
    if text.startswith(b"%pdf"):
        return "this is a PDF document, not an image — export the page as PNG or JPEG"
    if b"<svg" in text[:4096] and (text.startswith(b"<?xml") or text.startswith(b"<svg")
                                   or text.startswith(b"<!--") or text.startswith(b"<!doctype svg")):
        return "SVG is not supported, export as PNG"
    if head[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1", b"ftypmsf1", b"ftypavif"):
        return "HEIC/AVIF photos are not supported — export as JPEG or PNG"
    if head and all(32 <= b < 127 or b in b"\t\r\n" for b in head[:512]):
        return "this is a text file, not an image — upload a PNG, JPEG, GIF, BMP, WebP or TIFF"
    return None


def _too_big(n: int) -> ImageError:
    return ImageError(f"the file is too big ({n / 2**20:.1f} MB); the limit is {MAX_UPLOAD_BYTES // 2**20} MB")


def read_bytes(source: bytes | bytearray | memoryview | str | os.PathLike | BinaryIO) -> bytes:
    """The file's bytes, refusing anything over MAX_UPLOAD_BYTES before reading it."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise ImageError(f"file not found: {path}") from None
        except OSError as exc:
            raise ImageError(f"cannot read {path}: {exc.strerror or exc}") from None
        if path.is_dir():
            raise ImageError(f"{path} is a folder, not an image file")
        if size > MAX_UPLOAD_BYTES:
            raise _too_big(size)
        try:
            with open(path, "rb") as f:
                data = f.read(MAX_UPLOAD_BYTES + 1)  # the file may have grown since stat
        except OSError as exc:
            raise ImageError(f"cannot read {path}: {exc.strerror or exc}") from None
    elif hasattr(source, "read"):  # an open file, or Streamlit's UploadedFile
        if hasattr(source, "seek"):
            source.seek(0)
        data = source.read(MAX_UPLOAD_BYTES + 1)
        if not isinstance(data, (bytes, bytearray)):
            raise ImageError("the upload must be opened in binary mode")
        data = bytes(data)
    else:
        raise ImageError(f"cannot read an image from a {type(source).__name__}")
    if len(data) > MAX_UPLOAD_BYTES:
        raise _too_big(len(data))
    if not data:
        raise ImageError("the file is empty (0 bytes)")
    return data


def _check_size(size: tuple[int, int]) -> None:
    w, h = size
    if w * h > MAX_PIXELS:
        raise ImageError(f"the image is too large ({w}×{h} = {w * h / 1e6:.0f} megapixels); "
                         f"the limit is {MAX_PIXELS // 1_000_000} megapixels")
    if min(w, h) < MIN_SIDE:
        raise ImageError(f"the image is too small ({w}×{h} pixels); it needs at least "
                         f"{MIN_SIDE}×{MIN_SIDE}")


def decode(data: bytes) -> Image.Image:
    """Bytes -> a loaded PIL image (first frame), the size checked before the pixels are decoded."""
    try:
        with warnings.catch_warnings():
            # pillow warns on stderr above ~89 MP; _check_size refuses those in our own words
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data), formats=FORMATS)
    except Image.DecompressionBombError:
        # pillow refuses over ~179 MP at open time; ours is lower, say it the same way
        raise ImageError(f"the image is too large (over {MAX_PIXELS // 1_000_000} megapixels; "
                         "a decompression bomb?)") from None
    except UnidentifiedImageError:
        raise ImageError(_sniff(data[:8192]) or "not an image this app can read — upload a PNG, "
                         "JPEG, GIF, BMP, WebP or TIFF") from None
    except Exception as exc:  # a malformed header can raise nearly anything
        raise ImageError(f"the image header is damaged ({_reason(exc)})") from None
    _check_size(im.size)  # header only so far: nothing big is decoded yet
    try:
        if im.format in ("JPEG", "MPO"):
            # big photos: let libjpeg decode at reduced scale (much faster, much less memory)
            im.draft(im.mode, JPEG_DRAFT)
        im.seek(0)  # animations: the first frame
        im.load()
    except Image.DecompressionBombError:
        raise ImageError("the image is too large (a decompression bomb?)") from None
    except MemoryError:
        raise ImageError("the image is too large to decode") from None
    except Exception as exc:  # truncated or corrupt data: OSError, SyntaxError, ValueError, ...
        raise ImageError(f"the image file is damaged or incomplete ({_reason(exc)})") from None
    return im


def _reason(exc: BaseException) -> str:
    text = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
    return text


def open_image(image: ImageInput) -> Image.Image:
    """Any accepted input -> a PIL image (EXIF orientation applied), no pixel work yet."""
    if isinstance(image, np.ndarray):
        return _from_array(image)
    if isinstance(image, Image.Image):
        _check_size(image.size)
        im = image
        try:
            im.load()
        except Exception as exc:
            raise ImageError(f"the image file is damaged or incomplete ({_reason(exc)})") from None
    else:
        im = decode(read_bytes(image))
    try:
        # phones store portrait photos sideways plus an orientation tag (0x0112); checked
        # first because exif_transpose copies the whole image even when there is nothing to do
        if im.getexif().get(0x0112, 1) != 1:
            im = ImageOps.exif_transpose(im)
    except Exception:
        pass  # a broken EXIF block is no reason to refuse the pixels
    return im


def _from_array(a: np.ndarray) -> Image.Image:
    """(H, W), (H, W, 1|3|4) arrays: uint8/uint16/bool, or floats in [0, 1]."""
    a = np.asarray(a)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise ImageError(f"an image array must be (H, W) or (H, W, 3|4), got shape {a.shape}")
    _check_size((a.shape[1], a.shape[0]))
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    elif a.dtype == np.uint16 and a.ndim == 2:
        return Image.fromarray(a.astype(np.float32) / 65535.0)
    elif a.dtype != np.uint8:
        f = a.astype(np.float32)
        if not np.isfinite(f).all():
            raise ImageError("the image array contains NaN or infinite values")
        if a.dtype.kind == "f" and f.max(initial=0) <= 1.0:
            f = f * 255.0
        elif f.max(initial=0) > 255:
            f = f * (255.0 / 65535.0)
        a = np.clip(np.rint(f), 0, 255).astype(np.uint8)
    # uint8 (H, W) -> L, (H, W, 3) -> RGB, (H, W, 4) -> RGBA
    return Image.fromarray(np.ascontiguousarray(a))


# --- pixel work ----------------------------------------------------------------------------

def _to_basic_mode(im: Image.Image) -> Image.Image:
    """Every Pillow mode -> L, LA, RGB, RGBA or F (16/32-bit gray as floats in [0, 1])."""
    mode = im.mode
    if mode in ("L", "LA", "RGB", "RGBA"):
        return im
    if mode.startswith("I;16"):
        return Image.fromarray(np.asarray(im.convert("F"), dtype=np.float32) / 65535.0)
    if mode in ("I", "F"):
        f = np.asarray(im.convert("F"), dtype=np.float32)
        top = float(f.max(initial=0))
        # 32-bit ints usually hold 16-bit data (some PNG/TIFF readers); plain floats 0..1 or 0..255
        scale = 1.0 if top <= 1.0 and mode == "F" else 255.0 if top <= 255 else 65535.0 if top <= 65535 else top
        return Image.fromarray(np.clip(f / scale, 0, 1).astype(np.float32))
    if mode in ("P", "PA"):
        return im.convert("RGBA" if mode == "PA" or "transparency" in im.info else "RGB")
    if mode == "1":
        return im.convert("L")
    if mode == "La":
        return im.convert("LA")
    if mode == "RGBa":
        return im.convert("RGBA")
    if "transparency" in im.info and mode in ("RGB",):
        return im.convert("RGBA")
    return im.convert("RGB")  # CMYK, YCbCr, LAB, HSV, RGBX


def _shrink(im: Image.Image) -> Image.Image:
    """Big images -> long edge WORK_SIDE by area averaging (box filter: antialiased, fast;
    pillow premultiplies alpha, so transparent pixels do not bleed their colour)."""
    w, h = im.size
    if max(w, h) <= WORK_SIDE:
        return im
    k = WORK_SIDE / max(w, h)
    return im.resize((max(1, round(w * k)), max(1, round(h * k))), Image.Resampling.BOX, reducing_gap=2.0)


def _gray_alpha(im: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """-> gray (H, W) float32 in [0, 1] and alpha (H, W) in [0, 1], or None when opaque."""
    alpha = None
    if im.mode in ("LA", "RGBA"):
        a = np.asarray(im.getchannel("A"), dtype=np.float32) / 255.0
        if a.min() < 1.0:
            alpha = a
    if im.mode == "F":
        return np.asarray(im, dtype=np.float32), None
    # ITU-R 601 luma, the same weights as the dataset's 8-bit grayscale conversion
    gray = np.asarray(im.convert("L"), dtype=np.float32) / 255.0
    return gray, alpha


def _ring(a: np.ndarray) -> np.ndarray:
    """The outermost ring of pixels, clockwise from the top-left corner."""
    return np.concatenate([a[0], a[1:-1, -1], a[-1, ::-1], a[-2:0:-1, 0]])


def _composite(gray: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Fill transparent areas with the detected background. A picture whose border is mostly
    opaque has its own background (a photo with transparent rounded corners): use its colour.
    Otherwise it is a drawing or cut-out on transparency: use the colour that contrasts with
    what is drawn (black strokes go over white, white ones over black), so the strokes show."""
    weight = float(alpha.sum())
    if weight < 1.0:  # fully transparent: nothing drawn
        raise ImageError(EMPTY_MESSAGE)
    ring_alpha, ring_gray = _ring(alpha), _ring(gray)
    opaque = ring_alpha > 0.5
    if opaque.mean() >= 0.5:
        under = float(np.median(ring_gray[opaque]))
    else:
        content = float((gray * alpha).sum()) / weight
        under = 1.0 if content < 0.5 else 0.0
    return gray * alpha + under * (1.0 - alpha)


def _background(gray: np.ndarray) -> tuple[np.ndarray, float]:
    """The background under the item, fitted to the outermost ring of pixels: a smooth
    quadratic surface a + bx + cy + dx^2 + exy + fy^2, so a photo lit from one side or
    darker in the corners is flattened (the paper trimmed against one corner colour, which
    is enough only for studio shots). Ring pixels far from the fit (a stroke or a sleeve
    touching the edge, a shadow) are dropped and the fit repeated. Returns the surface
    (broadcastable to gray) and the noise level of the background (robust sigma)."""
    h, w = gray.shape
    ring = _ring(gray).astype(np.float64)
    ys, xs = np.indices((h, w), sparse=True)
    ry = _ring(np.broadcast_to(ys, (h, w))) / max(h - 1, 1) * 2 - 1
    rx = _ring(np.broadcast_to(xs, (h, w))) / max(w - 1, 1) * 2 - 1
    basis = np.stack([np.ones_like(rx), rx, ry, rx * rx, rx * ry, ry * ry], 1)
    # first guess: a flat background at the ring's median, outliers beyond 3 robust sigmas
    resid = ring - np.median(ring)
    keep = np.ones(len(ring), bool)
    coef = np.array([np.median(ring), 0, 0, 0, 0, 0], np.float64)
    for _ in range(3):
        sigma = 1.4826 * np.median(np.abs(resid[keep] - np.median(resid[keep])))
        keep = np.abs(resid) <= max(3 * sigma, 0.03)
        if keep.sum() < basis.shape[1] * 4:
            break  # too few clean pixels for a surface: stay with what we have
        # normal equations, not lstsq: on a busy CPU lstsq's threaded SVD took 18 ms, this 0.1
        bk = basis[keep]
        ata = np.einsum("ni,nj->ij", bk, bk) + 1e-6 * np.eye(basis.shape[1])  # ridge: one-edge rings
        coef = np.linalg.solve(ata, np.einsum("ni,n->i", bk, ring[keep]))
        resid = ring - np.einsum("ni,i->n", basis, coef)
    sigma = float(1.4826 * np.median(np.abs(resid[keep]))) if keep.any() else 0.0
    y = (np.arange(h, dtype=np.float32) / max(h - 1, 1) * 2 - 1)[:, None]
    x = (np.arange(w, dtype=np.float32) / max(w - 1, 1) * 2 - 1)[None, :]
    a, b, c, d, e, f = (np.float32(v) for v in coef)
    # row and column parts separately: only the xy term needs a full-size product
    surface = (a + x * (b + d * x)) + y * (c + f * y) + (e * y) * x
    return np.clip(surface, 0.0, 1.0, out=surface), sigma


def _large_components(mask: np.ndarray, share: float = COMPONENT_SHARE) -> np.ndarray:
    """The mask without its connected patches (8-connected) smaller than `share` of the
    largest one. Run-length labelling in NumPy (no scipy here on purpose): each row's runs of
    True are joined to the touching runs of the row above, then labels are merged until stable."""
    h, w = mask.shape
    edges = np.diff(np.pad(mask, ((0, 0), (1, 1))).astype(np.int8), axis=1)
    row, start = np.nonzero(edges == 1)   # runs [start, end) per row, in row-major order
    end = np.nonzero(edges == -1)[1]
    n = len(row)
    if n <= 1:
        return mask
    stride = w + 2
    # the runs of the row above that touch run i (diagonals too) are one contiguous slice
    lo = np.searchsorted(row * stride + end, (row - 1) * stride + start, side="left")
    hi = np.searchsorted(row * stride + start, (row - 1) * stride + end, side="right")
    count = np.maximum(hi - lo, 0)
    a = np.repeat(np.arange(n), count)
    b = lo[a] + (np.arange(len(a)) - np.repeat(np.cumsum(count) - count, count))
    label = np.arange(n)
    while True:  # hook both ways, then jump to the root: a few rounds for any shape
        before = label.copy()
        np.minimum.at(label, label[a], label[b])
        np.minimum.at(label, label[b], label[a])
        label = label[label]
        while not np.array_equal(label, label[label]):
            label = label[label]
        if np.array_equal(label, before):
            break
    area = np.bincount(label, weights=end - start, minlength=n)
    keep = area[label] >= share * area.max()
    if keep.all():
        return mask
    out = np.zeros((h, w + 1), np.int32)
    np.add.at(out, (row[keep], start[keep]), 1)
    np.add.at(out, (row[keep], end[keep]), -1)
    return np.cumsum(out, axis=1)[:, :w] > 0


def _item_box(x: np.ndarray, tolerance: float) -> tuple[int, int, int, int] | None:
    """Bounding box (top, bottom, left, right; exclusive ends) of the pixels that differ from
    the background (0) by more than `tolerance`, ignoring specks: patches much smaller than the
    item (_large_components), and rows/columns that hold only a few item pixels."""
    mask = x > tolerance
    h, w = mask.shape
    if mask.sum() < max(4, 0.0005 * h * w):
        return None
    mask = _large_components(mask)
    rows = np.flatnonzero(mask.sum(1) >= max(1.0, SPECK_FRACTION * w))
    cols = np.flatnonzero(mask.sum(0) >= max(1.0, SPECK_FRACTION * h))
    if not len(rows) or not len(cols):
        return None
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def _trim_map(x: np.ndarray, noise: float) -> tuple[np.ndarray, float]:
    """(map, tolerance) the item's box is found on. A big picture is blurred a little first
    (sigma 1 px, under a quarter of a model pixel): that divides pixel noise by ~3.5, so the
    tolerance stays at TRIM_TOLERANCE on a noisy photo too, instead of rising with the noise
    and cutting the item's faint edges (measured: scripts/measure_photo_crop.py). The noise
    is then measured again on the blurred border: JPEG noise is not white, and blurs less."""
    if max(x.shape) < BLUR_MIN_SIDE:
        return np.clip(x, 0.0, 1.0), max(TRIM_TOLERANCE, NOISE_SIGMAS * noise)
    blurred = _gaussian_blur(x.astype(np.float32), 1.0)
    ring = _ring(blurred)
    sigma = float(1.4826 * np.median(np.abs(ring - np.median(ring))))
    return blurred, max(TRIM_TOLERANCE, NOISE_SIGMAS * sigma)


def _gaussian_blur(x: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """Separable gaussian blur, edges extended (no scipy here on purpose)."""
    r = int(np.ceil(3 * sigma))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2).astype(np.float32)
    k /= k.sum()
    p = np.pad(x, r, mode="edge")
    p = sum(k[i] * p[:, i:i + p.shape[1] - 2 * r] for i in range(2 * r + 1))
    return sum(k[i] * p[i:i + p.shape[0] - 2 * r, :] for i in range(2 * r + 1))


def _as_image(x: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8))


@dataclass(frozen=True)
class Frame:
    """Where the 28x28 model input lies in the original image (EXIF orientation applied): its
    edges in the original's pixel coordinates (floats; the frame may reach past the image
    where the short edge was padded). Model pixel (row, col) covers original x from
    left + col * (right - left) / 28, and likewise for y."""
    width: int      # the original image's size
    height: int
    left: float
    top: float
    right: float
    bottom: float


def preprocess(image: ImageInput, return_steps: bool = False):
    """Any image -> (28, 28) float32 in [0, 1], item bright on black (the model contract).

    `image`: file bytes, a path, an open binary file (Streamlit's UploadedFile), a PIL image,
    or a numpy array ((H, W) or (H, W, 3|4); uint8, uint16, bool, or floats in [0, 1]).
    With return_steps=True returns (array, steps): steps is an ordered list of (name, PIL
    image), from "original" to "model input" (the exact 8-bit image the array holds).
    Raises ImageError with a plain sentence for anything that is not a usable image,
    including a blank one.
    """
    out, steps, _ = _pipeline(image, return_steps)
    return (out, steps) if return_steps else out


def preprocess_mapped(image: ImageInput) -> tuple[np.ndarray, list[tuple[str, Any]], Frame]:
    """preprocess(image, return_steps=True) and the Frame of the 28x28 input in the original."""
    return _pipeline(image, True)


def _pipeline(image: ImageInput, return_steps: bool) -> tuple[np.ndarray, list[tuple[str, Any]], Frame]:
    steps: list[tuple[str, Any]] = []
    im = open_image(image)
    size0 = im.size
    if return_steps:
        steps.append(("original", _display(im)))

    im = _shrink(_to_basic_mode(im))
    kx, ky = size0[0] / im.size[0], size0[1] / im.size[1]  # original pixels per working pixel
    gray, alpha = _gray_alpha(im)
    if alpha is not None:
        gray = _composite(gray, alpha)
    if return_steps:
        steps.append(("grayscale", _as_image(gray)))

    # light background (paper, photo, white canvas): negate; dark canvas: already right
    light = float(np.median(_ring(gray))) > 0.5
    if return_steps:
        steps.append(("negated (light background)" if light else "kept (dark background)",
                      _as_image(1.0 - gray if light else gray)))
    # the dataset's background is exactly 0: a gray paper or uneven light must not become
    # a gray frame. Dividing by the local paper brightness (flat-field correction) gives an
    # item the same contrast in the dim corner as in the bright one.
    surface, noise = _background(gray)
    if light:
        x = (surface - gray) / np.maximum(surface, 0.25)
        noise /= max(float(surface.mean()), 0.25)
    else:
        x = (gray - surface) / np.maximum(1.0 - surface, 0.25)
        noise /= max(1.0 - float(surface.mean()), 0.25)
    box = _item_box(*_trim_map(x, noise))
    x = np.clip(x, 0.0, 1.0)
    if return_steps:
        steps.append(("background removed", _as_image(x)))

    if box is None:
        raise ImageError(EMPTY_MESSAGE)
    top, bottom, left, right = box
    x = x[top:bottom, left:right]
    if return_steps:
        steps.append(("trimmed to the item", _as_image(x)))

    # longest edge to 28, the short edge in proportion (at least one pixel)
    h, w = x.shape
    scale = max(h, w) / IMAGE_SIZE
    size = (max(1, round(w / scale)), max(1, round(h / scale)))
    sx, sy = w / size[0], h / size[1]  # working pixels per model pixel, per axis
    if size != (w, h):
        x = np.asarray(Image.fromarray(np.ascontiguousarray(x, dtype=np.float32))
                       .resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0), dtype=np.float32)
    x = np.clip(x, 0.0, 1.0)
    # the dataset's brightest pixel is 254-255 in every image: stretch to the full range
    top_value = float(x.max())
    if top_value <= 1e-3:
        raise ImageError(EMPTY_MESSAGE)
    x = x / top_value
    if return_steps:
        steps.append(("longest edge to 28", _as_image(x)))

    if scale >= SHARPEN_MIN_SCALE:
        # unsharp mask: lanczos averaged many pixels into one; bring the outlines back
        x = np.clip(x + SHARPEN_AMOUNT * (x - _gaussian_blur(x, 1.0)), 0.0, 1.0)
        if return_steps:
            steps.append(("sharpened", _as_image(x)))

    # extend the short edge to 28, centred by the bounding box
    out = np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    h, w = x.shape
    # an odd leftover pixel goes top/left: the dataset does that in 94% of such images
    oy, ox = (IMAGE_SIZE - h + 1) // 2, (IMAGE_SIZE - w + 1) // 2
    out[oy:oy + h, ox:ox + w] = x
    # 8-bit grayscale, as the dataset is stored
    out = (np.rint(out * 255.0) / 255.0).astype(np.float32)
    if return_steps:
        steps.append(("model input", _as_image(out)))
    frame = Frame(size0[0], size0[1], (left - ox * sx) * kx, (top - oy * sy) * ky,
                  (left + (IMAGE_SIZE - ox) * sx) * kx, (top + (IMAGE_SIZE - oy) * sy) * ky)
    return out, steps, frame


def _display(im: Image.Image) -> Image.Image:
    """A copy a browser can show (16-bit, CMYK and palette images cannot be shown as is),
    at most DISPLAY_SIDE pixels on its long edge: it is for looking at, not for computing."""
    im = _to_basic_mode(im)
    if im.mode == "F":
        im = _as_image(np.asarray(im, dtype=np.float32))
    w, h = im.size
    if max(w, h) <= DISPLAY_SIDE:
        return im.copy()
    # resized straight to the small size: a full-size copy first would double a big photo's memory
    k = DISPLAY_SIDE / max(w, h)
    return im.resize((max(1, round(w * k)), max(1, round(h * k))), Image.Resampling.LANCZOS, reducing_gap=3.0)
