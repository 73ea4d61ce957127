#!/usr/bin/env bash
# Installs the C library: builds it with cargo and copies, under a prefix,
#
#   lib/libshmq.so  lib/libshmq.a  include/shmq.h  lib/pkgconfig/shmq.pc
#
# so that C programs build with `pkg-config --cflags --libs shmq` and the Go
# package (`#cgo pkg-config: shmq`) builds with no CGO_ variables. The .pc's
# Libs carry `-Wl,-rpath,<libdir>`: programs run without LD_LIBRARY_PATH or
# ldconfig.
#
#   scripts/install.sh                       prefix /usr/local (or $PREFIX)
#   scripts/install.sh --prefix ~/.local     a prefix of your own, no root
#   DESTDIR=/tmp/stage scripts/install.sh    staged (packaging): files under
#                                            $DESTDIR$prefix, paths say $prefix
#
# Options:
#   --prefix DIR    where to install (default $PREFIX, else /usr/local)
#   --libdir DIR    library directory (default PREFIX/lib)
#   --profile NAME  cargo profile to build and install from (default release;
#                   the test command uses test-release)
#   --no-build      install the library already built in target/NAME (the
#                   test command's packaging check, right after its build)
#                   instead of running cargo
#   --pc-only       build and install nothing: write DIR/pkgconfig/shmq.pc for
#                   the library as built in DIR (--libdir, default
#                   target/release) with the header in this checkout's
#                   include/, so Go builds against an uninstalled library:
#                   PKG_CONFIG_PATH=DIR/pkgconfig go test ./...
#
# The library has no versioned soname (libshmq.so.0): cargo links it as
# plain libshmq.so, and programs built in place against target/ would look
# for a file that cargo does not make. Programs record `libshmq.so`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
}

prefix=${PREFIX:-/usr/local}
libdir=""
profile=release
pc_only=0
build=1
while [ $# -gt 0 ]; do
    case "$1" in
    --prefix) [ $# -ge 2 ] || usage; prefix=$2; shift 2 ;;
    --prefix=*) prefix=${1#*=}; shift ;;
    --libdir) [ $# -ge 2 ] || usage; libdir=$2; shift 2 ;;
    --libdir=*) libdir=${1#*=}; shift ;;
    --profile) [ $# -ge 2 ] || usage; profile=$2; shift 2 ;;
    --profile=*) profile=${1#*=}; shift ;;
    --pc-only) pc_only=1; shift ;;
    --no-build) build=0; shift ;;
    -h | --help) usage ;;
    *) echo "install.sh: unknown argument '$1'" >&2; usage ;;
    esac
done

# An absolute path, whether or not it exists yet (the rpath and the .pc must
# not depend on the directory a program is built or run from).
absolute() {
    case "$1" in
    /*) printf '%s\n' "$1" ;;
    *) printf '%s/%s\n' "$PWD" "$1" ;;
    esac
}

version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -n 1)
[ -n "$version" ] || { echo "install.sh: no version in $root/Cargo.toml" >&2; exit 1; }

# The system libraries Rust's standard library needs when libshmq.a is linked
# statically (`cargo rustc -p shmq-capi -- --print native-static-libs` says
# "-lgcc_s -lutil -lrt -lpthread -lm -ldl -lc" on Linux/glibc).
static_libs="-lgcc_s -lutil -lrt -lpthread -lm -ldl -lc"

# write_pc FILE LIBDIR INCLUDEDIR [PREFIX]: the pkg-config file, written to a
# temporary name and renamed, so concurrent writers never leave half a file.
write_pc() {
    local file=$1 lib=$2 inc=$3 pre=${4:-}
    mkdir -p "$(dirname "$file")"
    local tmp
    tmp=$(mktemp "$file.XXXXXX")
    {
        if [ -n "$pre" ]; then
            printf 'prefix=%s\nexec_prefix=${prefix}\n' "$pre"
            # Standard layout: keep the paths relative to prefix, as pkg-config
            # users expect (--define-variable=prefix=... relocates them).
            case "$lib" in
            "$pre"/lib) lib='${exec_prefix}/lib' ;;
            esac
            case "$inc" in
            "$pre"/include) inc='${prefix}/include' ;;
            esac
        fi
        printf 'libdir=%s\nincludedir=%s\n\n' "$lib" "$inc"
        printf 'Name: shmq\n'
        printf 'Description: Cross-process shared-memory message queue (work queue and fan-out log)\n'
        printf 'Version: %s\n' "$version"
        printf 'Cflags: -I${includedir}\n'
        printf 'Libs: -L${libdir} -Wl,-rpath,${libdir} -lshmq\n'
        printf 'Libs.private: %s\n' "$static_libs"
    } >"$tmp"
    chmod 644 "$tmp"
    mv -f "$tmp" "$file"
}

if [ "$pc_only" = 1 ]; then
    lib=$(absolute "${libdir:-$root/target/release}")
    for f in libshmq.so libshmq.a; do
        [ -e "$lib/$f" ] || {
            echo "install.sh: $lib/$f is missing: build it first (cargo build --release -p shmq-capi)" >&2
            exit 1
        }
    done
    write_pc "$lib/pkgconfig/shmq.pc" "$lib" "$root/include"
    echo "wrote $lib/pkgconfig/shmq.pc (use: PKG_CONFIG_PATH=$lib/pkgconfig)"
    exit 0
fi

prefix=$(absolute "$prefix")
libdir=$(absolute "${libdir:-$prefix/lib}")
includedir=$prefix/include
dest=${DESTDIR:-}

if [ "$build" = 1 ]; then
    echo "install.sh: cargo build --profile $profile -p shmq-capi" >&2
    (cd "$root" && cargo build --profile "$profile" -p shmq-capi)
fi
built=$root/target/$profile
if [ -n "${CARGO_TARGET_DIR:-}" ]; then built=$(absolute "$CARGO_TARGET_DIR")/$profile; fi
for f in "$built/libshmq.so" "$built/libshmq.a" "$root/include/shmq.h"; do
    [ -f "$f" ] || { echo "install.sh: $f was not built" >&2; exit 1; }
done

mkdir -p "$dest$libdir" "$dest$libdir/pkgconfig" "$dest$includedir" 2>/dev/null || true
if [ ! -w "$dest$libdir" ] || [ ! -w "$dest$includedir" ]; then
    echo "install.sh: cannot write to $dest$libdir or $dest$includedir: run it as root (sudo) or choose --prefix DIR" >&2
    exit 1
fi
install -m 755 "$built/libshmq.so" "$dest$libdir/libshmq.so"
install -m 644 "$built/libshmq.a" "$dest$libdir/libshmq.a"
install -m 644 "$root/include/shmq.h" "$dest$includedir/shmq.h"
write_pc "$dest$libdir/pkgconfig/shmq.pc" "$libdir" "$includedir" "$prefix"

echo "installed shmq $version under ${dest}$prefix:"
echo "  $libdir/libshmq.so, $libdir/libshmq.a, $includedir/shmq.h, $libdir/pkgconfig/shmq.pc"
case ":${PKG_CONFIG_PATH:-}:$(pkg-config --variable pc_path pkg-config 2>/dev/null || true):" in
*":$libdir/pkgconfig:"*) ;;
*) echo "  pkg-config does not search $libdir/pkgconfig by default: export PKG_CONFIG_PATH=$libdir/pkgconfig" ;;
esac
