//! Running a `kith` server as a child process.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use regex::Regex;

use crate::binary::kith_bin;
use crate::client::Client;
use crate::db::TempPgDatabase;

/// How many lines of server output are kept for failure reports.
const KEPT_LINES: usize = 5000;
/// How long to wait for the client listener to come up.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a stopped server may take to exit.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

fn listening_re() -> &'static Regex {
    static RE: std::sync::OnceLock<Regex> = std::sync::OnceLock::new();
    RE.get_or_init(|| Regex::new(r"listening on (http://\S+) \((\w+)\)").expect("valid regex"))
}

fn ansi_re() -> &'static Regex {
    static RE: std::sync::OnceLock<Regex> = std::sync::OnceLock::new();
    RE.get_or_init(|| Regex::new(r"\x1b\[[0-9;]*[A-Za-z]").expect("valid regex"))
}

/// The captured output of one server process (stdout and stderr interleaved).
#[derive(Clone, Default)]
struct Output {
    inner: Arc<Mutex<OutputInner>>,
}

#[derive(Default)]
struct OutputInner {
    lines: VecDeque<String>,
    /// Readers still running (0 = the process closed both streams).
    open_streams: usize,
}

impl Output {
    fn push(&self, line: String) {
        let mut inner = self.inner.lock().expect("output lock");
        if inner.lines.len() == KEPT_LINES {
            inner.lines.pop_front();
        }
        inner.lines.push_back(line);
    }

    fn text(&self) -> String {
        let inner = self.inner.lock().expect("output lock");
        inner.lines.iter().map(String::as_str).collect::<Vec<_>>().join("\n")
    }

    fn find(&self, re: &Regex) -> Option<Vec<Option<String>>> {
        let inner = self.inner.lock().expect("output lock");
        inner
            .lines
            .iter()
            .find_map(|line| re.captures(line).map(|c| c.iter().map(|m| m.map(|m| m.as_str().to_owned())).collect()))
    }

    fn streams_closed(&self) -> bool {
        self.inner.lock().expect("output lock").open_streams == 0
    }

    /// Starts a thread that copies `stream` line by line into this output.
    fn capture(&self, stream: impl Read + Send + 'static, name: &'static str, echo: bool) {
        self.inner.lock().expect("output lock").open_streams += 1;
        let output = self.clone();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stream);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match reader.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let raw = String::from_utf8_lossy(&buf);
                        let line = ansi_re().replace_all(raw.trim_end_matches(['\n', '\r']), "").into_owned();
                        if echo {
                            eprintln!("[kith {name}] {line}");
                        }
                        output.push(line);
                    }
                }
            }
            output.inner.lock().expect("output lock").open_streams -= 1;
        });
    }
}

/// The result of a CLI invocation of the server binary.
#[derive(Debug)]
pub struct CliOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl CliOutput {
    /// stdout and stderr together.
    pub fn combined(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    /// Panics with the output unless the command exited with status 0.
    pub fn assert_success(&self) -> &Self {
        assert!(
            self.status.success(),
            "command failed with {}\nstdout:\n{}\nstderr:\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }
}

/// Why a server did not come up.
#[derive(Debug)]
pub struct StartFailure {
    /// The exit status, when the process exited (None: it timed out and was killed).
    pub status: Option<ExitStatus>,
    pub output: String,
}

/// Options for starting a [`TestServer`].
#[derive(Debug, Clone, Default)]
pub struct TestServerBuilder {
    env: Vec<(String, String)>,
    echo_output: bool,
    config_file: Option<String>,
}

impl TestServerBuilder {
    /// Sets (or overrides) an environment variable of the server process,
    /// e.g. `env("KITH_REGISTRATION__MODE", "token")`.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let key = key.into();
        self.env.retain(|(k, _)| *k != key);
        self.env.push((key, value.into()));
        self
    }

    /// Removes a default environment variable (e.g. to test a default value).
    pub fn unset_env(mut self, key: &str) -> Self {
        self.env.retain(|(k, _)| k != key);
        self.env.push((format!("!{key}"), String::new()));
        self
    }

    /// Writes `toml` into `<data_dir>/kith.toml` and passes `--config` it.
    pub fn config_file(mut self, toml: impl Into<String>) -> Self {
        self.config_file = Some(toml.into());
        self
    }

    /// Copies the server's output to stderr as it arrives (also enabled by
    /// the environment variable `KITH_TEST_ECHO=1` of the test process).
    pub fn echo_output(mut self, echo: bool) -> Self {
        self.echo_output = echo;
        self
    }

    /// Starts the server and waits until its client listener is up.
    pub async fn start(self) -> TestServer {
        match self.try_start().await {
            Ok(server) => server,
            Err(failure) => {
                panic!("kith did not start (exit status: {:?}); output:\n{}", failure.status, failure.output)
            }
        }
    }

    /// Starts the server; an `Err` when it exits or does not listen in time.
    pub async fn try_start(self) -> Result<TestServer, StartFailure> {
        let data_dir = tempfile::Builder::new().prefix("kith-test-").tempdir().expect("create temp data dir");
        let db = match TempPgDatabase::configured() {
            Some(url) => Some(TempPgDatabase::create(&url).await),
            None => None,
        };
        let mut server = TestServer { builder: self, data_dir, db, process: None, last_output: String::new() };
        if let Some(toml) = &server.builder.config_file {
            std::fs::write(server.config_path(), toml).expect("write kith.toml");
        }
        server.spawn().await?;
        Ok(server)
    }
}

struct Process {
    child: Child,
    output: Output,
    base_url: String,
    metrics_url: Option<String>,
    /// The connection pool of this process's clients.
    http: reqwest::Client,
}

/// A running `kith` server on its own data directory (and database).
pub struct TestServer {
    builder: TestServerBuilder,
    data_dir: tempfile::TempDir,
    db: Option<TempPgDatabase>,
    process: Option<Process>,
    /// The output of the last process that stopped.
    last_output: String,
}

impl TestServer {
    /// Starts a server with the default test configuration.
    pub async fn start() -> TestServer {
        Self::builder().start().await
    }

    pub fn builder() -> TestServerBuilder {
        TestServerBuilder { echo_output: std::env::var("KITH_TEST_ECHO").is_ok_and(|v| v == "1"), ..Default::default() }
    }

    /// The environment the server and its CLI run with (defaults, then the
    /// builder's overrides).
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = [
            ("KITH_SERVER_NAME", crate::SERVER_NAME),
            ("KITH_LISTEN__CLIENT", "127.0.0.1:0"),
            ("KITH_LISTEN__METRICS", "127.0.0.1:0"),
            ("KITH_REGISTRATION__MODE", "open"),
            ("KITH_REGISTRATION__SHARED_SECRET", crate::SHARED_SECRET),
            ("KITH_RATE_LIMITS__ENABLED", "false"),
            // Presence wakes every room-mate's long-poll when a user first syncs;
            // tests that assert quiet long-polls would race it. tests/presence.rs turns it on.
            ("KITH_PRESENCE__ENABLED", "false"),
            ("RUST_LOG", "info"),
            ("NO_COLOR", "1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        env.push(("KITH_DATA_DIR".to_owned(), self.data_dir().display().to_string()));
        if let Some(db) = &self.db {
            env.push(("KITH_DATABASE__URL".to_owned(), db.url()));
        }
        for (key, value) in &self.builder.env {
            if let Some(removed) = key.strip_prefix('!') {
                env.retain(|(k, _)| k != removed);
                continue;
            }
            env.retain(|(k, _)| k != key);
            env.push((key.clone(), value.clone()));
        }
        env
    }

    /// A command for the server binary with this server's environment (and
    /// `--config` when the builder was given a config file), nothing inherited
    /// from the test process's own `KITH_*` variables.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(kith_bin());
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("KITH_") {
                cmd.env_remove(key);
            }
        }
        cmd.env_remove("RUST_LOG");
        cmd.envs(self.env());
        cmd.current_dir(self.data_dir());
        if self.builder.config_file.is_some() {
            cmd.arg("--config").arg(self.config_path());
        }
        cmd
    }

    fn config_path(&self) -> PathBuf {
        self.data_dir().join("kith.toml")
    }

    async fn spawn(&mut self) -> Result<(), StartFailure> {
        assert!(self.process.is_none(), "server already running");
        let mut cmd = self.command();
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {}: {e}", kith_bin().display()));
        let output = Output::default();
        let echo = self.builder.echo_output;
        output.capture(child.stdout.take().expect("piped stdout"), "out", echo);
        output.capture(child.stderr.take().expect("piped stderr"), "err", echo);

        let metrics_enabled = self.env().iter().any(|(k, v)| k == "KITH_LISTEN__METRICS" && !v.is_empty());
        let deadline = Instant::now() + START_TIMEOUT;
        let mut client_url: Option<String> = None;
        let mut metrics_url: Option<String> = None;
        let mut client_seen_at: Option<Instant> = None;
        loop {
            {
                let inner = output.inner.lock().expect("output lock");
                for line in &inner.lines {
                    if let Some(c) = listening_re().captures(line) {
                        match &c[2] {
                            "client" => client_url = Some(c[1].to_owned()),
                            "metrics" => metrics_url = Some(c[1].to_owned()),
                            _ => {}
                        }
                    }
                }
            }
            if client_url.is_some() && client_seen_at.is_none() {
                client_seen_at = Some(Instant::now());
            }
            let metrics_done = !metrics_enabled
                || metrics_url.is_some()
                || client_seen_at.is_some_and(|t| t.elapsed() > Duration::from_secs(3));
            if client_url.is_some() && metrics_done {
                break;
            }
            if let Some(status) = child.try_wait().expect("try_wait") {
                // Give the readers a moment to collect the last lines.
                let t = Instant::now();
                while !output.streams_closed() && t.elapsed() < Duration::from_secs(2) {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                return Err(StartFailure { status: Some(status), output: output.text() });
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(StartFailure {
                    status: None,
                    output: format!(
                        "(no `listening on ... (client)` line within {START_TIMEOUT:?})\n{}",
                        output.text()
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.process = Some(Process {
            child,
            output,
            base_url: client_url.expect("client url"),
            metrics_url,
            http: crate::client::new_http(),
        });
        Ok(())
    }

    fn process(&self) -> &Process {
        self.process.as_ref().expect("server is not running")
    }

    /// `http://127.0.0.1:PORT` of the client-server API.
    pub fn base_url(&self) -> &str {
        &self.process().base_url
    }

    /// `http://127.0.0.1:PORT` of the metrics listener.
    pub fn metrics_url(&self) -> &str {
        self.process().metrics_url.as_deref().expect("the server logged no `listening on ... (metrics)` line")
    }

    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    /// The URL of this server's PostgreSQL database, when running on one.
    pub fn database_url(&self) -> Option<String> {
        self.db.as_ref().map(TempPgDatabase::url)
    }

    /// The process id of the running server.
    pub fn pid(&self) -> u32 {
        self.process().child.id()
    }

    /// Everything the running (or last stopped) process printed, as far as kept.
    pub fn output(&self) -> String {
        match &self.process {
            Some(p) => p.output.text(),
            None => self.last_output.clone(),
        }
    }

    /// The capture groups of the first output line matching `re`, waiting up to `timeout`.
    pub async fn wait_for_log(&self, re: &str, timeout: Duration) -> Option<Vec<Option<String>>> {
        let re = Regex::new(re).expect("valid regex");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(found) = self.process().output.find(&re) {
                return Some(found);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// An unauthenticated client for this server.
    pub fn client(&self) -> Client {
        Client::with_http(self.base_url(), self.process().http.clone())
    }

    /// Registers `localpart` with the dummy flow and returns its logged-in client.
    pub async fn register(&self, localpart: &str, password: &str) -> Client {
        self.client().register(localpart, password).await
    }

    /// Sends SIGTERM and waits; asserts the process exited with status 0 within 10 s.
    pub async fn stop(&mut self) {
        let status = self.stop_inner().await;
        assert!(
            status.is_some_and(|s| s.success()),
            "kith did not exit cleanly after SIGTERM (status {status:?}); output:\n{}",
            self.last_output
        );
    }

    /// Sends SIGTERM and returns the exit status (None: killed after the timeout).
    async fn stop_inner(&mut self) -> Option<ExitStatus> {
        let mut process = self.process.take().expect("server is not running");
        let pid = process.child.id() as libc::pid_t;
        // SAFETY: sending a signal to our own child process.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        let status = loop {
            if let Some(status) = process.child.try_wait().expect("try_wait") {
                break Some(status);
            }
            if Instant::now() > deadline {
                let _ = process.child.kill();
                let _ = process.child.wait();
                break None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let t = Instant::now();
        while !process.output.streams_closed() && t.elapsed() < Duration::from_secs(2) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.last_output = process.output.text();
        status
    }

    /// Stops the server (cleanly, asserted) and starts it again on the same
    /// data directory and database; the ports change.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.start_again().await;
    }

    /// Starts a stopped server again; panics when it does not come up.
    pub async fn start_again(&mut self) {
        if let Err(failure) = self.spawn().await {
            panic!("kith did not start again (exit status: {:?}); output:\n{}", failure.status, failure.output);
        }
    }

    /// Starts a stopped server again; `Err` when it exits or does not listen in time.
    pub async fn try_start_again(&mut self) -> Result<(), StartFailure> {
        self.spawn().await
    }

    /// Runs the server binary with `args` (e.g. `["user", "create", "bob"]`)
    /// with this server's environment (same data dir and database).
    pub async fn cli(&self, args: &[&str]) -> CliOutput {
        let mut cmd = tokio::process::Command::from(self.command());
        cmd.args(args).stdin(Stdio::null());
        let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
            .await
            .unwrap_or_else(|_| panic!("`kith {}` did not finish within 60 s", args.join(" ")))
            .unwrap_or_else(|e| panic!("cannot run kith {args:?}: {e}"));
        CliOutput {
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Writes `contents` to a file in the data directory and returns its path.
    pub fn write_file(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.data_dir().join(name);
        std::fs::write(&path, contents).expect("write file");
        path
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.child.kill();
            let _ = process.child.wait();
            self.last_output = process.output.text();
        }
        if std::thread::panicking() {
            let lines: Vec<&str> = self.last_output.lines().collect();
            let tail = &lines[lines.len().saturating_sub(200)..];
            eprintln!(
                "---- last {} lines of kith output ({}) ----\n{}\n---- end of kith output ----",
                tail.len(),
                self.data_dir().display(),
                tail.join("\n")
            );
        }
        if let Some(db) = &mut self.db {
            db.drop_now();
        }
    }
}
