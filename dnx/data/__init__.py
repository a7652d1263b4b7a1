"""Image preprocessing and datasets (image folders, arrays, IDX files)."""
