# tagloan: the two commands a new user runs are `make run` and `make test`.
# `make deps` installs what they need; it is idempotent.

CARGO ?= cargo
SHELL := /bin/bash
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all deps build run map bench check assure test test-rust test-mte test-assure test-fuzz test-sel4 test-sel4-mte test-sel4test test-qemu-mte sdk-mte qemu-mte cross image qemu platforms lint fmt clean

all: build

# Rust comes from rustup (the machine's toolchain); the lint components are
# added if missing.
# dtc (device-tree-compiler) builds the platform blobs; the aarch64 cross
# gcc and qemu-user build and run the hardware MTE test; qemu-system-arm
# boots the seL4 image and libclang-dev serves rust-sel4's bindgen; cmake,
# ninja, xmllint and patch build the patched seL4 SDK (make sdk-mte); spin
# checks the fault protocol's model (make test-assure); glib, libfdt, zlib,
# pkg-config, python3-venv and bzip2 build the carve-out QEMU (make qemu-mte);
# cmake, ninja, the aarch64 C and C++ compilers, device-tree-compiler,
# libxml2-utils, cpio and protobuf-compiler build sel4test (make test-sel4test).
APT_PACKAGES := device-tree-compiler gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user binutils \
	qemu-system-arm libclang-dev cmake ninja-build libxml2-utils patch spin \
	libglib2.0-dev libfdt-dev zlib1g-dev pkg-config python3-venv bzip2 \
	g++-aarch64-linux-gnu cpio protobuf-compiler
RUST_TARGETS := aarch64-unknown-linux-gnu aarch64-unknown-none

deps:
	@command -v $(CARGO) >/dev/null || { echo "deps: cargo not found; install Rust with rustup" >&2; exit 1; }
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "deps: installing$$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi
	@# MTE on seL4 needs QEMU 8 or later: 7.2 (Debian 12's) finds a granule's
	@# tag without the offset in the page in system emulation, so one STG
	@# changes the tag of every other granule of the page. Debian 12 has
	@# QEMU 10 in bookworm-backports.
	@v=$$(qemu-system-aarch64 --version 2>/dev/null | sed -n 's/^QEMU emulator version \([0-9]*\)\..*/\1/p'); \
	if [ "$${v:-0}" -lt 8 ] && grep -qx 'VERSION_CODENAME=bookworm' /etc/os-release 2>/dev/null; then \
		echo "deps: qemu-system-arm $${v:-none} keeps one MTE tag pair per page; installing QEMU from bookworm-backports"; \
		echo "deb http://deb.debian.org/debian bookworm-backports main" | $(SUDO) tee /etc/apt/sources.list.d/tagloan-bookworm-backports.list >/dev/null; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq -t bookworm-backports qemu-system-arm; \
	fi
	@for t in $(RUST_TARGETS); do rustup target list --installed 2>/dev/null | grep -qx $$t || rustup target add $$t; done
	@rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
	@rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
	@# The fuzz targets (make test-fuzz).
	@$(CARGO) fuzz --version >/dev/null 2>&1 || $(CARGO) install -q --locked cargo-fuzz
	@echo "deps: ok"

build:
	$(CARGO) build --workspace

# The system of system.xml in the simulator: the default scenario fills data
# memory, lends tag storage, and recalls it with a tagged burst.
run: platforms
	$(CARGO) run --release -q -p tagloan -- run

# A picture of physical memory where lending peaked.
map: platforms
	$(CARGO) run --release -q -p tagloan -- map --out target/tagloan-map.png

# Validate system.xml, its client table and its device tree together.
check: platforms
	$(CARGO) run --release -q -p tagloan -- check system.xml

# tagloan bench (every row with its baseline, about 2 s), then the full
# criterion suite of bench/ (its own workspace: make test never builds it).
bench: platforms
	$(CARGO) run --release -q -p tagloan -- bench
	cd bench && $(CARGO) bench

# Every test: unit, behaviour, the property suite (10,000 sequences), the
# protocol decode campaign, the simulator's kernel rules, the system
# scenarios, the command line, the hardware MTE test, the cross build, and
# the seL4 boot test (SKIPPED without MICROKIT_SDK), and MTE on seL4 with
# our kernel patches (SKIPPED without the seL4 and Microkit sources).
# TAGLOAN_CASES and TAGLOAN_SEED change the property run.
test: platforms test-mte cross test-rust test-assure test-fuzz test-sel4 test-qemu-mte test-sel4-mte test-sel4test

# The hardware MTE test: real IRG/STG/LDG/DC GZVA under qemu-aarch64 -cpu max.
# Where the cross tools are missing it says SKIPPED; TAGLOAN_REQUIRE_MTE=1
# (set by CI) turns that into a failure.
MTE_TOOLS := aarch64-linux-gnu-gcc qemu-aarch64
test-mte:
	@missing=""; for t in $(MTE_TOOLS); do command -v $$t >/dev/null || missing="$$missing $$t"; done; \
	rustup target list --installed 2>/dev/null | grep -qx aarch64-unknown-linux-gnu || missing="$$missing rust-target-aarch64-unknown-linux-gnu"; \
	if [ -n "$$missing" ]; then \
		if [ -n "$$TAGLOAN_REQUIRE_MTE" ]; then echo "mte-hw: FAILED: missing$$missing (run make deps)" >&2; exit 1; fi; \
		echo "mte-hw: SKIPPED: missing$$missing; run make deps as root to install them"; exit 0; \
	fi; \
	$(CARGO) run -q -p tagloan-mte-hw --target aarch64-unknown-linux-gnu

# The fault protocol's Promela model (assure/fault_protocol.pml), checked
# with spin for deadlock, its assertions and its LTL property, and three
# broken copies that must fail. SKIPPED without spin;
# TAGLOAN_REQUIRE_SPIN=1 (set by CI) turns that into a failure.
test-assure:
	@mkdir -p target
	set -o pipefail; tests/assure/spin-test | tee target/spin.log

# One table of what every checker checked, from make test's logs (runs a
# checker whose log is missing).
assure:
	tools/assure

# The cargo fuzz targets (fuzz/), each for FUZZ_SECONDS (30) from its seeds
# in fuzz/corpus/. SKIPPED without cargo-fuzz; TAGLOAN_REQUIRE_FUZZ=1 (set by
# CI) turns that into a failure.
test-fuzz:
	@mkdir -p target
	set -o pipefail; tests/fuzz/fuzz-test | tee target/fuzz.log

# Every PD's logic builds no_std for the seL4 target (aarch64-unknown-none),
# without rust-sel4: what a machine with no seL4 pieces can check.
PDS := memory_server fault_handler client_tagged_heap client_bulk client_lazy client_rogue
cross:
	$(CARGO) build -q $(addprefix -p ,$(PDS)) --target aarch64-unknown-none
	@echo "cross: $(words $(PDS)) PD crates build for aarch64-unknown-none"

# The seL4 image of system.xml (sel4/ on rust-sel4, packed by the stock
# microkit tool of MICROKIT_SDK), and a boot of it under QEMU that ends when
# the system prints `tagloan: run complete`.
MICROKIT_BOARD ?= qemu_virt_aarch64
MICROKIT_CONFIG ?= debug
export MICROKIT_BOARD MICROKIT_CONFIG
image: platforms
	tools/sel4/image

qemu:
	tools/sel4/qemu

# Builds the image, boots it, checks the serial log. SKIPPED without
# MICROKIT_SDK; TAGLOAN_REQUIRE_SEL4=1 (set by CI when the SDK is there)
# turns that into a failure.
test-sel4: platforms
	tests/sel4/boot-test

# seL4's own test suite (sel4test 16.0.0) on our kernel patch, three
# configurations: the option off, on without MTE (cortex-a53), on with MTE;
# with our MTE tests. SEL4TEST_SRC and SEL4_SRC (default ../shared/sel4/src/);
# SKIPPED without them, a failure with TAGLOAN_REQUIRE_SEL4=1.
test-sel4test:
	tests/sel4/sel4test

# A Microkit SDK whose kernel gives user threads MTE: seL4 16.0.0 and
# Microkit 2.3.0 (SEL4_SRC, MICROKIT_SRC: tarballs or directories; default
# ../shared/sel4/src/) with sel4/patches/*-mte.patch, built by Microkit's
# build_sdk.py for qemu_virt_aarch64_el1 into build/sdk-mte/. Then:
#   MICROKIT_SDK=$PWD/build/sdk-mte/microkit-sdk-2.3.0 MICROKIT_BOARD=qemu_virt_aarch64_el1 make image qemu
sdk-mte:
	tools/sel4/sdk-mte

# Builds the patched SDK and the image with it, boots it on the carve-out
# QEMU (make qemu-mte), checks the log: real tag checks on seL4, with the
# tags physically in the carve-out; then images with injected bugs, each of
# which the system must detect there (and, for contrast, on Debian's QEMU).
# SKIPPED without MICROKIT_SDK or the sources.
test-sel4-mte: platforms
	tests/sel4/mte-test

# The carve-out QEMU: qemu-system-aarch64 10.0.2 with our patch
# (sel4/patches/qemu-mte-tag-storage.patch), whose virt machine keeps the
# MTE tags of the pool's data in the carve-out RAM the device tree names.
# Built from QEMU_SRC (default ../shared/qemu/qemu_10.0.2+ds.orig.tar.xz;
# elsewhere the upstream qemu-10.0.2.tar.xz) into
# $${XDG_CACHE_HOME:-~/.cache}/tagloan/qemu-<key>/, once per source, patch
# and options; never over the system's QEMU. Then, to boot the image on it:
#   QEMU_CARVEOUT=1 MICROKIT_BOARD=qemu_virt_aarch64_el1 make qemu
qemu-mte:
	@tools/sel4/qemu-mte; status=$$?; \
	if [ $$status = 2 ] && [ -n "$$TAGLOAN_REQUIRE_SEL4" ]; then echo "qemu-mte: FAILED: the QEMU source is missing" >&2; exit 1; fi; \
	[ $$status = 2 ] && exit 0; exit $$status

# The carve-out QEMU's own test: it builds (or reuses) it, checks that the
# cache is reused, that the property the platform's device tree gives puts
# the alias where the tags of the pool's data are looked up, and that every
# wrong property and a missing source are refused with a clear message.
# SKIPPED without the source; TAGLOAN_REQUIRE_SEL4=1 makes that a failure.
test-qemu-mte: platforms
	tests/sel4/qemu-mte-test

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
	set -o pipefail; $(CARGO) test -p tagloan-pool --features inject-release-with-hold --test teeth 2>&1 | tee -a target/test-rust.log
	set -o pipefail; $(CARGO) test -p tagloan-pool --features inject-stuck-evacuation-cursor --test teeth 2>&1 | tee -a target/test-rust.log
	@# Injected bugs the model checker must find (crates/pool/tests/model.rs).
	set -o pipefail; for bug in inject-stale-tags inject-tag-block-offset inject-skip-tag-storage-clean; do \
		$(CARGO) test -p tagloan-pool --features $$bug --test properties 2>&1 | tee -a target/test-rust.log || exit 1; done
	set -o pipefail; for bug in inject-skip-recall inject-quota-leak inject-refusal-side-effect inject-forget-block-ref; do \
		$(CARGO) test -p tagloan-pool --features $$bug --test model 2>&1 | tee -a target/test-rust.log || exit 1; done
	@awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($$(i+1) ~ /^passed/) p += $$i; if ($$(i+1) ~ /^failed/) f += $$i } } \
	     END { printf "tests: %d passed, %d failed\n", p, f }' target/test-rust.log

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p tagloan-mte -p tagloan-mte-hw --target aarch64-unknown-linux-gnu --all-targets -- -D warnings
	cd sel4 && $(CARGO) fmt --all --check
	cd fuzz && $(CARGO) fmt --all --check
	cd bench && $(CARGO) fmt --all --check
	rustfmt --edition 2021 --check sel4/initialiser/src/main.rs
	@if [ -n "$$MICROKIT_SDK" ]; then \
		cd sel4 && SEL4_INCLUDE_DIRS=$$MICROKIT_SDK/board/$(MICROKIT_BOARD)/$(MICROKIT_CONFIG)/include RUSTC_BOOTSTRAP=1 \
			LIBCLANG_PATH=$${LIBCLANG_PATH:-$$(dirname $$(ls /usr/lib/llvm-*/lib/libclang.so | tail -n 1))} \
			$(CARGO) clippy --release --target aarch64-unknown-none -- -D warnings; \
	else echo "lint: the sel4/ workspace's clippy is SKIPPED: MICROKIT_SDK is not set"; fi

fmt:
	$(CARGO) fmt --all
	cd sel4 && $(CARGO) fmt --all

clean:
	$(CARGO) clean
	rm -rf build sel4/target fuzz/target
