//! A real end-to-end encrypted conversation with a real client library:
//! `tests-py/e2ee_nio.py` drives matrix-nio with its `e2e` extra (Olm/Megolm
//! from vodozemac) through an encrypted DM between two users, a second device
//! that is verified with SAS and gets the history by key sharing, a third
//! device that restores the history from server-side key backup, and
//! cross-signing through which the other user trusts all three devices. Every
//! message is decrypted on the receiving side and the server is checked to
//! hold only ciphertext.
//!
//! Needs `pip install -r tests-py/requirements-e2ee.txt` (CI installs it);
//! `KITH_PYTHON` selects the interpreter (default `python3`). A missing
//! package fails the test, it never skips. `E2EE_NIO_LOG=INFO` (or `DEBUG`)
//! makes the script show what nio's crypto layer does.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use complement_tests::TestServer;

/// How long the scenario may run before it counts as hung.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(300);

fn python() -> String {
    std::env::var("KITH_PYTHON").ok().filter(|p| !p.is_empty()).unwrap_or_else(|| "python3".to_owned())
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Fails the test (never skips) unless matrix-nio with working E2EE support is importable.
fn require_nio_e2e() {
    let python = python();
    let probe = "import nio, vodozemac\nfrom nio.crypto import ENCRYPTION_ENABLED\nassert ENCRYPTION_ENABLED";
    let out = std::process::Command::new(&python)
        .args(["-c", probe])
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{python}` (set KITH_PYTHON to a Python 3 interpreter): {e}"));
    assert!(
        out.status.success(),
        "`{python}` lacks matrix-nio with end-to-end encryption: run `pip install -r tests-py/requirements-e2ee.txt` \
         (or set KITH_PYTHON to an interpreter that has it).\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn matrix_nio_encrypted_conversation() {
    require_nio_e2e();
    let server = TestServer::start().await;
    let root = workspace_root();
    let script = root.join("tests-py/e2ee_nio.py");
    let child = tokio::process::Command::new(python())
        .arg(&script)
        .arg(server.base_url())
        .current_dir(&root)
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run `{} {}`: {e}", python(), script.display()));
    let out = tokio::time::timeout(SCENARIO_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("e2ee_nio.py did not finish within {SCENARIO_TIMEOUT:?}"))
        .expect("wait for e2ee_nio.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    if !stderr.is_empty() {
        eprintln!("{stderr}");
    }
    assert!(
        out.status.success() && stdout.contains("PASS:"),
        "e2ee_nio.py failed with {}\nstdout:\n{stdout}\nstderr:\n{stderr}\nlast server output:\n{}",
        out.status,
        server.output().lines().rev().take(100).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
    );
}
