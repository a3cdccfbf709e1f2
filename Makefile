# Thin front for Meson: `make run` and `make test` are the two commands in the README.
BUILD ?= build
MESON_OPTS ?=

.PHONY: all build deps run test bench fuzz chaos clean

all: build

deps:
	@scripts/install-deps.sh

$(BUILD)/build.ninja:
	@scripts/install-deps.sh
	meson setup $(BUILD) $(MESON_OPTS)

build: $(BUILD)/build.ninja
	ninja -C $(BUILD)

run:
	@scripts/run.sh

test:
	@scripts/run-tests.sh

bench:
	@scripts/run-bench.sh

fuzz:
	@scripts/run-fuzz.sh

chaos:
	@scripts/run-chaos.sh

clean:
	rm -rf $(BUILD) build-asan build-fuzz
