"""The decode contract of dnx.data.preprocess (docs/images.md): exact and fast decode, EXIF orientation,
and the inputs whose handling Python and C++ share (runtime/cpp/tests/test_preprocess.cpp checks the C++
side on the same kinds of files): progressive, grey, CMYK, truncated, bad-CRC, 16-bit grey, extreme aspect."""

from __future__ import annotations

import io
import json
import struct

import numpy as np
import pytest
from PIL import Image

import dnx
from dnx.data.preprocess import (
    FAST_DECODE_MARGIN,
    bundled_photos,
    crop_box,
    decode_image,
    draft_side,
    image_to_input,
    preprocess_image,
)
from dnx.core.errors import DnxError
from dnx.models.registry import Preprocess, get_config

IMAGENET = dict(image_size=224, resize_size=256, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                in_channels=3)


def _pre(decode: str) -> Preprocess:
    return Preprocess(**IMAGENET, decode=decode)


def _encode(img: Image.Image, fmt: str = "JPEG", **options) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **options)
    return buf.getvalue()


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    return Image.open(bundled_photos()[1]).convert("RGB")


def test_new_artifacts_decode_fast_and_old_manifests_read_as_exact():
    assert get_config("densenet121").preprocess.decode == "fast"
    old = {k: v for k, v in get_config("densenet121").preprocess.to_dict().items() if k != "decode"}
    assert Preprocess.from_dict(old).decode == "exact"
    with pytest.raises(ValueError, match='decode must be one of "exact", "fast", got "turbo"'):
        Preprocess.from_dict({**old, "decode": "turbo"})
    assert draft_side(_pre("exact")) is None and draft_side(_pre("fast")) == FAST_DECODE_MARGIN * 256


@pytest.mark.parametrize(("size", "scaled"), [((4000, 3000), 4), ((1632, 1224), 2), ((1000, 700), 1)])
def test_fast_decode_picks_the_smallest_dct_scale_keeping_the_margin(photo, size, scaled):
    data = _encode(photo.resize(size), quality=90)
    exact, fast = decode_image(data, pre=_pre("exact")), decode_image(data, pre=_pre("fast"))
    assert exact.size == size
    assert fast.size == tuple(-(-s // scaled) for s in size)
    assert min(fast.size) >= FAST_DECODE_MARGIN * 256 or scaled == 1
    # PNGs (and every other format) are always decoded in full
    png = _encode(photo.resize((1100, 1100)), "PNG")
    assert decode_image(png, pre=_pre("fast")).size == (1100, 1100)


def test_fast_and_exact_inputs_stay_close_on_a_12mp_photo(photo):
    data = _encode(photo.resize((4000, 3000)), quality=90)
    exact, fast = image_to_input(data, _pre("exact")), image_to_input(data, _pre("fast"))
    cosine = float(np.dot(exact.ravel(), fast.ravel()) / np.linalg.norm(exact) / np.linalg.norm(fast))
    assert cosine > 0.99, cosine


@pytest.mark.parametrize("size", [(1632, 1224), (1224, 1632), (700, 1500), (300, 260)])
def test_fast_resizes_only_what_the_crop_keeps(photo, size):
    """fast: Pillow resizes the crop's source region straight to 224 (crop_box) instead of the whole image to
    256 and then cropping: the same sampling positions up to float32 rounding, so at most one grey level
    apart (bilinear) in a small share of the pixels; nearest keeps exact's pixels."""
    img = photo.resize(size)
    w, h = size
    box = crop_box(w, h, _pre("fast"))
    rw, rh = (256, round(h * 256 / w)) if w < h else (round(w * 256 / h), 256)
    left, top = (rw - 224) // 2, (rh - 224) // 2
    assert box == (left * w / rw, top * h / rh, (left + 224) * w / rw, (top + 224) * h / rh)
    exact, fast = preprocess_image(img, _pre("exact")), preprocess_image(img, _pre("fast"))
    assert fast.shape == exact.shape == (3, 224, 224) and fast.dtype == np.float32 and fast.flags.c_contiguous
    levels = np.abs(fast - exact) * np.asarray(IMAGENET["std"], np.float32).reshape(3, 1, 1) * 255
    assert levels.max() <= 1 + 1e-3 and (levels > 0.5).mean() < 0.01, (levels.max(), (levels > 0.5).mean())
    nearest = {**IMAGENET, "interpolation": "nearest"}
    assert crop_box(w, h, Preprocess(**nearest, decode="fast")) is None
    np.testing.assert_array_equal(preprocess_image(img, Preprocess(**nearest, decode="fast")),
                                  preprocess_image(img, Preprocess(**nearest, decode="exact")))
    # a resize smaller than the crop pads with zeros in both modes: no box
    assert crop_box(w, h, Preprocess(224, 200, (0.5,) * 3, (0.5,) * 3, 3, decode="fast")) is None


def test_fast_decode_scales_mpo_like_jpeg(photo):
    """Phones write MPO (a JPEG followed by more pictures); Pillow opens it as MPO, the C++ runtime as the JPEG
    it starts with: both decode its first picture at the DCT scale."""
    big = photo.resize((1632, 1224))
    data = _encode(big, "MPO", quality=90, save_all=True, append_images=[big.rotate(90)])
    img = decode_image(data, pre=_pre("fast"))
    assert img.format == "MPO" and img.size == (816, 612)
    assert decode_image(data, pre=_pre("exact")).size == (1632, 1224)


@pytest.mark.parametrize("orientation", range(2, 9))
def test_exif_orientation_turns_photos_upright(photo, orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored = photo.resize((90, 60))
    data = _encode(stored, quality=95, exif=exif.tobytes())
    raw = decode_image(data, exif_orientation=False)
    assert raw.size == (90, 60)
    upright = decode_image(data)
    swap = orientation >= 5
    assert upright.size == ((60, 90) if swap else (90, 60))
    transpose = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
                 5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
                 8: Image.Transpose.ROTATE_90}[orientation]
    np.testing.assert_array_equal(np.asarray(upright), np.asarray(raw.transpose(transpose)))
    # the same in the fast decode of a large photo, and in a PNG's eXIf chunk
    big = _encode(photo.resize((1200, 1100)), quality=90, exif=exif.tobytes())
    assert decode_image(big, pre=_pre("fast")).size == ((550, 600) if swap else (600, 550))
    png = _encode(stored, "PNG", exif=exif.tobytes())
    assert decode_image(png).size == upright.size


def test_exif_orientation_can_be_ignored_by_load(fmnist_onnx, photo):
    exif = Image.Exif()
    exif[0x0112] = 6
    data = _encode(photo.resize((90, 60)), quality=95, exif=exif.tobytes())
    with dnx.load(fmnist_onnx, backend="onnxruntime") as upright, \
            dnx.load(fmnist_onnx, backend="onnxruntime", exif_orientation=False) as stored:
        assert upright.info()["exif_orientation"] and not stored.info()["exif_orientation"]
        rotated = image_to_input(decode_image(data, exif_orientation=False).transpose(Image.Transpose.ROTATE_270),
                                 upright.artifact.preprocess)
        np.testing.assert_array_equal(upright.preprocess(data)[0], rotated)
        np.testing.assert_array_equal(stored.preprocess(data)[0],
                                      image_to_input(decode_image(data, exif_orientation=False),
                                                     upright.artifact.preprocess))


@pytest.mark.parametrize("decode", ["exact", "fast"])
def test_progressive_grey_and_cmyk_jpegs_are_classified(photo, decode):
    big = photo.resize((1200, 1100))
    for img, options in ((big, {"progressive": True}), (big.convert("L"), {}), (big.convert("CMYK"), {})):
        x = image_to_input(_encode(img, quality=90, **options), _pre(decode))
        assert x.shape == (3, 224, 224) and np.isfinite(x).all()
    # CMYK becomes RGB as Pillow converts it, then grey for a one-channel model: the C++ runtime's path
    cmyk = decode_image(_encode(big.convert("CMYK"), quality=90))
    assert cmyk.mode == "CMYK"
    grey = Preprocess(28, 28, (0.5,), (0.5,), 1, decode=decode)
    np.testing.assert_array_equal(preprocess_image(cmyk, grey), preprocess_image(cmyk.convert("RGB"), grey))


def test_sixteen_bit_grey_pngs_are_scaled_to_eight_bits():
    values = np.array([[0, 128, 129, 385, 65535, 32896, 257 * 200 + 128, 1000]], np.uint16)
    img = decode_image(_encode(Image.fromarray(values), "PNG"))
    assert img.mode == "I;16"
    pre = Preprocess(8, 8, (0.0,), (1.0,), 1, interpolation="nearest")
    got = np.round(preprocess_image(img, Preprocess(1, 1, (0.0,), (1.0,), 1))[0] * 255)
    assert got.shape == (1, 1)
    wide = Image.fromarray(np.tile(values, (8, 1)))
    scaled = np.round(preprocess_image(wide, pre)[0, 0] * 255).astype(int)
    np.testing.assert_array_equal(scaled, np.round(values[0] / 257).astype(int))  # round(v / 257)


@pytest.mark.parametrize("decode", ["exact", "fast"])
def test_corrupt_files_and_extreme_aspect_ratios_are_refused(photo, decode):
    jpeg = _encode(photo.resize((1632, 1224)), quality=90)
    with pytest.raises(DnxError, match="cannot be decoded"):
        image_to_input(jpeg[: len(jpeg) // 2], _pre(decode))
    png = bytearray(_encode(photo.resize((40, 30)), "PNG"))
    idat = png.index(b"IDAT")
    png[idat + 4 + struct.unpack(">I", png[idat - 4:idat])[0]] ^= 0xFF  # the IDAT chunk's CRC
    with pytest.raises(DnxError, match="bad CRC in its 'IDAT' chunk"):
        image_to_input(bytes(png), _pre(decode))
    thin = _encode(Image.new("L", (1, 20000), 128), "PNG")  # 1x20000 -> 256x5,120,000 if resized
    with pytest.raises(DnxError, match=r"resized to 256x5120000 .* over the 50,000,000 limit"):
        image_to_input(thin, _pre(decode))
    with pytest.raises(DnxError, match="over the 1,000 limit"):
        image_to_input(_encode(Image.new("L", (1, 200), 128), "PNG"), _pre(decode), max_pixels=1000)


def test_load_takes_the_decode_mode_and_refuses_a_manifest_that_does_not_fit_the_graph(fmnist_onnx, tmp_path):
    with dnx.load(fmnist_onnx, backend="onnxruntime") as clf:
        assert clf.info()["decode"] == "fast"  # exported by this dnx
    with dnx.load(fmnist_onnx, backend="onnxruntime", decode="exact") as clf:
        assert clf.artifact.preprocess.decode == "exact"
    with pytest.raises(DnxError, match="decode must be one of exact, fast"):
        dnx.load(fmnist_onnx, decode="turbo")
    import onnx

    proto = onnx.load(str(fmnist_onnx))
    entry = next(p for p in proto.metadata_props if p.key == "dnx.manifest")
    manifest = json.loads(entry.value)
    manifest["preprocess"]["image_size"] = 32
    entry.value = json.dumps(manifest)
    bad = tmp_path / "wrong_size.onnx"
    onnx.save(proto, str(bad))
    with pytest.raises(DnxError, match="28x28|32x32"):
        dnx.load(bad, allow_unverified=True)


def test_model_size_images_are_the_same_in_both_modes():
    """Fashion-MNIST-size images (28x28, and anything under 2x a model's resize) are never scaled: the shipped
    model's accuracy cannot depend on the decode mode."""
    from dnx.data.datasets import shipped_fashion_mnist_test

    pre = get_config("densenet_bc22_fmnist").preprocess
    exact = Preprocess.from_dict({**pre.to_dict(), "decode": "exact"})
    for img in shipped_fashion_mnist_test().images[:20]:
        data = _encode(Image.fromarray(img), quality=90)
        np.testing.assert_array_equal(image_to_input(data, pre), image_to_input(data, exact))


def test_serve_takes_the_decode_options(fmnist_onnx):
    import httpx

    from dnx.runtime.serve.process import ServeProcess

    for args, want in (((), ("fast", True)), (("--decode", "exact", "--no-exif-orientation"), ("exact", False))):
        server = ServeProcess(fmnist_onnx, "--backend", "onnxruntime", *args)
        try:
            model = httpx.get(f"{server.url}/v1/model", timeout=30).json()
        finally:
            server.stop()
        assert (model["decode"], model["exif_orientation"]) == want
        assert model["preprocess"]["decode"] == want[0]


def test_calibrate_records_the_decode_it_used(fmnist_onnx, tmp_path):
    from dnx.calibration.qdq import calibrate_qdq
    from dnx.data.photos import make_photo_folder

    make_photo_folder(tmp_path / "calib", 8, size=600, seed=0)
    result = calibrate_qdq(fmnist_onnx, tmp_path / "fm.int8.onnx", tmp_path / "calib", target="onnxruntime",
                           samples=8, decode="exact")
    assert result.manifest["preprocess"]["decode"] == "exact"
    assert result.manifest["certificate"]["data"]["decode"] == "exact"
    with dnx.load(tmp_path / "fm.int8.onnx", backend="onnxruntime", allow_unverified=True) as clf:
        assert clf.info()["decode"] == "exact"
