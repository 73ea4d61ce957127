#!/usr/bin/env bash
# Installs what the test command needs on a fresh Debian machine: a C
# compiler and make, pkg-config (the Go package finds libshmq with it), Go,
# and the Rust toolchain. Tools already present are
# kept. Only Debian's packages and crates.io are used.
set -euo pipefail

missing=()
command -v cc >/dev/null 2>&1 || missing+=(gcc libc6-dev)
command -v make >/dev/null 2>&1 || missing+=(make)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
command -v go >/dev/null 2>&1 || missing+=(golang-go)
command -v cargo >/dev/null 2>&1 || missing+=(cargo rustc)
command -v ipcs >/dev/null 2>&1 || missing+=(util-linux)

if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing: ${missing[*]}"
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
# The crate needs Rust 1.82 or newer (Debian 12's own cargo is 1.63: too old).
rust_minor=$(rustc --version | awk '{split($2, v, "."); print v[1] * 1000 + v[2]}')
if [ "$rust_minor" -lt 1082 ]; then
    echo "error: $(rustc --version) is too old: shmq needs Rust 1.82 or newer (install it with rustup)" >&2
    exit 1
fi
# nats-server for the bridge's tests (bridge/tests find it on PATH, in
# $(go env GOPATH)/bin, or through NATS_SERVER). Debian's package is 2.9: too old.
if ! command -v nats-server >/dev/null 2>&1 && [ ! -x "$(go env GOPATH)/bin/nats-server" ]; then
    go install github.com/nats-io/nats-server/v2@v2.15.2
fi
cargo --version
go version
cc --version | head -n 1
echo "pkg-config $(pkg-config --version)"
"$(command -v nats-server || echo "$(go env GOPATH)/bin/nats-server")" --version
