# The two commands a newcomer needs: `make run` and `make test`.
SHELL := /bin/bash
CARGO ?= cargo
# g++: webm-sys (the recorder's muxer, libwebm) is C++ built by the crate.
# GStreamer's RTSP server through Python (tests/rtsp/rtsp_server.py): the camera of tests/tests/rtsp.rs.
# libopus-dev, pkg-config: the Opus encoder of a camera's AAC (crates/media/src/transcode.rs).
APT_PACKAGES := chromium sip-tester kamailio openssl g++ nats-server libopus-dev pkg-config \
	gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly gstreamer1.0-plugins-bad python3-gi
E2E := tests/e2e

.PHONY: run build build-deps console-sdk test deps floors test-rust test-e2e bench bench-build load-calls load-cluster soak overload fmt clippy fuzz fuzz-build cargo-fuzz

## Build and start callgate with its embedded defaults (ws://0.0.0.0:8080; REST API, EchoApp and
## /metrics on http://127.0.0.1:8081, loopback only: README.md "Security").
run: console-sdk build-deps
	$(CARGO) run --release -p callgate-server --bin callgate

## The one system library the server links: libopus (the Opus encoder of an RTSP camera's AAC,
## crates/media/src/transcode.rs), found with pkg-config. Installed (Debian) only when missing.
build-deps:
	@pkg-config --exists opus 2>/dev/null || { \
		echo "installing libopus-dev pkg-config (the server links libopus)"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
		$$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q libopus-dev pkg-config; }

## The official SDK for the console at / (console/package-lock.json pins it; build.rs embeds it).
## Only when the lock changed (npm ci rewrites node_modules, which makes the server rebuild).
## Without npm callgate still builds; the console page then says how to get the SDK.
console-sdk: console/node_modules/.package-lock.json
console/node_modules/.package-lock.json: console/package-lock.json
	@command -v npm >/dev/null && npm ci --prefix console --no-audit --no-fund || echo "npm not found: the console at / will run without the SDK (npm ci --prefix console)"

build: console-sdk build-deps
	$(CARGO) build -p callgate-server

## Install what the tests need, then run every test.
test: deps floors clippy test-rust bench-build fuzz-build test-e2e

## System packages (Debian), the e2e npm project and the Python example backend's packages
## (examples/python-backend/requirements.txt, pinned; PIP_FIND_LINKS is honoured). Idempotent; apt
## only runs when something is missing.
deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
		$$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q $$missing; \
	fi
	cd $(E2E) && npm ci --no-audit --no-fund
	npm ci --prefix console --no-audit --no-fund
	@command -v node >/dev/null || { echo "node (Node.js 20) is needed by tests/e2e and examples/node-backend"; exit 1; }
	@python3 -m pip --version >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
		$$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q python3-pip; }
	PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore -r examples/python-backend/requirements.txt

## The server crate's floors point one way (docs/ARCHITECTURE.md "Floors"): fails on a module
## that names a higher floor or a sibling of its own floor, and on a file placed on no floor.
floors:
	python3 scripts/floors.py

test-rust:
	$(CARGO) test --workspace --all-targets --exclude callgate-benches
	$(CARGO) test --workspace --doc

## Benches are compiled by `make test` (they must keep building); run them with `make bench`.
bench-build:
	$(CARGO) bench -p callgate-benches --no-run

bench:
	$(CARGO) bench -p callgate-benches

## Call load (issue 5): REST-started calls/s through the release binary to a sipp UAS, hooks on
## and off, beside sipp -> sipp. Bounded: LOAD_RATE calls/s x LOAD_SECONDS per phase.
LOAD_RATE ?= 1000
LOAD_SECONDS ?= 20
load-calls:
	$(CARGO) build --release -p callgate-server --bin callgate
	CALLGATE_LOAD_RATE=$(LOAD_RATE) CALLGATE_LOAD_SECONDS=$(LOAD_SECONDS) $(CARGO) bench -p callgate-benches --bench call_load

## Cluster cost (issue 12; docs/benchmarks.md "Cluster cost"): one node vs three on one nats-server.
load-cluster:
	$(CARGO) build --release -p callgate-server --bin callgate
	$(CARGO) bench -p callgate-benches --bench cluster_load

## Fault soak (issue 11 item 4; docs/benchmarks.md "Fault soak"): SOAK_OPS mixed operations (after
## 4,000 of warm-up) against the release binary with 30 % of the hooks broken by a fault-injecting
## backend; fails on any outcome the decision table does not allow, on leaks or RSS growth.
## Bounded: SOAK_SECONDS for the operations, 60 s more for the drains (about 1-2 min here).
SOAK_OPS ?= 10000
SOAK_SECONDS ?= 300
soak:
	$(CARGO) build --release -p callgate-server --bin callgate
	CALLGATE_SOAK_OPS=$(SOAK_OPS) CALLGATE_SOAK_SECONDS=$(SOAK_SECONDS) $(CARGO) bench -p callgate-benches --bench soak

## Overload (issue 11 item 4; docs/benchmarks.md "Overload"): unloaded p99 of /call/startup and of
## WebSocket connect+login, then a 10x over-capacity flood of each beside a steady in-capacity
## stream (3 alternating rounds); refusals, p99 ratios, no crash. Bounded: about 2.5 min.
overload:
	$(CARGO) build --release -p callgate-server --bin callgate
	$(CARGO) bench -p callgate-benches --bench overload

## Fuzzing (docs/fuzzing.md): `make fuzz FUZZ_TARGET=<target> FUZZ_SECONDS=<n>` runs one target
## (sip_codec by default) from its seeds; `make fuzz-build` builds every target. Installs cargo-fuzz
## when missing; its nightly-only flags run on the stable toolchain through RUSTC_BOOTSTRAP.
FUZZ_TARGETS := sip_codec sip_ua client_frames rest_api
FUZZ_TARGET ?= sip_codec
FUZZ_SECONDS ?= 60
FUZZ_FLAGS_sip_codec := -dict=fuzz/sip.dict -max_len=4096
FUZZ_FLAGS_sip_ua := -dict=fuzz/sip_ua.dict -max_len=4096
FUZZ_FLAGS_client_frames := -dict=fuzz/json.dict -max_len=4096
FUZZ_FLAGS_rest_api := -dict=fuzz/rest_api.dict -max_len=4096
cargo-fuzz:
	@command -v cargo-fuzz >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked

## The fuzz targets must keep building: `make test` builds them all (without running them).
fuzz-build: cargo-fuzz
	RUSTC_BOOTSTRAP=1 $(CARGO) fuzz build --fuzz-dir fuzz

fuzz: cargo-fuzz
	@case " $(FUZZ_TARGETS) " in *" $(FUZZ_TARGET) "*) ;; *) echo "FUZZ_TARGET must be one of: $(FUZZ_TARGETS)"; exit 2;; esac
	mkdir -p fuzz/corpus/$(FUZZ_TARGET)
	cp fuzz/seeds/$(FUZZ_TARGET)/* fuzz/corpus/$(FUZZ_TARGET)/
	RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run $(FUZZ_TARGET) --fuzz-dir fuzz -- \
		-max_total_time=$(FUZZ_SECONDS) $(FUZZ_FLAGS_$(FUZZ_TARGET))

test-e2e: build
	cd $(E2E) && CALLGATE_BIN=$(CURDIR)/target/debug/callgate npm test

fmt:
	$(CARGO) fmt --all

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings
