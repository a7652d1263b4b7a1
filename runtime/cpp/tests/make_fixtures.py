"""Write the files the C++ parity tests (ctest) compare against: Python's side of every answer.

    python runtime/cpp/tests/make_fixtures.py OUT_DIR

OUT_DIR/index.json lists everything; arrays are raw little-endian files (.f32 float32, .u8 uint8,
.i32 int32) so the C++ side needs no npy reader. Contents:

* the shipped DenseNet-BC (Fashion-MNIST) exported FP32 (``fp32.onnx`` + sidecar), the same graph
  without a sidecar (``embedded.onnx``: manifest only in ONNX metadata), and INT8 Q/DQ calibrated
  for onnxruntime (``int8.onnx``) and for TensorRT (``int8_trt.onnx``); for refusals, the graph with no manifest at all
  (``foreign.onnx``) and with a sidecar that promises 5 classes (``mismatch.onnx``);
* test images: the bundled photos (JPEG) and PNGs made here for the cases photos do not cover
  (palette, grey+alpha, RGBA, 1-bit, 1x1, odd sizes, upscaling), and JPEGs/PNGs for the decode
  contract (photos re-encoded at 2 and 12 MP, progressive, grey, CMYK, each EXIF orientation 2..8,
  a PNG with an eXIf orientation, 16-bit grey, a tall PNG that Pillow resizes vertical pass first,
  an MPO: a JPEG followed by a second picture, as phones write), each preprocessed by
  dnx/data/preprocess.py for four preprocess specs (the shipped model's 28x28 grey, and ImageNet's
  256 -> 224 RGB with bilinear, bicubic and nearest resampling) in both decode modes (fast: JPEGs
  scaled while decoding, and every image resized only where the centre crop keeps it);
* files both runtimes must refuse in both decode modes (``refused``): a truncated JPEG, a PNG with
  a bad CRC, a 1x20000 PNG whose resized image would exceed the pixel limit;
* the 5,000 shipped Fashion-MNIST test images, their preprocessed tensor, and dnx.load()'s logits
  of it: FP32 on OpenVINO (the C++ backend) and on onnxruntime, each INT8 file on the backend
  dnx.load picks for it and on onnxruntime, and (on CPUs with BF16) the FP32 file run in BF16 as
  asked for with ``precision="bf16"``;
* dnx.load()'s top-1 of the photos on the FP32 model;
* ``manifest_cases/``: valid and invalid manifests judged by the JSON Schema and Python's reader
  (tests/manifest_cases.py), for the C++ parsers' schema test; rewritten on every run (they are cheap).

Regenerated only when missing or older than this script, dnx/data/preprocess.py or the Python
OpenVINO runner (whose compile options the C++ side must match).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

SPECS = {
    "fmnist": None,  # filled from the exported manifest
    "imagenet_bilinear": {"image_size": 224, "resize_size": 256, "mean": [0.485, 0.456, 0.406],
                          "std": [0.229, 0.224, 0.225], "in_channels": 3, "interpolation": "bilinear"},
    "imagenet_bicubic": {"image_size": 224, "resize_size": 256, "mean": [0.485, 0.456, 0.406],
                         "std": [0.229, 0.224, 0.225], "in_channels": 3, "interpolation": "bicubic"},
    "imagenet_nearest": {"image_size": 224, "resize_size": 256, "mean": [0.485, 0.456, 0.406],
                         "std": [0.229, 0.224, 0.225], "in_channels": 3, "interpolation": "nearest"},
}


def dnx_cli(*args: str) -> None:
    dnx = Path(sys.executable).with_name("dnx")
    subprocess.run([str(dnx), *args], check=True, stdout=subprocess.DEVNULL)


def synthetic_pngs(folder: Path) -> list[Path]:
    """Small PNGs (lossless, so decoding is identical on both sides) for the modes photos lack."""
    from PIL import Image

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:64, 0:64]
    smooth = ((xx * 4 + yy * 2) % 256).astype(np.uint8)
    rgb = np.stack([smooth, smooth[::-1], (smooth // 2 + rng.integers(0, 60, smooth.shape)).astype(np.uint8)], -1)
    images = {
        "rgb_37x23.png": Image.fromarray(rgb[:23, :37]),
        "grey_19x64.png": Image.fromarray(smooth[:64, :19]),
        "palette_50x40.png": Image.fromarray(rgb[:40, :50]).quantize(colors=16),
        "rgba_64x48.png": Image.fromarray(np.dstack([rgb[:48], smooth[:48]]), "RGBA"),
        "grey_alpha_30x30.png": Image.fromarray(np.dstack([smooth[:30, :30], smooth[:30, :30][::-1]]), "LA"),
        "bilevel_33x17.png": Image.fromarray(smooth[:17, :33] > 100),
        "pixel_1x1.png": Image.fromarray(rgb[:1, :1]),
        "wide_300x7.png": Image.fromarray(np.tile(rgb[:7], (1, 5, 1))[:, :300]),
    }
    paths = []
    for name, img in images.items():
        path = folder / name
        img.save(path)
        paths.append(path)
    return paths


def decode_contract_images(folder: Path) -> tuple[list[Path], list[Path]]:
    """Images for the decode contract (docs/images.md): large JPEGs the fast decode scales by 1/2, 1/4
    and 1/8, progressive / grey / CMYK JPEGs, the seven EXIF orientations, a PNG's eXIf, 16-bit grey, a tall
    PNG, an MPO; and the files both runtimes refuse."""
    import io
    import struct

    from PIL import Image

    from dnx.data.preprocess import bundled_photos

    photo = Image.open(bundled_photos()[1]).convert("RGB")
    made: dict[str, tuple[Image.Image, dict]] = {
        "photo_2mp_1632x1224.jpg": (photo.resize((1632, 1224)), {"quality": 90}),
        "photo_12mp_4000x3000.jpg": (photo.resize((4000, 3000)), {"quality": 90}),
        "progressive_1200x1100.jpg": (photo.resize((1200, 1100)), {"quality": 90, "progressive": True}),
        "grey_1100x1200.jpg": (photo.resize((1100, 1200)).convert("L"), {"quality": 90}),
        "cmyk_1100x1050.jpg": (photo.resize((1100, 1050)).convert("CMYK"), {"quality": 90}),
    }
    for orientation in range(2, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        made[f"exif_{orientation}_1150x1060.jpg"] = (photo.resize((1150, 1060)), {"quality": 90, "exif": exif.tobytes()})
    exif = Image.Exif()
    exif[0x0112] = 6
    made["exif_6_60x40.png"] = (photo.resize((60, 40)), {"exif": exif.tobytes()})
    ramp = (np.arange(50 * 70, dtype=np.uint32) * 18 + 7).reshape(50, 70).astype(np.uint16)
    made["grey16_70x50.png"] = (Image.fromarray(ramp), {})
    made["tall_300x1400.png"] = (photo.resize((300, 1400)), {})
    made["mpo_1600x1200.jpg"] = (photo.resize((1600, 1200)), {"format": "MPO", "quality": 90, "save_all": True,
                                                              "append_images": [photo.resize((1600, 1200)).rotate(90)]})
    paths = []
    for name, (img, options) in made.items():
        img.save(folder / name, **options)
        paths.append(folder / name)
    refused = folder / "refused"
    refused.mkdir(exist_ok=True)
    jpeg = (folder / "photo_2mp_1632x1224.jpg").read_bytes()
    (refused / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    buf = io.BytesIO()
    photo.resize((40, 30)).save(buf, "PNG")
    png = bytearray(buf.getvalue())
    idat = png.index(b"IDAT")
    crc_at = idat + 4 + struct.unpack(">I", png[idat - 4:idat])[0]
    png[crc_at] ^= 0xFF
    (refused / "bad_crc.png").write_bytes(bytes(png))
    Image.new("L", (1, 20000), 128).save(refused / "thin_1x20000.png")
    return paths, sorted(refused.iterdir())


def write_bad_artifacts(out: Path, fp32: Path, manifest: dict) -> None:
    """An ONNX without any manifest (foreign), and one whose sidecar promises 5 classes (mismatch)."""
    import onnx

    proto = onnx.load(str(fp32))
    del proto.metadata_props[:]
    onnx.save(proto, str(out / "foreign.onnx"))
    onnx.save(proto, str(out / "mismatch.onnx"))
    wrong = {**manifest, "labels": {**manifest["labels"], "names": manifest["labels"]["names"][:5]}}
    (out / "mismatch.onnx.json").write_text(json.dumps(wrong))


def write(out: Path, name: str, array: np.ndarray, dtype) -> str:
    np.ascontiguousarray(array, dtype=dtype).tofile(out / name)
    return name


def main(out: Path) -> None:
    from dnx.runtime.classifier import load

    from dnx.data.datasets import shipped_fashion_mnist_test
    from dnx.data.preprocess import (
        FAST_DECODE_MARGIN,
        bundled_photos,
        load_image,
        preprocess_array,
        preprocess_image,
    )
    from dnx.models import ASSETS
    from dnx.models.registry import Preprocess

    out = out.resolve()  # index.json lists absolute image paths
    out.mkdir(parents=True, exist_ok=True)
    fp32, int8, embedded = out / "fp32.onnx", out / "int8.onnx", out / "embedded.onnx"
    int8_trt = out / "int8_trt.onnx"
    dnx_cli("export", "densenet_bc22_fmnist", "--weights", str(ASSETS / "densenet_bc22_fmnist.pth"), "-o", str(fp32))
    shutil.copyfile(fp32, embedded)
    data = shipped_fashion_mnist_test()
    np.save(out / "calib.npy", data.images[:256])
    dnx_cli("calibrate", str(fp32), "--data", str(out / "calib.npy"), "--target", "onnxruntime", "--samples", "256",
            "-o", str(int8))
    # TensorRT's placement: the Q/DQ pattern OpenVINO misreads with a dynamic batch (static shapes fix it)
    dnx_cli("calibrate", str(fp32), "--data", str(out / "calib.npy"), "--target", "tensorrt", "--samples", "256",
            "-o", str(int8_trt))
    manifest = json.loads((out / "fp32.onnx.json").read_text())
    write_bad_artifacts(out, fp32, manifest)
    specs = {**SPECS, "fmnist": manifest["preprocess"]}

    folder = out / "images"
    folder.mkdir(exist_ok=True)
    contract, refused = decode_contract_images(folder)
    images = [*bundled_photos(), *synthetic_pngs(folder), *contract]
    index = {"fp32_onnx": fp32.name, "int8_onnx": int8.name, "int8_trt_onnx": int8_trt.name, "embedded_onnx": embedded.name, "specs": specs,
             "images": [str(p) for p in images], "preprocessed": [], "refused": [str(p) for p in refused],
             "fast_decode_margin": FAST_DECODE_MARGIN}
    for i, path in enumerate(images):
        for decode in ("exact", "fast"):
            for spec_name, spec in specs.items():
                pre = Preprocess.from_dict({**spec, "decode": decode})
                tensor = preprocess_image(load_image(path, pre), pre)
                index["preprocessed"].append({"image": i, "spec": spec_name, "decode": decode, "shape": list(tensor.shape),
                                              "file": write(out, f"pre_{i}_{spec_name}_{decode}.f32", tensor, np.float32)})

    pre = Preprocess.from_dict(manifest["preprocess"])
    fm_input = preprocess_array(data.images, pre)
    with load(fp32, backend="openvino") as ov_model, load(fp32, backend="onnxruntime") as ort_model, \
            load(int8) as int8_model, load(int8_trt) as int8_trt_model, \
            load(int8, backend="onnxruntime") as int8_ort, load(int8_trt, backend="onnxruntime") as int8_trt_ort:
        photos = np.stack([preprocess_image(load_image(p, pre), pre) for p in images])  # the manifest's decode
        index["photos_top1_fp32"] = [int(v) for v in ov_model.logits(photos).argmax(1)]
        logits = {"fp32_openvino": ov_model.logits(fm_input), "fp32_onnxruntime": ort_model.logits(fm_input),
                  "int8": int8_model.logits(fm_input), "int8_trt": int8_trt_model.logits(fm_input),
                  # onnxruntime reads Q/DQ as ONNX defines it: the cross-backend reference
                  "int8_onnxruntime": int8_ort.logits(fm_input), "int8_trt_onnxruntime": int8_trt_ort.logits(fm_input)}
        int8_backend = int8_model.info().get("backend")
        int8_trt_backend = int8_trt_model.info().get("backend")
    # BF16 only when asked (Python: precision="bf16", C++: Options::inference_precision = "bf16"), on CPUs
    # that have it: its logits let C++'s BF16 be checked against Python's
    from dnx.runtime.backends.openvino_runner import cpu_capabilities

    if "BF16" in cpu_capabilities():
        with load(fp32, precision="bf16") as bf16_model:
            logits["bf16_openvino"] = bf16_model.logits(fm_input)
    index["fmnist"] = {"count": len(data.images), "images": write(out, "fmnist.u8", data.images, np.uint8),
                       "input": write(out, "fmnist_input.f32", fm_input, np.float32),
                       "labels": write(out, "fmnist_labels.i32", data.labels, np.int32),
                       "int8_backend": int8_backend, "int8_trt_backend": int8_trt_backend,
                       **{f"logits_{k}": write(out, f"fmnist_logits_{k}.f32", v, np.float32) for k, v in logits.items()}}
    (out / "index.json").write_text(json.dumps(index, indent=1))


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1].startswith("-"):
        sys.exit(__doc__)
    target = Path(sys.argv[1])
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from manifest_cases import write_cases

    write_cases(target)
    stamp = target / "index.json"
    # Python's side changes with this script and with the preprocessing it reproduces
    root = Path(__file__).resolve().parents[3]
    sources = [Path(__file__), root / "dnx" / "data" / "preprocess.py",
               root / "runtime" / "backends" / "openvino_runner.py"]
    if stamp.is_file() and all(stamp.stat().st_mtime >= p.stat().st_mtime for p in sources):
        sys.exit(0)
    main(target)
