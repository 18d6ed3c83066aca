# eddy - the two set-up commands and a few conveniences around CMake.
#   make demo    install missing Debian packages, build, run the main job
#   make check   install missing packages, build with sanitizers, run all tests
#   make fuzz    run every libFuzzer target for FUZZ_SECONDS (default 60) each
# Everything else (install, bench) is plain CMake underneath.

JOBS   ?= $(shell nproc 2>/dev/null || echo 2)
FUZZ_SECONDS ?= 60
# make check runs each fuzz target this long: a smoke test of the targets
# and a few hundred thousand inputs, not a fuzzing campaign.
CHECK_FUZZ_SECONDS ?= 10
WERROR := $(if $(CI),-DEDDY_WERROR=ON,)
CMAKE  ?= cmake
CTEST  ?= ctest
PREFIX ?= /usr/local

.PHONY: all deps deps-test build demo check check-asan check-tsan check-fuzz fuzz fuzz-build \
        bench install clean

all: build

deps:
	@bash scripts/install-deps.sh

deps-test:
	@bash scripts/install-deps.sh --test

build: deps
	$(CMAKE) -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_INSTALL_PREFIX=$(PREFIX) $(WERROR)
	$(CMAKE) --build build -j $(JOBS)

demo: build
	./build/eddy demo

# Address + undefined-behaviour sanitizers over every test, then the
# concurrency tests again under ThreadSanitizer, then each fuzz target briefly.
check: check-asan check-tsan check-fuzz

check-asan: deps-test
	$(CMAKE) -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DEDDY_SANITIZE=address,undefined $(WERROR)
	$(CMAKE) --build build-asan -j $(JOBS)
	cd build-asan && $(CTEST) --output-on-failure -j $(JOBS)

check-tsan: deps-test
	$(CMAKE) -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEDDY_SANITIZE=thread -DEDDY_BUILD_BENCH=OFF -DEDDY_BUILD_EXAMPLES=OFF $(WERROR)
	$(CMAKE) --build build-tsan -j $(JOBS)
	cd build-tsan && $(CTEST) --output-on-failure -L concurrency

# libFuzzer targets (fuzz/), built with clang under ASan+UBSan.
fuzz-build: deps-test
	$(CMAKE) -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	    -DEDDY_FUZZ=ON -DEDDY_SANITIZE=address,undefined -DEDDY_BUILD_TESTS=OFF \
	    -DEDDY_BUILD_BENCH=OFF -DEDDY_BUILD_EXAMPLES=OFF $(WERROR)
	$(CMAKE) --build build-fuzz -j $(JOBS) --target fuzz

fuzz: fuzz-build
	bash scripts/fuzz.sh build-fuzz $(FUZZ_SECONDS)

check-fuzz: fuzz-build
	bash scripts/fuzz.sh build-fuzz $(CHECK_FUZZ_SECONDS)

bench: build
	./build/bench/bus

install: build
	$(CMAKE) --install build

clean:
	rm -rf build build-asan build-tsan build-fuzz
