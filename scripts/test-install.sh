#!/usr/bin/env bash
# The packaging bars, as the test command's last build phase:
#
#  1. scripts/install.sh into a fresh temporary prefix; a C program built with
#     `pkg-config --cflags --libs shmq` alone (and one linked with libshmq.a)
#     and a Go program (its own module, `replace shmq.dev/shmq` => a copy of
#     ffi/go,
#     PKG_CONFIG_PATH=$prefix/lib/pkgconfig and no CGO_ variables) build from
#     the installed files and run without LD_LIBRARY_PATH: each creates a
#     queue, sends one message and receives it back.
#  2. A throwaway Rust crate that depends on `shmq = { path = <repo> }` builds
#     offline with no cdylib or staticlib output and no cbindgen compiled or
#     run (checked in its target/).
#
#   scripts/test-install.sh                  profile release
#   scripts/test-install.sh test-release     what the test command built
#
# Every step has a time limit; the temporary directory (prefix, programs,
# crate, its target/) and any queue left by a failed program are removed on
# exit.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
profile=${1:-release}

for tool in cargo cc go pkg-config timeout readelf; do
    command -v "$tool" >/dev/null 2>&1 || {
        echo "test-install: '$tool' not found (scripts/install-deps.sh installs it)" >&2
        exit 1
    }
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/shmq-install.XXXXXX")
name="shmq-install-$$"
cleanup() {
    rm -f /dev/shm/"$name"-* 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT

fail() {
    echo "test-install: FAILED: $*" >&2
    exit 1
}

# Nothing from the environment may help the builds find the library.
unset LD_LIBRARY_PATH LIBRARY_PATH C_INCLUDE_PATH CPATH \
    CGO_CFLAGS CGO_CPPFLAGS CGO_LDFLAGS CGO_CXXFLAGS PKG_CONFIG_PATH PKG_CONFIG_LIBDIR

# --- 1. a fresh prefix ----------------------------------------------------
prefix=$tmp/prefix
echo "-- install into $prefix"
# The test command has just built everything in its profile: install that
# build. (Building `-p shmq-capi` alone would rebuild the engine, because the
# workspace build unifies features that the C library alone does not ask for.)
no_build=()
[ "$profile" = test-release ] && no_build=(--no-build)
timeout 600 "$root/scripts/install.sh" --profile "$profile" --prefix "$prefix" "${no_build[@]}" >/dev/null
for f in lib/libshmq.so lib/libshmq.a include/shmq.h lib/pkgconfig/shmq.pc; do
    [ -f "$prefix/$f" ] || fail "install.sh did not install $f"
done
pc() { PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config "$@" shmq; }
[ "$(pc --modversion)" = "$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -n 1)" ] ||
    fail "pkg-config --modversion shmq says '$(pc --modversion)'"

# The program links the library that $prefix holds, not the one in target/.
uses_prefix_lib() {
    local lib
    lib=$(ldd "$1" | awk '$1 == "libshmq.so" {print $3}')
    [ "$lib" = "$prefix/lib/libshmq.so" ] || fail "$1 loads libshmq.so from '${lib:-nowhere}', not $prefix/lib"
}

mkdir -p "$tmp/c"
cat >"$tmp/c/hello.c" <<'EOF'
#include <stdio.h>
#include <string.h>
#include <shmq.h>

/* Creates the queue named by argv[1], sends one message and receives it. */
int main(int argc, char **argv) {
    if (argc != 2) return 2;
    shmq_queue *q = NULL;
    if (shmq_queue_create(argv[1], 64, 16, 0600, 0, &q) != SHMQ_OK) {
        fprintf(stderr, "create %s: %s\n", argv[1], shmq_last_error());
        return 1;
    }
    int rc = 1;
    uint8_t buf[64];
    size_t n = 0;
    if (shmq_queue_enqueue_try(q, (const uint8_t *)"installed", 9) != SHMQ_OK)
        fprintf(stderr, "enqueue: %s\n", shmq_last_error());
    else if (shmq_queue_dequeue_try(q, buf, sizeof buf, &n) != SHMQ_OK)
        fprintf(stderr, "dequeue: %s\n", shmq_last_error());
    else if (n != 9 || memcmp(buf, "installed", 9) != 0)
        fprintf(stderr, "received %zu bytes, not the message sent\n", n);
    else {
        printf("received %.*s (library %s)\n", (int)n, (const char *)buf, shmq_version());
        rc = 0;
    }
    shmq_queue_unlink(q);
    shmq_queue_free(q);
    return rc;
}
EOF

echo "-- C, shared: cc hello.c \$(pkg-config --cflags --libs shmq)"
# shellcheck disable=SC2046 # pkg-config's words are separate arguments
timeout 120 cc -std=c11 -Wall -Wextra -Werror "$tmp/c/hello.c" -o "$tmp/c/hello" $(pc --cflags --libs) ||
    fail "the C program does not build from the installed files"
uses_prefix_lib "$tmp/c/hello"
timeout 30 "$tmp/c/hello" "posix:$name-c" || fail "the C program (shared) did not round-trip a message"

echo "-- C, static: cc hello.c \$(pkg-config --cflags shmq) \$libdir/libshmq.a \$(pkg-config --static --libs-only-l shmq)"
libdir=$(pc --variable=libdir)
# shellcheck disable=SC2046
timeout 120 cc -std=c11 -Wall -Wextra -Werror "$tmp/c/hello.c" -o "$tmp/c/hello_static" \
    $(pc --cflags) "$libdir/libshmq.a" $(pc --static --libs-only-l | sed 's/-lshmq\b//') ||
    fail "the C program does not link statically from the installed files"
! readelf -d "$tmp/c/hello_static" | grep -q 'libshmq' || fail "the static program still needs libshmq.so"
timeout 30 "$tmp/c/hello_static" "posix:$name-s" || fail "the C program (static) did not round-trip a message"

echo "-- Go: a module with replace shmq.dev/shmq => a copy of ffi/go, PKG_CONFIG_PATH only"
mkdir -p "$tmp/go"
# A copy of the package in a fresh directory, as a user's checkout would be.
# (It also keeps Go's build cache from reusing the package as built against
# another library: the cache keys on the package's directory and CGO_
# variables, not on pkg-config's output, golang/go#24544.)
cp -R "$root/ffi/go" "$tmp/shmq-go"
cat >"$tmp/go/go.mod" <<EOF
module example.com/hello

go 1.19

require shmq.dev/shmq v0.0.0

replace shmq.dev/shmq => $tmp/shmq-go
EOF
cat >"$tmp/go/main.go" <<'EOF'
// Creates the queue named by os.Args[1], sends one message and receives it.
package main

import (
	"fmt"
	"os"

	"shmq.dev/shmq"
)

func main() {
	q, err := shmq.CreateAt(shmq.Posix(os.Args[1]), shmq.WithSlotSize(64), shmq.WithCapacity(16))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer q.Delete()
	defer q.Close()
	if err := q.TryEnqueue([]byte("installed")); err != nil {
		fmt.Fprintln(os.Stderr, "enqueue:", err)
		os.Exit(1)
	}
	buf := make([]byte, 64)
	n, err := q.TryDequeue(buf)
	if err != nil || string(buf[:n]) != "installed" {
		fmt.Fprintf(os.Stderr, "dequeue: %q, %v\n", buf[:n], err)
		os.Exit(1)
	}
	fmt.Printf("received %s\n", buf[:n])
}
EOF
(cd "$tmp/go" && PKG_CONFIG_PATH="$prefix/lib/pkgconfig" GOFLAGS=-mod=mod GOPROXY=off \
    timeout 600 go build -o hello .) || fail "the Go program does not build from the installed files"
uses_prefix_lib "$tmp/go/hello"
timeout 30 "$tmp/go/hello" "$name-go" || fail "the Go program did not round-trip a message"

# --- 2. a Rust dependent builds only the rlib --------------------------------
echo "-- Rust: a crate depending on shmq = { path = \"$root\" } (cargo build --offline)"
mkdir -p "$tmp/dep/src"
cat >"$tmp/dep/Cargo.toml" <<EOF
[package]
name = "shmq-dependent"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
shmq = { path = "$root" }

[workspace]
EOF
cat >"$tmp/dep/src/main.rs" <<'EOF'
fn main() {
    let t: shmq::Target = "posix:dependent".parse().expect("a POSIX target");
    assert_eq!(t, shmq::Target::Posix("dependent".into()));
    println!("{t}");
}
EOF
# The repository's lock file pins the same libc, already in the local cache.
cp "$root/Cargo.lock" "$tmp/dep/Cargo.lock"
(cd "$tmp/dep" && CARGO_TARGET_DIR="$tmp/dep/target" timeout 600 cargo build --offline --quiet) ||
    fail "a crate depending on shmq does not build offline"
[ "$("$tmp/dep/target/debug/shmq-dependent")" = "posix:dependent" ] || fail "the dependent crate does not run"
ls "$tmp/dep/target/debug/deps"/libshmq-*.rlib >/dev/null 2>&1 || fail "no shmq rlib in the dependent's target/"
found=$(find "$tmp/dep/target" \( -name 'libshmq*.so' -o -name 'libshmq*.a' -o -name '*cbindgen*' \
    -o -name 'shmq-capi*' -o -name 'shmq_capi*' \) -print)
[ -z "$found" ] || fail "a Rust dependent built C-library artifacts or cbindgen: $found"
# Build scripts: the engine has none; only its system-call crates' own
# (libc, and nix, whose build script sets cfg aliases) run.
scripts=$(ls "$tmp/dep/target/debug/build" 2>/dev/null | grep -v -e '^libc-' -e '^nix-' || true)
[ -z "$scripts" ] || fail "a Rust dependent ran build scripts other than libc's and nix's: $scripts"
echo "-- packaging: all bars pass"
