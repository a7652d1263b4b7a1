"""The reliability catalogue's harness: run `dnx` as a user would and prepare the bad inputs once.

Commands run in this interpreter (``dnx.cli.main``, the console script's entry point) so that torch
and onnxruntime are imported once for the whole catalogue; the cases that need a real process
(signals, tracebacks on stderr) start one.
"""

from __future__ import annotations

import contextlib
import io
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

ASSETS = Path(__file__).resolve().parents[2] / "dnx" / "assets"
CALIB = ASSETS / "fashion_mnist_calib512.npz"


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str
    escaped: BaseException | None = None  # an exception main() let through (always a bug)


def run_dnx(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> Result:
    """``dnx ARGS`` in ``cwd``; the exit code and both streams."""
    from dnx.cli import main

    out, err = io.StringIO(), io.StringIO()
    old_cwd, old_env = os.getcwd(), dict(os.environ)
    os.chdir(cwd)
    os.environ.pop("DNX_DEBUG", None)
    os.environ.update(env or {})
    code, escaped = 0, None
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main([str(a) for a in args])
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except BaseException as exc:  # noqa: BLE001  (recorded; the test fails on it)
                code, escaped = -1, exc
    finally:
        os.chdir(old_cwd)
        os.environ.clear()
        os.environ.update(old_env)
    return Result(code, out.getvalue(), err.getvalue(), escaped)


def listing(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


# -- bad and edge inputs, made once ---------------------------------------------------------------

def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(width: int = 14000, height: int = 14000) -> bytes:
    """A 196 MP greyscale PNG whose file is a few hundred KB: Pillow refuses it as a bomb."""
    row = b"\x00" + b"\x00" * width
    comp = zlib.compressobj(9)
    data = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", data) + _png_chunk(b"IEND", b"")


def _strip_manifest(src: Path, dst: Path, fp16: bool = False) -> None:
    import onnx

    proto = onnx.load(str(src))
    del proto.metadata_props[:]
    if fp16:
        from dnx.calibration.fp16 import to_fp16_proto

        proto = to_fp16_proto(proto)
    onnx.save(proto, str(dst))


def _two_input_onnx(dst: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, [1, 1, 28, 28])
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, 1, 28, 28])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 28, 28])
    graph = helper.make_graph([helper.make_node("Add", ["a", "b"], ["y"])], "two", [a, b], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(dst))


def _fixed_input_onnx(dst: Path) -> None:
    """A foreign (manifest-less) one-input classifier with a fixed 1x1x28x28 input."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 28, 28])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 28, 28])
    w = numpy_helper.from_array(np.ones((4, 1, 3, 3), np.float32), "w")
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])], "g", [x], [y], [w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(dst))


@pytest.fixture(scope="session")
def harness():
    """The helpers above, for the test modules (conftest modules are not importable by name)."""
    import types

    return types.SimpleNamespace(run_dnx=run_dnx, listing=listing, bomb_png=bomb_png)


@pytest.fixture(scope="session")
def inputs(tmp_path_factory) -> Path:
    """A read-only folder of inputs the cases point at (outputs go to each case's own folder)."""
    import torch
    from PIL import Image

    from dnx.export.onnx_export import ExportOptions, export_onnx
    from dnx.models import create_model

    root = tmp_path_factory.mktemp("inputs")
    model = export_onnx(create_model("densenet_bc22_fmnist"), root / "m.onnx", ExportOptions(verify=False)).path
    _strip_manifest(model, root / "foreign.onnx")
    _strip_manifest(model, root / "foreign_fp16.onnx", fp16=True)
    _two_input_onnx(root / "two_inputs.onnx")
    _fixed_input_onnx(root / "fixed28.onnx")
    (root / "empty.onnx").write_bytes(b"")
    rng = np.random.default_rng(0)
    (root / "random.onnx").write_bytes(rng.bytes(4096))
    (root / "random.engine").write_bytes(rng.bytes(4096))
    (root / "random.pth").write_bytes(rng.bytes(4096))
    (root / "empty.pth").write_bytes(b"")
    (root / "folder.pth").mkdir()
    state = create_model("densenet_bc22_fmnist").model.state_dict()
    torch.save({k: (v * 100).to(torch.int32) for k, v in state.items()}, root / "int32.pth")
    torch.save({"x": torch.zeros(3)}, root / "wrong_arch.pth")

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {root / 'PWNED'}",))

    torch.save({"w": Payload()}, root / "pickle_code.pth")
    # metadata: a corrupt embedded manifest, and JSON that is not an object
    import onnx

    proto = onnx.load(str(model))
    for prop in proto.metadata_props:
        if prop.key == "dnx.manifest":
            prop.value = "{not json"
    onnx.save(proto, str(root / "bad_manifest.onnx"))
    for prop in proto.metadata_props:
        if prop.key == "dnx.manifest":
            prop.value = "[1, 2]"
    onnx.save(proto, str(root / "list_manifest.onnx"))
    # calibration and training data
    images = np.load(CALIB)["images"]
    np.savez(root / "no_images_key.npz", pixels=np.zeros(3))
    bad = rng.standard_normal((4, 1, 28, 28)).astype(np.float32)
    bad[0, 0, 0, 0] = np.nan
    np.save(root / "nan.npy", bad)
    bad[0, 0, 0, 0] = np.inf
    np.save(root / "inf.npy", bad)
    np.save(root / "wrong_shape.npy", np.zeros((4, 5), np.float32))
    (root / "corrupt.npz").write_bytes(b"PK\x03\x04" + rng.bytes(100))
    labels = np.arange(64) % 10
    np.savez(root / "train64.npz", images=images[:64], labels=labels)
    np.savez(root / "label_count.npz", images=images[:64], labels=labels[:60])
    np.savez(root / "negative_labels.npz", images=images[:64], labels=labels - 1)
    np.savez(root / "one_class.npz", images=images[:64], labels=np.zeros(64, np.int64))
    one = root / "one_class_folder" / "shirts"
    one.mkdir(parents=True)
    for i in range(8):
        Image.fromarray(images[i]).save(one / f"{i}.png")
    photos = root / "photos_with_bomb"
    photos.mkdir()
    for i in range(6):
        Image.fromarray(images[i]).save(photos / f"{i}.png")
    (photos / "bomb.png").write_bytes(bomb_png())
    (photos / "truncated.png").write_bytes((photos / "0.png").read_bytes()[:40])
    deep = root / "png16"
    deep.mkdir()
    for i in range(4):
        Image.fromarray(images[i].astype(np.uint16) * 257).save(deep / f"{i}.png")
    (root / "no_images").mkdir()
    (root / "no_images" / "readme.txt").write_text("nothing here")
    (root / "a_file").write_text("not a folder")
    # IDX: a good header with truncated data, and a bad magic number
    (root / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03" + struct.pack(">III", 10, 28, 28) + b"\x00" * 50)
    (root / "bad-idx3-ubyte").write_bytes(b"\x01\x02\x03\x04" + b"\x00" * 20)
    # engines without TensorRT: a minimal sidecar that matches its file, one that does not, one not JSON
    import hashlib
    import json

    from dnx.schemas.engine_manifest import ENGINE_SCHEMA

    blob = rng.bytes(512)
    (root / "minimal.engine").write_bytes(blob)
    (root / "other.engine").write_bytes(blob[::-1])
    for name in ("minimal", "other"):
        (root / f"{name}.engine.json").write_text(json.dumps(
            {"schema": ENGINE_SCHEMA, "tensorrt_version": "10.8.0", "gpu": {"compute_capability": "8.9"},
             "engine_sha256": hashlib.sha256(blob).hexdigest()}))
    (root / "sidecar_bad.engine").write_bytes(rng.bytes(256))
    (root / "sidecar_bad.engine.json").write_text("{oops")
    return root
