"""TensorRT producer: the strongly typed engine builder, timing cache and inspector (the runner and the
version compatibility rules live in dnx.runtime.backends). Nothing here imports tensorrt at module level."""
