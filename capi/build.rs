//! Generates the C header from `capi/src` with cbindgen (configured by
//! `cbindgen.toml`).
//!
//! The fresh header always goes to `$OUT_DIR/shmq.h`, where
//! `tests/ffi_header.rs` compares it byte for byte with the committed
//! `include/shmq.h`. The committed file is written when it is missing or when
//! `SHMQ_UPDATE_HEADER=1` is set; otherwise a stale one only draws a warning
//! here (and fails that test). A failing generation never fails the build of
//! the library: it warns, and the header test reports it.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-env-changed=SHMQ_UPDATE_HEADER");

    let dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let out = PathBuf::from(env::var("OUT_DIR").expect("set by cargo")).join("shmq.h");
    let _ = fs::remove_file(&out);
    let header = match generate(&dir) {
        Ok(h) => h,
        Err(e) => {
            println!("cargo:warning=cbindgen could not generate the C header: {e}");
            return;
        }
    };
    if let Err(e) = fs::write(&out, &header) {
        println!("cargo:warning=could not write {}: {e}", out.display());
    }

    // The header lives at the workspace root, beside ffi/c, for C users.
    let committed = dir.join("..").join("include").join("shmq.h");
    let current = fs::read(&committed).ok();
    if current.as_deref() == Some(header.as_slice()) {
        return;
    }
    let update = env::var_os("SHMQ_UPDATE_HEADER").is_some_and(|v| v == "1");
    if current.is_none() || update {
        let written = fs::create_dir_all(committed.parent().expect("has a parent"))
            .and_then(|()| fs::write(&committed, &header));
        if let Err(e) = written {
            println!("cargo:warning=could not write {}: {e}", committed.display());
        }
    } else {
        println!(
            "cargo:warning=include/shmq.h is stale (capi/src changed): \
             regenerate it with `SHMQ_UPDATE_HEADER=1 cargo build` and commit it"
        );
    }
}

fn generate(dir: &Path) -> Result<Vec<u8>, String> {
    let mut config =
        cbindgen::Config::from_file(dir.join("cbindgen.toml")).map_err(|e| e.to_string())?;
    let var = |name: &str| env::var(name).unwrap_or_else(|_| "0".into());
    config.after_includes = Some(format!(
        "\n/** The version of this header: compare with shmq_version() at run time. */\n\
         #define SHMQ_VERSION_MAJOR {}\n#define SHMQ_VERSION_MINOR {}\n#define SHMQ_VERSION_PATCH {}\n\
         #define SHMQ_VERSION \"{}\"",
        var("CARGO_PKG_VERSION_MAJOR"),
        var("CARGO_PKG_VERSION_MINOR"),
        var("CARGO_PKG_VERSION_PATCH"),
        var("CARGO_PKG_VERSION"),
    ));
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(dir.join("src").join("lib.rs"))
        .generate()
        .map_err(|e| e.to_string())?;
    let mut header = Vec::new();
    bindings.write(&mut header);
    Ok(header)
}
