"""PyTorch -> ONNX export, ONNX-vs-PyTorch verification and artifact manifests."""
