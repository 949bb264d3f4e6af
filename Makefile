# Gantry: build, test, images, benchmarks. `make help` lists the targets.
SHELL := /bin/bash
CARGO ?= cargo
MUSL_TARGET := x86_64-unknown-linux-musl
GNU_TARGET := x86_64-unknown-linux-gnu
# The static, size-tuned watchdog that function images copy in.
STATIC_WATCHDOG := target/static/watchdog
# Where cargo builds: CARGO_TARGET_DIR when set, else target/.
TARGET_DIR := $(abspath $(or $(CARGO_TARGET_DIR),target))
WATCHDOG_IMAGE ?= gantry/watchdog:latest

.PHONY: help build test lint fmt fuzz fuzz-ci watchdog-static check-static watchdog-image docker-up check-image base-images runtime-images check-runtime-images run bench bench-watchdog bench-control-plane bench-docker bench-warm bench-tracing-instructions bench-cluster clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-20s %s\n", $$1, $$2}'

build: ## debug build of every crate
	$(CARGO) build --workspace

test: lint check-static ## the whole test suite: fmt, clippy, unit and integration tests, fuzz replay, static build, images
	$(CARGO) test --workspace
	$(MAKE) --no-print-directory fuzz-ci
	$(MAKE) --no-print-directory check-image
	$(MAKE) --no-print-directory check-runtime-images

lint: ## rustfmt and clippy, warnings are errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt: ## format the code
	$(CARGO) fmt --all

fuzz: ## every fuzz target for FUZZ_SECONDS each (default 60); see scripts/fuzz.sh
	scripts/fuzz.sh

fuzz-ci: ## every fuzz target over its corpus, then briefly (FUZZ_SECONDS, default 15, no sanitizer); fails on any crash
	scripts/fuzz.sh --ci

watchdog-static: ## build the static, size-tuned watchdog into target/static/watchdog
	@mkdir -p target/static
	@if rustup target list --installed 2>/dev/null | grep -qx $(MUSL_TARGET) || rustup target add $(MUSL_TARGET); then \
		echo "building the watchdog for $(MUSL_TARGET) (profile min-size)"; \
		$(CARGO) build --profile min-size --target $(MUSL_TARGET) -p gantry-watchdog && \
		cp $(TARGET_DIR)/$(MUSL_TARGET)/min-size/watchdog $(STATIC_WATCHDOG); \
	else \
		echo "the musl target is unavailable: falling back to a +crt-static glibc build"; \
		RUSTFLAGS="-C target-feature=+crt-static -C relocation-model=static" \
			$(CARGO) build --profile min-size --target $(GNU_TARGET) -p gantry-watchdog && \
		cp $(TARGET_DIR)/$(GNU_TARGET)/min-size/watchdog $(STATIC_WATCHDOG); \
	fi
	@ls -l $(STATIC_WATCHDOG) | awk '{print "target/static/watchdog: " $$5 " bytes"}'

check-static: watchdog-static ## the static watchdog is statically linked and runs a STDIO function
	@file $(STATIC_WATCHDOG) | tee /dev/stderr | grep -q 'statically linked'
	@out=$$(EXECUTION_MODE=STDIO WATCHDOG_CMD="python3 examples/python-stdio/handler.py" \
		INVOCATION_PAYLOAD='{"input":"static"}' $(STATIC_WATCHDOG)) && \
		echo "$$out" && grep -q '"success":true' <<<"$$out" && grep -q '"STATIC"' <<<"$$out"

watchdog-image: watchdog-static ## FROM scratch image holding only /watchdog, from the host build (no registry needed)
	docker build --target watchdog-prebuilt -t $(WATCHDOG_IMAGE) .

docker-up: ## start a Docker engine if none answers (installs docker.io on Debian when missing)
	scripts/ensure-docker.sh

check-image: watchdog-static docker-up ## watchdog image: runs, holds only /watchdog, serves a FROM scratch STDIO function
	scripts/check-watchdog-image.sh

base-images: docker-up ## local stand-ins for the public bases (debootstrap + docker import): gantry-base/{python,node,busybox}:local
	scripts/base-images.sh

runtime-images: base-images watchdog-image ## gantry/runtime-{python,node,shell,binary} from runtimes/, on the local bases
	scripts/runtime-images.sh

check-runtime-images: docker-up ## runtime images: build, unit-test the handler servers, run every example (STDIO, HTTP, WARM)
	scripts/check-runtime-images.sh

run: ## start Gantry on its embedded defaults: process runtime, SQLite in ./gantry-data, http://127.0.0.1:8080
	$(CARGO) build -p gantry-watchdog -p gantry-control-plane
	$(TARGET_DIR)/debug/gantry serve

bench: bench-watchdog bench-control-plane bench-docker bench-warm bench-tracing-instructions bench-cluster ## every benchmark

bench-watchdog: watchdog-static ## watchdog size, RSS, WARM proxy and STDIO latency; see BENCHMARKS.md
	WATCHDOG_BIN=$(CURDIR)/$(STATIC_WATCHDOG) $(CARGO) bench -p gantry-watchdog --bench watchdog_bench

bench-control-plane: watchdog-static ## release `gantry serve`: cold start and durable enqueue; see BENCHMARKS.md
	$(CARGO) build --release -p gantry-control-plane
	GANTRY_BIN=$(CURDIR)/target/release/gantry WATCHDOG_BIN=$(CURDIR)/$(STATIC_WATCHDOG) \
		$(CARGO) bench -p gantry-control-plane --bench control_plane_bench

bench-docker: watchdog-static docker-up ## docker runtime cold start against a plain `docker run --rm`; see BENCHMARKS.md
	$(CARGO) build --release -p gantry-control-plane
	GANTRY_BIN=$(CURDIR)/target/release/gantry WATCHDOG_BIN=$(CURDIR)/$(STATIC_WATCHDOG) \
		$(CARGO) bench -p gantry-control-plane --bench docker_bench

bench-warm: watchdog-static ## warm pool: `:invoke` of a warm no-op function against its runtime called directly; see BENCHMARKS.md
	$(CARGO) build --release -p gantry-control-plane
	GANTRY_BIN=$(CURDIR)/target/release/gantry WATCHDOG_BIN=$(CURDIR)/$(STATIC_WATCHDOG) \
		$(CARGO) bench -p gantry-control-plane --bench warm_bench

bench-tracing-instructions: watchdog-static ## instructions `gantry serve` runs per warm call, span export on and off, counted by valgrind; see BENCHMARKS.md
	$(CARGO) build --release -p gantry-control-plane
	@command -v valgrind >/dev/null || { echo "valgrind is needed (Debian: apt-get install valgrind)"; exit 1; }
	runtime=$$($(CARGO) bench -p gantry-control-plane --bench warm_bench --no-run --message-format=json \
		| python3 -c 'import json,sys; print([m["executable"] for m in map(json.loads, sys.stdin) if m.get("executable")][-1])') && \
	python3 scripts/tracing_instructions.py $(TARGET_DIR)/release/gantry $(CURDIR)/$(STATIC_WATCHDOG) "$$runtime"

bench-cluster: watchdog-static ## 1–3 `gantry serve` nodes on one PostgreSQL (the tests' server): enqueue, claim latency, throughput; see BENCHMARKS.md
	$(CARGO) build --release -p gantry-control-plane
	GANTRY_BIN=$(TARGET_DIR)/release/gantry WATCHDOG_BIN=$(CURDIR)/$(STATIC_WATCHDOG) \
		$(CARGO) bench -p gantry-control-plane --bench cluster_bench

clean: ## remove build output
	$(CARGO) clean
