"""The request on the GPU (issue 21, item 4), part of ``make gpu-check``: only compressed bytes cross PCIe.

JPEG bytes -> ``torchvision.io.decode_jpeg(list, device="cuda")`` (nvJPEG, one batched call) -> resize of the
short side (antialiased) / centre crop / normalise on the GPU with ``torchvision.transforms.v2.functional`` ->
one (N, 3, H, W) CUDA tensor handed to onnxruntime's CUDA provider through an IO binding on its device
pointer (no copy back to the host) -> logits. Chosen over DALI's mixed decoder because torch and
torchvision are already dnx's dependencies on a GPU machine, the batch stays a torch tensor the TensorRT
runner can take too, and DALI would be one more 400 MB wheel; nvJPEG is the decoder under both.

Reported per image size and batch: the stages (host->device of the bytes + decode, preprocess, inference)
and the total, CUDA-synchronised wall times, p50/p99; and parity of the GPU-decoded inputs against dnx's
exact CPU decode (logit cosine, top-1 agreement: nvJPEG's IDCT and chroma upsampling differ from
libjpeg-turbo's, so the inputs differ by a few grey levels). Without a CUDA device nothing runs.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
from dnx.data.preprocess import image_to_input

BATCHES = (1, 8)
ROUNDS = 20


def _gpu_inputs(jpegs: list[bytes], pre, torch, F, decode_jpeg, ImageReadMode, device: str = "cuda"):
    """Bytes -> normalised (N, C, H, W) tensor on ``device``; the stage times (synchronised)."""
    t0 = time.perf_counter()
    cpu = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in jpegs]
    mode = ImageReadMode.GRAY if pre.in_channels == 1 else ImageReadMode.RGB
    images = decode_jpeg(cpu, mode=mode, device=device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    sync()
    t1 = time.perf_counter()
    mean = torch.tensor(pre.mean, device=device).view(-1, 1, 1)
    std = torch.tensor(pre.std, device=device).view(-1, 1, 1)
    batch = torch.stack([F.center_crop(F.resize(img, [pre.resize_size], antialias=True), [pre.image_size])
                         for img in images]).float().div_(255.0).sub_(mean).div_(std).contiguous()
    sync()
    return batch, {"decode": t1 - t0, "preprocess": time.perf_counter() - t1}


def _ort_on_device(onnx_path, device: str = "cuda"):
    """infer(tensor) -> numpy logits, the input bound by its device pointer (onnxruntime IO binding)."""
    import onnxruntime as ort

    provider = "CUDAExecutionProvider" if device == "cuda" else "CPUExecutionProvider"
    sess = ort.InferenceSession(str(onnx_path), providers=[provider])
    if provider not in sess.get_providers():
        raise RuntimeError(f"onnxruntime's {provider} did not load")
    name, out_name = sess.get_inputs()[0].name, sess.get_outputs()[0].name

    def infer(x) -> np.ndarray:
        binding = sess.io_binding()
        binding.bind_input(name, device, 0, np.float32, tuple(x.shape), x.data_ptr())
        binding.bind_output(out_name, device, 0)
        sess.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0]

    return infer


def request_path(onnx_path, pre, sets: dict[str, list[bytes]], budget, device: str = "cuda") -> dict:
    """Time and check the GPU request path on each image set (see the module doc). ``device="cpu"`` runs
    the same code on the CPU (tests/benchmarks/test_gpu_request.py: the plumbing, not the GPU)."""
    import torch
    from torchvision.io import ImageReadMode, decode_jpeg
    from torchvision.transforms.v2 import functional as F

    infer = _ort_on_device(onnx_path, device)
    out: dict = {"status": "ran", "device": device, "decoder": "torchvision.io.decode_jpeg (nvJPEG), batched",
                 "runner": "onnxruntime CUDAExecutionProvider, input bound on the device", "sizes": {}}
    for size, jpegs in sets.items():
        budget.check()
        x, _ = _gpu_inputs(jpegs, pre, torch, F, decode_jpeg, ImageReadMode, device)
        gpu_logits = infer(x)
        exact = replace(pre, decode="exact")
        cpu_logits = infer(torch.from_numpy(np.stack([image_to_input(b, exact) for b in jpegs])).to(device))
        cos = (gpu_logits * cpu_logits).sum(1) / np.linalg.norm(gpu_logits, axis=1) / np.linalg.norm(cpu_logits, axis=1)
        row = {"images": len(jpegs), "parity_vs_cpu_exact": {
            "top1_agreement": float((gpu_logits.argmax(1) == cpu_logits.argmax(1)).mean()),
            "min_cosine": float(cos.min()), "mean_cosine": float(cos.mean())}, "batches": {}}
        for batch in BATCHES:
            chunk = (jpegs * batch)[:batch]
            samples: dict[str, list[float]] = {}
            for i in range(ROUNDS + 2):
                x, stages = _gpu_inputs(chunk, pre, torch, F, decode_jpeg, ImageReadMode, device)
                start = time.perf_counter()
                infer(x)
                stages["inference"] = time.perf_counter() - start
                stages["total"] = sum(stages.values())
                if i >= 2:  # two warm-up calls
                    for k, v in stages.items():
                        samples.setdefault(k, []).append(v)
            row["batches"][batch] = {k: {"p50_ms": float(np.percentile(v, 50) * 1e3),
                                         "p99_ms": float(np.percentile(v, 99) * 1e3)} for k, v in samples.items()}
            row["batches"][batch]["images_per_s"] = batch / float(np.median(samples["total"]))
        out["sizes"][size] = row
    return out


def markdown(section: dict) -> str:
    if section.get("status") != "ran":
        return f"\n## Request on the GPU (nvJPEG decode -> GPU preprocess -> device-memory inference)\n\nnot run: " \
               f"{section.get('reason', '')}\n"
    lines = ["", "## Request on the GPU (nvJPEG decode -> GPU preprocess -> device-memory inference)", "",
             f"{section['decoder']}; {section['runner']}", "",
             "| size | batch | decode ms | preprocess ms | inference ms | total p50 | total p99 | images/s | "
             "top-1 vs CPU exact | min cosine |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for size, row in section["sizes"].items():
        par = row["parity_vs_cpu_exact"]
        for batch, st in row["batches"].items():
            lines.append(f"| {size} | {batch} | {st['decode']['p50_ms']:.2f} | {st['preprocess']['p50_ms']:.2f} | "
                         f"{st['inference']['p50_ms']:.2f} | {st['total']['p50_ms']:.2f} | "
                         f"{st['total']['p99_ms']:.2f} | "
                         f"{st['images_per_s']:.0f} | {par['top1_agreement']:.0%} | {par['min_cosine']:.4f} |")
    return "\n".join(lines) + "\n"
