"""TensorRT backend: strongly typed engine builder, runner, engine manifest and compatibility checks,
inspector and the static API check. Nothing here imports tensorrt at module level."""
