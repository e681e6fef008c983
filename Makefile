# tagloan: the two commands a new user runs are `make run` and `make test`.
# `make deps` installs what they need; it is idempotent.

CARGO ?= cargo
SHELL := /bin/bash
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all deps build run test test-rust platforms lint fmt clean

all: build

# Rust comes from rustup (the machine's toolchain); the lint components are
# added if missing.
# dtc (device-tree-compiler) builds the platform blobs.
APT_PACKAGES := device-tree-compiler

deps:
	@command -v $(CARGO) >/dev/null || { echo "deps: cargo not found; install Rust with rustup" >&2; exit 1; }
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "deps: installing$$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi
	@rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
	@rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
	@echo "deps: ok"

build:
	$(CARGO) build --workspace

# The main job today: the pool core lending tag storage and recalling it on
# the QEMU virt layout, in the simulated machine.
run:
	$(CARGO) run --release -q -p tagloan

# Every test: unit, behaviour and the property suite (10,000 sequences).
# TAGLOAN_CASES and TAGLOAN_SEED change the property run.
test: platforms test-rust

# Platform blobs, built from platforms/*.dts (never committed).
DTS := $(wildcard platforms/*.dts platforms/invalid/*.dts)
DTB := $(patsubst platforms/%.dts,target/platforms/%.dtb,$(DTS))

platforms: $(DTB)

target/platforms/%.dtb: platforms/%.dts
	@mkdir -p $(dir $@)
	dtc -q -I dts -O dtb -o $@ $<

# The last line sums every test binary's result, for a reader and for CI.
test-rust:
	@mkdir -p target
	set -o pipefail; $(CARGO) test --workspace 2>&1 | tee target/test-rust.log
	@awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($$(i+1) ~ /^passed/) p += $$i; if ($$(i+1) ~ /^failed/) f += $$i } } \
	     END { printf "rust tests: %d passed, %d failed\n", p, f }' target/test-rust.log

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
