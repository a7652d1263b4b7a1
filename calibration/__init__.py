"""Calibration data streams, INT8 QDQ insertion, FP16 conversion and the calibration cache."""
