# Nodus: build, test and demo. Each target installs what it needs on a fresh
# Debian machine (apt packages, a project venv for the Python binding).
#
#   make build   release libnodus.so (Swift runtime linked statically) and the nodus CLI
#   make test    every suite: Swift unit tests, C examples and the C++ PACS example, Python binding,
#                no-toolchain load
#   make demo    synthesize nodules with the bundled model and its LoRAs: out/demo.png; insert one
#                into a synthetic radiograph: out/demo-radiograph-nodule.png (+ mask, sidecar)
#   make bench   DiT-XL/2, SD-1.5 UNet forward and SD VAE decode beside torch and onnxruntime
#                (also Nodus on the same ONNX exports; ARGS="--cpu avx2" runs Nodus at a lower CPU level,
#                ARGS=--hide-avx512 every engine as on an AVX2-only CPU)
#                (installs them in .venv-bench; report in benchmarks/results/forward-<date>.md)
#   make bench-sample  a 50-step CFG DiT-XL/2 sample + SD VAE decode at 256x256 beside diffusers
#                (report in benchmarks/results/sample-<date>.md)
#   make bench-lora  LoRA load / fuse / unfuse / forward on DiT-XL/2 beside diffusers + PEFT
#                (ARGS=--hide-avx512 as on an AVX2-only CPU)
#   make large-check  real-size parity (DiT-XL/2, SD-1.5 UNet, SD VAE; generates GBs of weights in /tmp)
#   make fuzz    every parser's libFuzzer target (Fuzz/) for FUZZ_SECONDS each (default 60), two at a time
#   make fuzz-smoke  each target for FUZZ_SMOKE_RUNS executions (default 10^5): executions and time per target
#   make fuzz-graphs  FUZZ_GRAPHS random small ONNX graphs (default 2000): Nodus against onnxruntime
#   make soak    opt-in: SOAK_CYCLES (default 10000) load / LoRA / fuse / forward / unfuse / free
#                cycles on 4 threads; fails if RSS grows over 4 MB (examples/c/soak.c)
#   make test-sanitize  the Swift tests under AddressSanitizer + UndefinedBehaviorSanitizer, then
#                under ThreadSanitizer

SHELL := /bin/bash
RELEASE := .build/release
SWIFT_RELEASE_FLAGS := -c release -Xswiftc -static-stdlib
APT_PACKAGES := libopenblas-dev libpng-dev pkg-config libonnx-dev libprotobuf-dev libdcmtk-dev libnifti2-dev dicom3tools g++
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
VENV := .venv
PYTHON := $(VENV)/bin/python
BENCH_VENV := .venv-bench
OUT := out

# The CPU levels below this machine's own at which the tests run again
# (NODUS_CPU lowers the kernels' level), so every path a user's CPU takes is
# tested here: on an AVX-512 bf16 CPU, avx512, avx2 and baseline.
CPU_FLAGS := $(shell grep -m1 '^flags' /proc/cpuinfo 2>/dev/null)
LOWER_CPU_LEVELS := $(strip $(if $(filter avx512_bf16,$(CPU_FLAGS)),avx512) \
	$(if $(filter avx512f,$(CPU_FLAGS)),avx2) $(if $(filter avx2,$(CPU_FLAGS)),baseline))

.PHONY: all deps build test test-swift test-c soak test-python test-no-toolchain demo bench bench-sample bench-lora bench-pipeline large-check \
	fuzz fuzz-smoke fuzz-build fuzz-graphs test-sanitize clean

all: build

# Debian packages the build links against: OpenBLAS (GEMM), libpng (the CLI's PNG output),
# libonnx-dev + libprotobuf-dev (reading .onnx files: ONNX 1.12's protobuf classes and checker;
# their runtime packages libonnx1 and libprotobuf32 are what a host of libnodus.so then needs);
# for the CLI only: libdcmtk-dev (DICOM) and libnifti2-dev (NIfTI-1), and dicom3tools (dciodvfy,
# which the medical tests validate DICOM outputs with); g++ (and with it cc), which the C and C++
# examples' Makefiles call.
deps:
	@missing=""; for package in $(APT_PACKAGES); do \
		dpkg -s $$package >/dev/null 2>&1 || missing="$$missing $$package"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		$(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

build: deps
	swift build $(SWIFT_RELEASE_FLAGS)
	ln -sf nodus-cli $(RELEASE)/nodus
	sed -e "s|@PREFIX@|$(CURDIR)|" -e "s|@VERSION@|$$(sed -n 's/^#define NODUS_VERSION_STRING "\(.*\)"/\1/p' include/nodus.h)|" \
		nodus.pc.in > $(RELEASE)/nodus.pc

# The binding's test environment: numpy, pytest, safetensors; pydicom, highdicom and nibabel for
# the medical I/O tests (the nodus[medical] extra); ray for the batch engine's Ray tests (a 240 MB
# wheel, about 15 s to install here). No torch needed.
$(PYTHON): bindings/python/pyproject.toml
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install -q --upgrade pip
	$(PYTHON) -m pip install -q numpy pytest safetensors pydicom==3.0.2 highdicom==0.28.2 nibabel==5.4.2 ray==2.60.0
	touch $(PYTHON)

test: build test-swift test-c test-python test-no-toolchain
	@echo "all test suites passed"

# Swift unit tests: a debug build (XCTest is not in the static SDK), kept small and fast.
test-swift: deps
	swift build --build-tests
	swift test --skip-build --disable-swift-testing
	@for level in $(LOWER_CPU_LEVELS); do \
		echo "== Swift tests again at NODUS_CPU=$$level"; \
		NODUS_CPU=$$level swift test --skip-build --disable-swift-testing || exit 1; done

# The C examples, and the C++ PACS example (libnodus + DCMTK): built, usage and missing-input checks
# here; its pixels against `nodus insert-nodule` in bindings/python/tests/test_cpp_example.py.
test-c: build
	$(MAKE) -C examples/c check
	$(MAKE) -C examples/cpp check

SOAK_CYCLES ?= 10000
soak: build
	$(MAKE) -C examples/c soak SOAK_CYCLES=$(SOAK_CYCLES)

test-python: build $(PYTHON)
	$(PYTHON) -m pytest -q bindings/python/tests
	@for level in $(LOWER_CPU_LEVELS); do \
		echo "== Python tests again at NODUS_CPU=$$level"; \
		NODUS_CPU=$$level $(PYTHON) -m pytest -q bindings/python/tests || exit 1; done

# A C host and Python load libnodus.so with the Swift toolchain hidden, as on a
# machine that never had it.
test-no-toolchain: build $(PYTHON)
	@toolchain=$$(dirname $$(dirname $$(dirname $$(readlink -f $$(command -v swift))))); \
	python=$$(readlink -f $(PYTHON)); \
	echo "hiding $$toolchain"; \
	unshare -m sh -c "mount -t tmpfs none $$toolchain && \
		env -i .build/examples/nodus_info Tests/Fixtures/dit-tiny >/dev/null && \
		env -i PYTHONPATH=bindings/python $(PYTHON) -c 'import nodus; m = nodus.load(\"Tests/Fixtures/dit-tiny\"); print(\"loaded without the toolchain:\", m.kind)'"

# Nodule synthesis on the bundled model (models/nodule-demo, trained by demo/train.py), then the
# nodule-insertion workflow on a synthetic radiograph the demo writes.
demo: build
	$(RELEASE)/nodus demo --model models/nodule-demo --output $(OUT)/demo.png --radiograph $(OUT)/demo-radiograph.png
	$(RELEASE)/nodus insert-nodule models/nodule-demo --image $(OUT)/demo-radiograph.png --center 150,240 \
		--diameter 40 --lora calcified:1 --seed 0 --steps 50 --output-dir $(OUT)

$(BENCH_VENV)/bin/python:
	python3 -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install -q --upgrade pip
	$(BENCH_VENV)/bin/pip install -q torch==2.13.0+cpu diffusers==0.42.1 peft==0.21.2 transformers onnx onnxruntime onnxscript safetensors numpy

bench: build $(BENCH_VENV)/bin/python
	$(BENCH_VENV)/bin/python benchmarks/forward.py --workload all $(ARGS)

bench-sample: build $(BENCH_VENV)/bin/python
	$(BENCH_VENV)/bin/python benchmarks/sample.py

bench-lora: build $(BENCH_VENV)/bin/python
	$(BENCH_VENV)/bin/python benchmarks/lora.py $(ARGS)

# Text to image at SD-1.5 sizes: tokenizer, text encoder, 25 DPM-Solver++ steps, VAE decode, beside diffusers.
bench-pipeline: build $(BENCH_VENV)/bin/python
	$(BENCH_VENV)/bin/python benchmarks/pipeline.py $(ARGS)

large-check: build $(PYTHON) $(BENCH_VENV)/bin/python
	$(BENCH_VENV)/bin/python tests/reference/make_large_references.py /tmp/nodus-large
	NODUS_LARGE_REFERENCES=/tmp/nodus-large $(PYTHON) -m pytest -q bindings/python/tests/test_large.py

# libFuzzer targets, one per parser (Fuzz/<target>/), with AddressSanitizer. Package.swift declares
# them only when NODUS_FUZZ is set, and NODUS_CHECKED keeps Swift's overflow and bounds checks in
# the modules built -Ounchecked. Each is linked alone (libFuzzer brings its own main). A release
# build: it runs about twice as many inputs a second as a debug one.
FUZZ_SCRATCH := .build-fuzz
FUZZ_TARGETS := $(filter-out FuzzSupport,$(notdir $(patsubst %/,%,$(wildcard Fuzz/*/))))
FUZZ_SECONDS ?= 60
FUZZ_SMOKE_RUNS ?= 100000
FUZZ_BUILD_FLAGS := -c release --scratch-path $(FUZZ_SCRATCH) --sanitize fuzzer --sanitize address \
	-Xswiftc -sanitize-coverage=edge,inline-8bit-counters,pc-table,trace-cmp
FUZZ_RUN := python3 Fuzz/run_fuzzers.py --binaries $(FUZZ_SCRATCH)/release --corpus $(FUZZ_SCRATCH)/corpus
# The linker's notes on AddressSanitizer's local symbols say nothing.
QUIET_ASAN_LINK := grep -v "Cannot export local symbol '__asan"

fuzz-build: deps
	@for target in $(FUZZ_TARGETS); do \
		NODUS_FUZZ=1 NODUS_CHECKED=1 swift build $(FUZZ_BUILD_FLAGS) --product fuzz-$$target 2>&1 | $(QUIET_ASAN_LINK); \
		[ $${PIPESTATUS[0]} = 0 ] || exit 1; done
	python3 Fuzz/seed_corpus.py $(FUZZ_SCRATCH)/corpus

fuzz: fuzz-build
	$(FUZZ_RUN) --seconds $(FUZZ_SECONDS) $(FUZZ_TARGETS)

# A fixed seed: on the seed corpora (a fresh clone, as CI) a failure repeats with the same command.
fuzz-smoke: fuzz-build
	$(FUZZ_RUN) --runs $(FUZZ_SMOKE_RUNS) --seed 1 $(FUZZ_TARGETS)

# Random small ONNX graphs through the importer, graph passes and kernels, against onnxruntime.
FUZZ_GRAPHS ?= 2000
fuzz-graphs: build $(BENCH_VENV)/bin/python
	$(BENCH_VENV)/bin/python Fuzz/onnx_graphs.py --graphs $(FUZZ_GRAPHS)

# The Swift tests under AddressSanitizer + UndefinedBehaviorSanitizer, then under ThreadSanitizer
# (every model test splits its work over the cores): debug builds in scratch folders of their own,
# with Swift's checks kept in every module (NODUS_CHECKED). Swift has no UBSan on Linux and traps on
# overflow itself, so UBSan instruments the C and C++ targets. A sanitizer report fails the run; a
# failed allocation returns NULL, as the runtime expects of malloc (allocator_may_return_null). No
# leak check here: XCTest on Linux keeps every test case alive in a reference cycle, which
# LeakSanitizer reports at exit with all they hold (each fuzz target checks its inputs for leaks).
# The two tests that bound the tokenizer's time are skipped: sanitizers slow it past their bounds.
SANITIZE_SKIP := --skip 'testMillionCharacterPromptIsTruncatedQuickly|testWeightedMillionCharacterPromptsStayLinear'
ASAN_FLAGS := --scratch-path .build-sanitize --sanitize address -Xcc -fsanitize=undefined -Xcc -fno-sanitize=vptr
TSAN_FLAGS := --scratch-path .build-tsan --sanitize thread
test-sanitize: deps
	@NODUS_CHECKED=1 swift build --build-tests $(ASAN_FLAGS) 2>&1 | $(QUIET_ASAN_LINK); [ $${PIPESTATUS[0]} = 0 ]
	NODUS_CHECKED=1 ASAN_OPTIONS=allocator_may_return_null=1:detect_leaks=0 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
		swift test --skip-build $(ASAN_FLAGS) --disable-swift-testing $(SANITIZE_SKIP)
	NODUS_CHECKED=1 swift build --build-tests $(TSAN_FLAGS)
	NODUS_CHECKED=1 TSAN_OPTIONS=allocator_may_return_null=1:halt_on_error=1 \
		swift test --skip-build $(TSAN_FLAGS) --disable-swift-testing $(SANITIZE_SKIP)

clean:
	rm -rf .build .build-fuzz .build-sanitize .build-tsan $(OUT)
