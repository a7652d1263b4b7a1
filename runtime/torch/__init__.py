"""PyTorch backend: eager, torch.compile and CUDA autocast (the parity reference)."""
