"""onnxruntime backend: CPU, CUDA and TensorRT execution providers."""
