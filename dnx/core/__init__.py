"""Core: what every layer may use and what imports nothing of dnx above it — errors, atomic file writes,
hashing, machine facts, logits comparison, ONNX graph utilities, result tables, the version."""
