//! Programs in C and Go built against the `libshmq.so` of this build, for the
//! tests that run them beside Rust processes.
//!
//! `cargo test` does not build the C library (it is another crate of the
//! workspace); the test command builds the whole workspace first, and
//! [`lib_dir`] checks that the library is there and not older than the
//! sources.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The workspace root: the nearest ancestor of this crate that holds
/// `include/shmq.h` (the engine is the root; the CLI is `cli/`).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|d| d.join("include").join("shmq.h").exists())
        .expect("a workspace root with include/shmq.h")
        .to_path_buf()
}

/// target/<profile>, where `cargo build` put libshmq.so; panics when it is
/// missing or older than the library's sources (the engine and its C layer).
pub fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>")
        .to_path_buf();
    let profile = dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("release");
    let build = format!("cargo build --profile {profile} -p shmq-capi");
    let so = dir.join("libshmq.so");
    let built = std::fs::metadata(&so)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| panic!("{} is missing: run `{build}` first", so.display()));
    let root = repo();
    let newest = newest_file(&root.join("src")).max(newest_file(&root.join("capi").join("src")));
    assert!(
        built >= newest,
        "{} is older than the sources: run `{build}` first",
        so.display()
    );
    dir
}

fn newest_file(dir: &Path) -> SystemTime {
    let mut newest = UNIX_EPOCH;
    for entry in std::fs::read_dir(dir)
        .expect("read a source directory")
        .map_while(Result::ok)
    {
        let path = entry.path();
        let t = if path.is_dir() {
            newest_file(&path)
        } else {
            entry
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(UNIX_EPOCH)
        };
        newest = newest.max(t);
    }
    newest
}

/// Runs a build command to success within `limit`, or panics with its
/// error output (a missing compiler fails saying which tool is needed).
pub fn build(cmd: &mut Command, what: &str, limit: Duration) {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run the {what} ({e}): a C compiler (cc) and Go (go) are required")
        });
    let stderr = child.stderr.take().expect("piped");
    let errors = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the {what} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let errors = errors.join().unwrap_or_default();
    assert!(status.success(), "the {what} failed ({status}):\n{errors}");
}

/// Compiles the C program `ffi/c/<source>.c` (`source` may name a
/// subdirectory: `examples/market_sub`) against this build's library into
/// `<lib>/ffi-test-bin/<name>` (with an rpath: it runs without
/// `LD_LIBRARY_PATH`) and returns its path.
pub fn build_c(source: &str, name: &str, lib: &Path) -> PathBuf {
    let root = repo();
    let out = lib.join("ffi-test-bin");
    std::fs::create_dir_all(&out).expect("create the binary directory");
    let bin = out.join(name);
    build(
        Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
            .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-O2", "-I"])
            .arg(root.join("include"))
            .arg(root.join("ffi").join("c").join(format!("{source}.c")))
            .arg("-o")
            .arg(&bin)
            .arg(format!("-L{}", lib.display()))
            .arg(format!("-Wl,-rpath,{}", lib.display()))
            .arg("-lshmq"),
        "C compiler",
        Duration::from_secs(120),
    );
    bin
}

/// Builds the Go package `ffi/go/<package>` (a `main` package) against this
/// build's library into `<lib>/ffi-test-bin/<name>` and returns its path.
pub fn build_go(package: &str, name: &str, lib: &Path) -> PathBuf {
    let out = lib.join("ffi-test-bin");
    std::fs::create_dir_all(&out).expect("create the binary directory");
    let bin = out.join(name);
    // The package finds libshmq with pkg-config: an uninstalled shmq.pc for
    // this build's library, searched ahead of any installed one.
    build(
        Command::new(repo().join("scripts").join("install.sh"))
            .args(["--pc-only", "--libdir"])
            .arg(lib),
        "shmq.pc generation",
        Duration::from_secs(30),
    );
    let mut pc_path = std::ffi::OsString::from(lib.join("pkgconfig"));
    if let Some(more) = std::env::var_os("PKG_CONFIG_PATH") {
        pc_path.push(":");
        pc_path.push(more);
    }
    build(
        Command::new("go")
            .args(["build", "-o"])
            .arg(&bin)
            .arg(format!("./{package}"))
            .current_dir(repo().join("ffi").join("go"))
            .env("PKG_CONFIG_PATH", pc_path)
            // Also in the environment: Go's build cache does not key on
            // pkg-config's output (golang/go#24544), but it does on these
            // flags, so a package built against another library is not reused.
            .env(
                "CGO_LDFLAGS",
                format!("-L{0} -Wl,-rpath,{0}", lib.display()),
            ),
        "Go build",
        Duration::from_secs(600),
    );
    bin
}
