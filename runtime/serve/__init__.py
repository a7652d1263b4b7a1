"""Serving: the HTTP service (`dnx serve`) and Triton."""
