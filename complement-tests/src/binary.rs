//! Locating (and building, once per process) the `kith` server binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The path of the `kith` binary.
///
/// `KITH_BIN`, when set, is used as is. Otherwise the binary is built once per
/// process with `$CARGO build -p kith --bin kith` in the workspace root, and the
/// path of the built executable is read from cargo's JSON messages.
pub fn kith_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("KITH_BIN") {
            let bin = PathBuf::from(bin);
            assert!(bin.exists(), "KITH_BIN={} does not exist", bin.display());
            return bin;
        }
        build()
    })
}

fn build() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let workspace =
        Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("complement-tests lives inside the workspace");
    let output = Command::new(&cargo)
        .current_dir(workspace)
        .args(["build", "-p", "kith", "--bin", "kith", "--message-format=json-render-diagnostics"])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{cargo} build`: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "`{cargo} build -p kith --bin kith` failed with {}; see the compiler output above",
        output.status
    );
    let mut executable = None;
    for line in stdout.lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" || msg["target"]["name"] != "kith" {
            continue;
        }
        let is_bin = msg["target"]["kind"].as_array().is_some_and(|kinds| kinds.iter().any(|k| k == "bin"));
        if let (true, Some(exe)) = (is_bin, msg["executable"].as_str()) {
            executable = Some(PathBuf::from(exe));
        }
    }
    executable.unwrap_or_else(|| panic!("cargo build succeeded but reported no executable for the kith bin:\n{stdout}"))
}
