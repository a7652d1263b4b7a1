"""OpenVINO backend (CPU): runs dnx's FP32/FP16/INT8 ONNX files."""
