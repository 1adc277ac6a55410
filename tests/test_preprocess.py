"""preprocess: any image -> the 28x28 Fashion-MNIST-like input; hostile files -> ImageError.

Every hostile file is made here, in memory or under tmp_path, so the tests show what they feed.
"""
import io
import re
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFile, ImageFilter

from fmnist_core import preprocess as P
from fmnist_core.errors import ImageError
from fmnist_core.preprocess import EMPTY_MESSAGE, MAX_UPLOAD_BYTES, preprocess


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    b = io.BytesIO()
    im.save(b, fmt, **kw)
    return b.getvalue()


def as_upload(a: np.ndarray, k: int = 6, margin: int = 30, paper: int = 245) -> Image.Image:
    """A dataset image as someone would upload it: bigger, dark on light paper, with a margin."""
    big = Image.fromarray(255 - a).resize((28 * k, 28 * k), Image.Resampling.BICUBIC)
    page = Image.new("L", (28 * k + 2 * margin, 28 * k + 2 * margin), paper)
    page.paste(big.point(lambda v: v * paper // 255), (margin, margin))
    return page


@pytest.fixture(scope="module")
def item(ds):
    return ds.x_test[1]  # a pullover, bright on black


@pytest.fixture(scope="module")
def item_upload(item):
    return as_upload(item)


@pytest.fixture(scope="module")
def reference(item_upload):
    return preprocess(item_upload)


def close(a, b, tol=0.02):
    return float(np.abs(np.asarray(a) - np.asarray(b)).mean()) < tol


# --- the output contract and faithfulness on single images ---------------------------------

def test_output_contract(item_upload):
    x = preprocess(encode(item_upload.convert("RGB"), "JPEG", quality=90))
    assert x.shape == (28, 28) and x.dtype == np.float32
    assert x.min() >= 0 and x.max() == 1.0  # the dataset's brightest pixel is ~255 too
    assert np.allclose(x * 255, np.round(x * 255), atol=1e-3)  # 8-bit levels, like the dataset
    assert x[0].max() < 0.1 or x[:, 0].max() < 0.1  # background black on the short edge


def test_dataset_images_pass_through_almost_unchanged(ds):
    """A 28x28 dataset image is already the pipeline's output: trim, fit and centre keep it."""
    x = np.stack([preprocess(a) for a in ds.x_test[:300]])
    diff = np.abs(x - ds.x_test[:300] / 255.0).mean((1, 2))
    assert np.median(diff) < 0.002 and diff.mean() < 0.02, (np.median(diff), diff.mean())


def test_upload_style_images_match_the_originals(ds):
    """Upscaled, dark on light paper, with a margin -> back to (nearly) the dataset image.
    Pixel differences are dominated by sub-pixel shifts, so compare by correlation
    (measured: median 0.95, 1st percentile 0.83 over 200 images)."""
    corr = [np.corrcoef(preprocess(as_upload(a, k=4 + i % 5)).ravel(), a.ravel())[0, 1]
            for i, a in enumerate(ds.x_test[:100])]
    assert np.median(corr) > 0.93 and min(corr) > 0.7, (np.median(corr), min(corr))


def test_item_fills_the_frame_on_its_long_edge(item_upload):
    x = preprocess(item_upload)
    rows, cols = np.flatnonzero(x.max(1) > 0.05), np.flatnonzero(x.max(0) > 0.05)
    assert max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1) >= 27  # no 20x20 box as in MNIST


def test_steps_go_from_original_to_model_input(item_upload):
    x, steps = preprocess(encode(item_upload, "PNG"), return_steps=True)
    names = [n for n, _ in steps]
    assert names[0] == "original" and names[-1] == "model input"
    assert "negated (light background)" in names and "trimmed to the item" in names
    assert all(isinstance(im, Image.Image) for _, im in steps)
    assert np.array_equal(np.asarray(steps[-1][1]), np.rint(x * 255).astype(np.uint8))
    assert steps[0][1].size == item_upload.size


def test_array_inputs(item, reference, item_upload):
    up = np.asarray(item_upload)
    assert close(preprocess(up / 255.0), reference, 1e-3)                   # float in [0, 1]
    assert close(preprocess(np.stack([up] * 3, -1)), reference, 1e-3)       # (H, W, 3)
    assert close(preprocess(up.astype(np.uint16) * 257), reference, 1e-3)   # 16-bit
    assert preprocess(item > 60).max() == 1.0                                 # bool mask
    with pytest.raises(ImageError, match="shape"):
        preprocess(np.zeros((3, 40, 40)))
    with pytest.raises(ImageError, match="NaN"):
        preprocess(np.full((40, 40), np.nan))


def test_exif_orientation_is_applied(item_upload, reference):
    rgb = item_upload.convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display": stored sideways, as phones do
    stored = rgb.transpose(Image.Transpose.ROTATE_90)
    x = preprocess(encode(stored, "JPEG", quality=95, exif=exif.tobytes()))
    assert close(x, reference, 0.03)
    assert not close(preprocess(encode(stored, "JPEG", quality=95)), reference, 0.03)


def test_grey_paper_and_dust_do_not_change_the_result(item, reference):
    page = np.asarray(as_upload(item, paper=200)).copy()
    page[5, 5] = page[-7, 12] = 0  # two specks of dust in the margin
    assert close(preprocess(page), reference, 0.03)


def as_photo(a: np.ndarray, falloff: float, shadow: float, seed: int = 0) -> bytes:
    """A phone photo of the item on paper: light falling off to one corner, a soft shadow
    to the lower right, sensor noise, JPEG."""
    k = 10
    item = np.asarray(Image.fromarray(a).resize((28 * k, 28 * k), Image.Resampling.BICUBIC)) / 255.0
    h, w = 28 * k + 160, 28 * k + 240
    yy, xx = np.mgrid[:h, :w]
    paper = 0.97 - falloff * xx / w - falloff / 2 * yy / h
    m = np.zeros((h, w))
    m[80:80 + 28 * k, 120:120 + 28 * k] = item
    blur = np.asarray(Image.fromarray((m * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(12))) / 255.0
    img = paper * (1 - shadow * np.roll(blur, (10, 10), (0, 1))) * (1 - m) + 0.15 * m
    img += np.random.default_rng(seed).normal(0, 0.015, img.shape)
    return encode(Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)), "JPEG", quality=85)


@pytest.mark.parametrize("falloff,shadow,expect", [(0.0, 0.0, 0.99), (0.12, 0.0, 0.99), (0.12, 0.25, 0.85)])
def test_photos_with_uneven_light_and_shadow(ds, falloff, shadow, expect):
    """The background is fitted as a smooth surface, so light falling off by 12% across the
    picture changes nothing (with one flat level it did: median correlation 0.11). A shadow
    is trimmed as part of the item, a faint halo that shrinks it a little (measured median
    0.90-0.92; see preprocess's docstring for why it is left)."""
    corr = [np.corrcoef(preprocess(as_photo(a, falloff, shadow, i)).ravel(),
                        preprocess(as_upload(a)).ravel())[0, 1] for i, a in enumerate(ds.x_test[:20])]
    assert np.median(corr) > expect, np.median(corr)


def as_noisy_photo(a: np.ndarray, seed: int, sigma: float = 0.03, k: int = 10) -> Image.Image:
    """A dataset image upscaled onto light paper with a wide margin, plus sensor noise (no JPEG):
    the case where the trim used to follow specks of noise (issue 14: a sneaker trimmed with a
    wide empty band and called a T-shirt)."""
    big = np.asarray(Image.fromarray(a).resize((28 * k, 28 * k), Image.Resampling.BICUBIC)) / 255.0
    m = np.zeros((28 * k + 120, 28 * k + 180))
    m[60:60 + 28 * k, 90:90 + 28 * k] = big
    img = 0.93 * (1 - m) + 0.1 * m + np.random.default_rng(seed).normal(0, sigma, m.shape)
    return Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8))


def trimmed_size(img) -> tuple[int, int]:
    return dict(preprocess(img, return_steps=True)[1])["trimmed to the item"].size


@pytest.mark.parametrize("cls", range(10))
def test_photo_trim_does_not_depend_on_the_noise_seed(ds, cls):
    """Two real test images of each class, five noise seeds each: the trimmed box stays within
    3% of the noise-free photo's, and the model input stays the same picture. Measured with
    scripts/measure_photo_crop.py (5 images x 10 seeds per class, noise 3%): trims off by
    more than 3% went from 81 of 500 to 0, the shipped CNN's accuracy on those photos from
    79.2% to 87.2% (88.0% without noise)."""
    for i in np.flatnonzero(ds.y_test == cls)[:2]:
        clean = as_noisy_photo(ds.x_test[i], 0, sigma=0.0)
        ref, ref_x = trimmed_size(clean), preprocess(clean)
        for seed in range(5):
            noisy = as_noisy_photo(ds.x_test[i], seed)
            w, h = trimmed_size(noisy)
            assert abs(w - ref[0]) <= 0.03 * ref[0] and abs(h - ref[1]) <= 0.03 * ref[1], (i, seed, (w, h), ref)
            # the model input: the same picture (a box one pixel wider can round the short
            # side to one more pixel, so not pixel for pixel)
            assert np.corrcoef(preprocess(noisy).ravel(), ref_x.ravel())[0, 1] > 0.85, (i, seed)


def test_small_patches_are_dropped_whatever_their_shape():
    """_large_components against a plain flood fill on random masks (8-connected)."""
    rng = np.random.default_rng(0)
    for _ in range(100):
        m = rng.random((int(rng.integers(1, 25)), int(rng.integers(1, 30)))) < rng.uniform(0.05, 0.7)
        labels, areas = -np.ones(m.shape, int), []
        for start in zip(*np.nonzero(m)):
            if labels[start] >= 0:
                continue
            stack, labels[start], area = [start], len(areas), 0
            while stack:
                y, x = stack.pop()
                area += 1
                for ny in range(max(y - 1, 0), min(y + 2, m.shape[0])):
                    for nx in range(max(x - 1, 0), min(x + 2, m.shape[1])):
                        if m[ny, nx] and labels[ny, nx] < 0:
                            labels[ny, nx] = len(areas)
                            stack.append((ny, nx))
            areas.append(area)
        if not areas:
            continue
        share = float(rng.uniform(0, 0.5))
        areas = np.array(areas)
        expect = m & (areas[np.maximum(labels, 0)] >= share * areas.max())
        assert np.array_equal(P._large_components(m, share), expect)


# --- canvas drawings --------------------------------------------------------------------------

def draw_shirt(fg, bg, mode="RGB", size=(280, 280), width=14):
    im = Image.new(mode, size, bg)
    d = ImageDraw.Draw(im)
    # a T-shirt outline: sleeves, body, neck
    d.line([(90, 40), (40, 70), (60, 110), (90, 95), (90, 240), (190, 240), (190, 95), (220, 110),
            (240, 70), (190, 40), (160, 55), (120, 55), (90, 40)], fill=fg, width=width, joint="curve")
    return im


@pytest.mark.parametrize("fg,bg,mode", [
    ((255, 255, 255), (0, 0, 0), "RGB"),               # white strokes on a black canvas
    ((0, 0, 0), (255, 255, 255), "RGB"),               # black strokes on a white canvas
    ((0, 0, 0, 255), (0, 0, 0, 0), "RGBA"),            # black strokes on a transparent canvas
    ((255, 255, 255, 255), (255, 255, 255, 0), "RGBA"),  # white strokes, transparent canvas
    ((20, 20, 160, 255), (0, 0, 0, 0), "RGBA"),        # blue ink, transparent
])
def test_canvas_drawings_come_out_bright_on_black(fg, bg, mode):
    ref = preprocess(draw_shirt(255, 0, mode="L"))
    x = preprocess(encode(draw_shirt(fg, bg, mode), "PNG"))
    assert x[0, 0] == 0 and x[14, 14] == 0  # background black, inside of the outline too
    assert x.max() == 1.0
    assert close(x, ref, 0.02)


@pytest.mark.parametrize("make", [
    lambda: Image.new("RGB", (280, 280), "white"),
    lambda: Image.new("RGB", (280, 280), "black"),
    lambda: Image.new("RGBA", (280, 280), (0, 0, 0, 0)),  # the untouched transparent canvas
    lambda: Image.new("RGBA", (280, 280), (255, 255, 255, 0)),
    lambda: Image.fromarray(np.random.default_rng(0).integers(225, 245, (300, 300), dtype=np.uint8)),
])
def test_blank_image_is_a_clear_error(make):
    with pytest.raises(ImageError) as e:
        preprocess(encode(make(), "PNG"))
    assert str(e.value) == EMPTY_MESSAGE


def test_blank_jpeg_with_compression_noise_is_empty():
    noisy = Image.fromarray(np.random.default_rng(1).integers(240, 256, (400, 300, 3), dtype=np.uint8))
    with pytest.raises(ImageError, match="empty"):
        preprocess(encode(noisy, "JPEG", quality=60))


# --- formats and modes that must WORK ------------------------------------------------------------

def test_16_bit_png(item_upload, reference):
    a16 = (np.asarray(item_upload).astype(np.uint16) * 257)
    data = encode(Image.fromarray(a16), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")  # really 16-bit on disk
    assert close(preprocess(data), reference, 1e-3)


def test_cmyk_jpeg(item_upload, reference):
    data = encode(item_upload.convert("RGB").convert("CMYK"), "JPEG", quality=95)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    assert close(preprocess(data), reference, 0.03)


def test_palette_png_and_gif(item_upload, reference):
    pal = item_upload.convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    for fmt in ("PNG", "GIF", "BMP"):
        assert close(preprocess(encode(pal, fmt)), reference, 0.03), fmt


def test_rgba_and_la_cutout_over_transparency(item, reference):
    """A product cut-out: a dark item on a transparent background (RGB under it arbitrary)."""
    up = np.asarray(as_upload(item, margin=30, paper=255))
    alpha = np.where(up < 250, 255, 0).astype(np.uint8)
    rgba = np.dstack([up, up, up, alpha])
    rgba[alpha == 0, :3] = 0  # transparent pixels stored black, as canvases do
    assert close(preprocess(encode(Image.fromarray(rgba), "PNG")), reference, 0.03)
    la = Image.merge("LA", [Image.fromarray(up), Image.fromarray(alpha)])
    assert close(preprocess(encode(la, "PNG")), reference, 0.03)
    pal = Image.fromarray(rgba).convert("P")  # palette with a transparent entry
    assert close(preprocess(encode(pal, "PNG")), reference, 0.05)


def test_photo_with_transparent_corners_keeps_its_own_background(item, reference):
    """Transparent rounded corners (stored black) on a light photo must not become item."""
    up = np.asarray(as_upload(item, margin=40, paper=250))
    alpha = np.full(up.shape, 255, np.uint8)
    yy, xx = np.mgrid[: up.shape[0], : up.shape[1]]
    r, h, w = 20, up.shape[0], up.shape[1]
    corners = ((yy < r) | (yy >= h - r)) & ((xx < r) | (xx >= w - r))
    for cy, cx in ((r, r), (r, w - r), (h - r, r), (h - r, w - r)):
        alpha[corners & ((yy - cy) ** 2 + (xx - cx) ** 2 > r * r)
              & (np.abs(yy - cy) < r) & (np.abs(xx - cx) < r)] = 0
    rgba = np.dstack([up, up, up, alpha])
    rgba[alpha == 0, :3] = 0
    assert close(preprocess(Image.fromarray(rgba)), reference, 0.03)


def test_animated_gif_uses_the_first_frame(item_upload, reference):
    first = item_upload.convert("RGB")
    second = draw_shirt((0, 0, 0), (255, 255, 255)).resize(first.size)
    data = encode(first, "GIF", save_all=True, append_images=[second], duration=100, loop=0)
    assert Image.open(io.BytesIO(data)).n_frames == 2
    assert close(preprocess(data), reference, 0.03)


def test_webp_tiff_and_file_like_uploads(item_upload, reference, tmp_path):
    assert close(preprocess(encode(item_upload, "WEBP", lossless=True)), reference, 1e-3)
    assert close(preprocess(encode(item_upload, "TIFF")), reference, 1e-3)
    path = tmp_path / "shirt.png"
    item_upload.save(path)
    assert close(preprocess(path), reference, 1e-3) and close(preprocess(str(path)), reference, 1e-3)
    with open(path, "rb") as f:  # Streamlit's UploadedFile is a BytesIO like this
        assert close(preprocess(f), reference, 1e-3)
    assert close(preprocess(io.BytesIO(path.read_bytes())), reference, 1e-3)


# --- hostile input: a clear ImageError, nothing written, the process still fine ----------------

def png_header(w: int, h: int, idat: bytes = b"") -> bytes:
    """A PNG whose header claims w x h (8-bit gray), followed by the given IDAT payload."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def zero_bomb(w: int, h: int) -> bytes:
    """A real decompression bomb: w x h black pixels, a few dozen KB compressed."""
    z = zlib.compressobj(9)
    row = b"\x00" * (w + 1)  # filter byte + pixels
    body = b"".join(z.compress(row) for _ in range(h)) + z.flush()
    return png_header(w, h, body)


def good_png():
    return encode(draw_shirt(0, 255, mode="L"), "PNG")


HOSTILE = {
    "empty": (lambda tmp: b"", "empty"),
    "truncated png": (lambda tmp: good_png()[: len(good_png()) // 2], "damaged or incomplete"),
    "truncated jpeg": (lambda tmp: (lambda d: d[: len(d) // 2])(
        encode(draw_shirt(0, 255), "JPEG", quality=90)), "damaged or incomplete"),
    "png header only": (lambda tmp: good_png()[:40], "damaged|incomplete"),
    "text named .png": (lambda tmp: b"shopping list:\n- a shirt\n- shoes\n", "text file, not an image"),
    "pdf named .png": (lambda tmp: b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n", "PDF"),
    "svg": (lambda tmp: b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
                        b'<rect width="10" height="10"/></svg>', "SVG is not supported, export as PNG"),
    "svg with xml prolog": (lambda tmp: b'<?xml version="1.0" encoding="UTF-8"?>\n<svg '
                                        b'xmlns="http://www.w3.org/2000/svg"></svg>', "SVG is not supported"),
    "random bytes": (lambda tmp: np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8)
                     .tobytes(), "not an image"),
    "1x1 image": (lambda tmp: encode(Image.new("L", (1, 1), 0), "PNG"), "too small"),
    "bomb 7000x7000 zeros": (lambda tmp: zero_bomb(7000, 7000), "too large"),
    "header claims 30000x30000": (lambda tmp: png_header(30000, 30000), "too large"),
    "header claims 60000x1": (lambda tmp: png_header(60000, 1), "too small"),
    "over the upload limit": (lambda tmp: b"\x89PNG" + b"\x00" * MAX_UPLOAD_BYTES, "limit is 10 MB"),
    "heic photo": (lambda tmp: b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64, "HEIC"),
    "eps (would run ghostscript)": (lambda tmp: b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n",
                                    "EPS is not supported"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_file_is_a_clear_error(name, tmp_path, monkeypatch):
    make, message = HOSTILE[name]
    data = make(tmp_path)
    path = tmp_path / "upload.png"
    path.write_bytes(data)
    before = sorted(p.name for p in tmp_path.iterdir())
    for source in (data, path):
        with pytest.raises(ImageError) as e:
            preprocess(source)
        msg = str(e.value)
        assert re.search(message, msg), msg
        assert "\n" not in msg and "Traceback" not in msg and len(msg) < 200
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written
    assert not ImageFile.LOAD_TRUNCATED_IMAGES  # nobody switched the truncation guard off
    assert preprocess(good_png()).max() == 1.0  # and the process is fine afterwards


def test_bombs_are_refused_before_decoding(monkeypatch):
    """The pixel cap is checked on the header: the decoder never runs."""
    def no_decode(self, *a, **k):
        raise AssertionError("a bomb was decoded")
    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decode)
    for data in (zero_bomb(7000, 7000), png_header(30000, 30000)):
        with pytest.raises(ImageError, match="too large"):
            preprocess(data)


def test_large_path_is_refused_before_reading(tmp_path, monkeypatch):
    big = tmp_path / "huge.jpg"
    with open(big, "wb") as f:
        f.truncate(MAX_UPLOAD_BYTES + 1)  # sparse: costs no disk
    monkeypatch.setattr("builtins.open", lambda *a, **k: pytest.fail("the big file was opened"))
    with pytest.raises(ImageError, match="limit is 10 MB"):
        preprocess(big)


def test_pillow_image_over_the_pixel_cap(monkeypatch):
    monkeypatch.setattr(P, "MAX_PIXELS", 100 * 100)
    with pytest.raises(ImageError, match="too large"):
        preprocess(Image.new("L", (101, 100)))


def test_missing_file_folder_and_wrong_type(tmp_path):
    with pytest.raises(ImageError, match="not found"):
        preprocess(tmp_path / "nope.png")
    with pytest.raises(ImageError, match="folder"):
        preprocess(tmp_path)
    with pytest.raises(ImageError, match="cannot read an image from a int"):
        preprocess(123)
    with pytest.raises(ImageError, match="binary"):
        preprocess(io.StringIO("text"))


def test_upload_limit_matches_streamlit_config():
    import tomllib
    from pathlib import Path
    cfg = tomllib.loads((Path(__file__).resolve().parent.parent / ".streamlit" / "config.toml").read_text())
    assert MAX_UPLOAD_BYTES == cfg["server"]["maxUploadSize"] * 1024 * 1024


def _png(mode: str, side: int) -> bytes:
    a = np.full((side, side), 240, np.uint8)
    a[side // 4: 3 * side // 4, side // 3: 2 * side // 3] = 40
    buf = io.BytesIO()
    Image.fromarray(a).convert(mode).save(buf, "PNG")
    return buf.getvalue()


def test_refused_bomb_prints_only_our_message(tmp_path):
    """A 100 MP PNG (under Pillow's own error limit, over its warning limit): one JSON error line,
    nothing from Pillow on stderr."""
    import subprocess
    import sys
    from conftest import ROOT
    path = tmp_path / "huge.png"
    path.write_bytes(_png("L", 10_000))
    p = subprocess.run([sys.executable, "-m", "fmnist_core", "predict", "--model",
                        ROOT / "artifacts" / "models" / "mlp.pt", path], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 1 and "100 megapixels" in p.stdout
    assert p.stderr == "", p.stderr
