# eddy - the two set-up commands and a few conveniences around CMake.
#   make demo    install the packages the embedded demo needs, build, run it
#   make check   install every package, build with sanitizers, run all tests,
#                build the SQLite-only variant (no transport libraries), and
#                run each fuzz target briefly
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

.PHONY: all deps deps-demo build demo check check-asan check-tsan check-lean check-fuzz \
        fuzz fuzz-build bench install clean

all: build

deps:
	@bash scripts/install-deps.sh full

deps-demo:
	@bash scripts/install-deps.sh demo

build: deps
	$(CMAKE) -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_INSTALL_PREFIX=$(PREFIX) -DEDDY_BUILD_TESTS=ON $(WERROR)
	$(CMAKE) --build build -j $(JOBS)

# The embedded demo needs the core only: no tests, and the transports whose
# libraries are installed (all of them after a make check; none on a machine
# that only ran make demo).
demo: deps-demo
	$(CMAKE) -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_INSTALL_PREFIX=$(PREFIX) -DEDDY_BUILD_TESTS=OFF $(WERROR)
	$(CMAKE) --build build -j $(JOBS) --target eddy_cli
	./build/eddy demo

# Address + undefined-behaviour sanitizers over every test, then the
# concurrency tests again under ThreadSanitizer, then the SQLite-only build,
# then each fuzz target briefly.
check: check-asan check-tsan check-lean check-fuzz

check-asan: deps
	$(CMAKE) -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DEDDY_SANITIZE=address,undefined $(WERROR)
	$(CMAKE) --build build-asan -j $(JOBS)
	cd build-asan && $(CTEST) --output-on-failure -j $(JOBS)

check-tsan: deps
	$(CMAKE) -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEDDY_SANITIZE=thread -DEDDY_BUILD_BENCH=OFF -DEDDY_BUILD_EXAMPLES=OFF $(WERROR)
	$(CMAKE) --build build-tsan -j $(JOBS)
	cd build-tsan && $(CTEST) --output-on-failure -L concurrency

# A build with every transport turned off, as on a machine without hiredis,
# librdkafka and libnats: it must configure, build, link none of them, run
# the embedded demo, and say which transports it lacks.
check-lean: deps
	$(CMAKE) -S . -B build-lean -DCMAKE_BUILD_TYPE=Debug -DEDDY_WITH_REDIS=OFF -DEDDY_WITH_KAFKA=OFF -DEDDY_WITH_NATS=OFF -DEDDY_BUILD_TESTS=OFF -DEDDY_BUILD_BENCH=OFF $(WERROR)
	$(CMAKE) --build build-lean -j $(JOBS)
	bash scripts/check-lean.sh build-lean

# libFuzzer targets (fuzz/), built with clang under ASan+UBSan.
fuzz-build: deps
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
	rm -rf build build-asan build-tsan build-lean build-fuzz
