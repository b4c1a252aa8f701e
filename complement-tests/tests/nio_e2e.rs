//! A real Matrix client library against the real server: `tests-py/nio_e2e.py`
//! drives a full chat scenario (registration, DM and group room, every message
//! kind, replies, mentions, edits, reactions, threads, redactions, kick, ban,
//! leave) with matrix-nio and verifies it from the other user's side.
//!
//! Needs `pip install -r tests-py/requirements-nio.txt` (CI installs it);
//! `KITH_PYTHON` selects the interpreter (default `python3`).

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

/// Fails the test (never skips) unless matrix-nio is importable.
fn require_nio() {
    let python = python();
    let out = std::process::Command::new(&python)
        .args(["-c", "import nio"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{python}` (set KITH_PYTHON to a Python 3 interpreter): {e}"));
    assert!(
        out.status.success(),
        "`{python}` cannot import nio (matrix-nio): run `pip install -r tests-py/requirements-nio.txt` \
         (or set KITH_PYTHON to an interpreter that has it).\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn matrix_nio_chat_scenario() {
    require_nio();
    let server = TestServer::start().await;
    let root = workspace_root();
    let script = root.join("tests-py/nio_e2e.py");
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
        .unwrap_or_else(|_| panic!("nio_e2e.py did not finish within {SCENARIO_TIMEOUT:?}"))
        .expect("wait for nio_e2e.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    if !stderr.is_empty() {
        eprintln!("{stderr}");
    }
    assert!(
        out.status.success(),
        "nio_e2e.py failed with {}\nstdout:\n{stdout}\nstderr:\n{stderr}\nlast server output:\n{}",
        out.status,
        server.output().lines().rev().take(100).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
    );
}
