"""Backends: one Runner per engine (onnxruntime, OpenVINO, PyTorch, TensorRT) behind one interface, the
backend table, and latency measurement of a runner. Imports only core; no engine is imported at module level."""
