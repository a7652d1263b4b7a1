"""Every file dnx writes goes through dnx/core/fileio.py (issue 14: defects 1, 11, 12 and 13 cannot come
back through a second write path).

A grep over the code, with strings and comments removed: a call that writes a file must name a path
bound by ``with atomic_path(...) as NAME`` in the same module, or be listed below with the reason it
is not an artifact.
"""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("dnx", "export", "calibration", "runtime", "benchmarks")

WRITES = re.compile(
    r"\.write_text\(|\.write_bytes\(|\bopen\([^)]*['\"][wax]b?\+?['\"]|\.open\(['\"][wax]|torch\.save\(|"
    r"onnx\.save(_model)?\(|\bnp\.save(z|z_compressed|txt)?\(|\.savefig\(|\.save\(|\bmkstemp\(|NamedTemporaryFile\(|"
    r"shutil\.(copy\w*|move)\(|os\.(replace|rename)\(|\.rename\(|\.tofile\(|json\.dump\(|"
    r"pickle\.dump\(")
ATOMIC_NAME = re.compile(r"atomic_path\((?:[^()]|\([^()]*\))*\)\s+as\s+(\w+)")

# (file, a fragment of the line): why the write is not an artifact written outside fileio
ALLOWED = {
    ("dnx/core/fileio.py", "mkstemp("): "the helper itself",
    ("dnx/core/fileio.py", "os.replace("): "the helper itself",
    ("calibration/qdq.py", "ort_cache.write_text("): "onnxruntime's range input, in a TemporaryDirectory",
    ("calibration/common.py", "onnx.save(qproto, str(written))"): "certify() rewrites the temporary file its "
                                                                "callers hold from atomic_path",
    ("runtime/serve/repository_folders.py", "final.rename("): "a Triton model folder is staged and swapped whole; "
                                                      "its files are written with atomic_path",
    ("runtime/serve/repository_folders.py", "stage.rename("): "as above: the staged folder replaces the old one",
    ("benchmarks/triton_load.py", "log.open("): "a server's live log during a load test, not an artifact",
    ("runtime/deploy/haproxy.py", "self.log_path.open("): "haproxy's live log in a replica test's folder",
    ("runtime/deploy/replicas.py", "log.open("): "a replica's live log in a replica test's folder",
    ("benchmarks/scale_demo.py", "Image.fromarray(image[0]).save(png"): "a PNG request body in memory (BytesIO)",
    ("dnx/data/photos.py", "rgb.save(buf,"): "re-encodes request photos into memory (io.BytesIO), no file",
    ("benchmarks/tune/load.py", ".save(buf,"): "a JPEG request body encoded into memory (io.BytesIO), no file",
    ("benchmarks/experiments/tune_compare.py", "shutil.copytree("): "copies finished variants between two scratch work "
                                                         "folders of one benchmark run, not an artifact",
}


def _code_lines(path: Path) -> dict[int, str]:
    """Line number -> the line's code with string literals and comments blanked out."""
    lines: dict[int, list[str]] = {}
    tokens = tokenize.generate_tokens(io.StringIO(path.read_text()).readline)
    for tok in tokens:
        if tok.type == tokenize.STRING:
            text = tok.string if len(tok.string) <= 6 else "''"  # keep file modes ("w", "wb"), drop messages
        elif tok.type == tokenize.COMMENT or tok.type == getattr(tokenize, "FSTRING_MIDDLE", -1):
            text = ""
        else:
            text = tok.string
        lines.setdefault(tok.start[0], []).append(text)
    return {n: " ".join(parts) for n, parts in lines.items()}


def _sources():
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if "/tests/" in rel:  # C++ test fixtures and similar: not what dnx writes for users
                continue
            yield rel, path


def _compact(code: str) -> str:
    return re.sub(r"\s+", "", code)


def test_every_write_goes_through_fileio():
    offenders = []
    for rel, path in _sources():
        text = path.read_text()
        bound = set(ATOMIC_NAME.findall(text))
        for number, code in _code_lines(path).items():
            flat = _compact(code)
            if not WRITES.search(flat):
                continue
            if any(rel == f and _compact(fragment) in flat for f, fragment in ALLOWED):
                continue
            if bound and re.search(rf"\b({'|'.join(map(re.escape, bound))})\b", code):
                continue
            offenders.append(f"{rel}:{number}: {text.splitlines()[number - 1].strip()}")
    assert not offenders, "files written outside dnx.core.fileio.atomic_path:\n" + "\n".join(offenders)


def test_the_grep_finds_writes():
    """The check above is only as good as its pattern: it must see each kind of write."""
    samples = ["p.write_text(x)", "open(p, 'w')", "torch.save(sd, p)", "onnx.save(m, p)", "np.save(p, a)",
               "np.savez(p, a=a)", "fig.savefig(p)", "img.save(p)", "shutil.copyfile(a, b)", "os.replace(a, b)",
               "json.dump(d, f)", "p.open('wb')", "tempfile.mkstemp(dir=d)"]
    assert all(WRITES.search(_compact(s)) for s in samples)
    for (rel, fragment), _why in ALLOWED.items():
        assert _compact(fragment) in _compact((ROOT / rel).read_text()), f"stale allowance {rel}: {fragment}"
