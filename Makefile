# dnx — the two quickstart commands are `make demo` and `make test`; both create .venv themselves.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO   ?= build/demo

.PHONY: venv demo test bench gpu-check cpp cpp-asan cpp-deps photo-deps haproxy-deps scale-demo clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,plot,simplify,openvino,serve,triton,cpp,deploy]'
	touch $(STAMP)

# The main job on the embedded default (no GPU: onnxruntime CPU): export densenet121 and prove it
# equals PyTorch; then, on dnx's trained DenseNet-BC, export -> FP16 -> INT8 calibration -> accuracy
# table; then a side-by-side latency/parity benchmark; then `dnx serve` on the exported model, one real
# HTTP request, and a SIGTERM stop.
demo: $(STAMP)
	$(BIN)/dnx models
	mkdir -p $(DEMO)
	$(BIN)/dnx export densenet121 -o $(DEMO)/densenet121.onnx
	$(BIN)/dnx eval densenet_bc22_fmnist --workdir $(DEMO)/eval
	$(BIN)/dnx bench densenet121 --batch 1,8 --threads 1 --duration 3 --workdir $(DEMO)/bench --json $(DEMO)/bench.json
	$(BIN)/python -m dnx.runtime.serve.process $(DEMO)/densenet121.onnx

# ruff (pyflakes + pycodestyle; the layer contract is a test), the Python tests, then the C++ runtime:
# configure, build (warnings as errors), Python-written parity fixtures, ctest.
test: $(STAMP) cpp-deps photo-deps haproxy-deps
	$(BIN)/ruff check .
	$(BIN)/pytest
	runtime/cpp/build_and_test.sh

# Debian packages, installed when missing (as root; otherwise the command to run is printed):
# $(call apt_need,PACKAGES,WHAT NEEDS THEM)
define apt_need
	@missing=$$(for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  else echo "for $(2): sudo apt-get install $$missing" >&2; exit 1; fi; \
	fi
endef

# The C++ runtime's Debian build dependencies (image decoding, JSON, GoogleTest, OpenSSL's SHA-256 for
# engine files); cmake, ninja and OpenVINO's C++ package come from the venv (the `cpp` extra).
CPP_DEBS := g++ libjpeg62-turbo-dev libpng-dev nlohmann-json3-dev libgtest-dev libssl-dev
cpp-deps:
	$(call apt_need,$(CPP_DEBS),the C++ runtime)

# Real photos for parity, calibration and decode-fidelity tests of ImageNet-size models (DATA.md):
# Debian's opencv-doc sample images and mate-backgrounds; the tests also use scikit-image's photos.
PHOTO_DEBS := opencv-doc mate-backgrounds
photo-deps:
	$(call apt_need,$(PHOTO_DEBS),the photo tests)

# haproxy, the load balancer in front of the replica tests and `make scale-demo` (Debian's package).
haproxy-deps:
	$(call apt_need,haproxy,the replica tests)

# Three dnx serve and three dnx triton serve replicas behind haproxy on loopback, under load (32 in
# flight, <= 60 s), while one is SIGKILLed and while all are replaced by a new version (about 5 min):
# benchmarks/results/scale_demo.json.
scale-demo: $(STAMP) haproxy-deps
	$(BIN)/python -m dnx.benchmarks.scale_demo

cpp: $(STAMP) cpp-deps
	runtime/cpp/build_and_test.sh

# The same tests under AddressSanitizer + UBSan (about 12 minutes on 2 cores).
cpp-asan: $(STAMP) cpp-deps
	runtime/cpp/build_and_test.sh asan

bench: $(STAMP)
	$(BIN)/python -m dnx.benchmarks.suite

# Every CUDA/TensorRT path on densenet121 at batch 1/8/64 with parity, and the TensorRT checks
# (version-compatible engine in Python and C++, dnx inspect on 10/11, two GPUs) (< 8 min on a GPU
# machine; each skipped path says why): benchmarks/results/gpu_check.{json,md}.
gpu-check: $(STAMP)
	benchmarks/gpu_check.sh

clean:
	rm -rf $(VENV) build .pytest_cache
