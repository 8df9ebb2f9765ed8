//! External peers installed by `e2e/tools.sh`: a real nostr-rs-relay, `e2e/neg-relay` (NIP-77 on
//! go-nostr's negentropy), PyPI's `nostr-relay` and `@nostr-relay/core` (behind
//! `e2e/ts-relay`) on loopback ports, and independent event verifiers (nostr-tools under node,
//! go-nostr).
//!
//! Each tool is found through an env var. Tests that need one are `#[ignore]`d (a plain
//! `cargo test` reports them as ignored); run with `--include-ignored` after sourcing
//! `e2e/tools.sh`, as CI does, and a missing tool fails the test.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nostr::JsonUtil;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long a started peer may take to answer its NIP-11 document.
const READY_WITHIN: Duration = Duration::from_secs(20);

/// An external program the tests drive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tool {
    NostrRsRelay,
    NostrTools,
    GoNostr,
    /// e2e/system/nostr-client (go-nostr): publish, REQ until EOSE.
    GoClient,
    NegRelay,
    PyRelay,
    TsRelay,
    /// openapi-spec-validator (PyPI), the `openapi-check` venv.
    OpenApiSpecValidator,
    /// schemathesis's `st` (PyPI), the `openapi-check` venv.
    Schemathesis,
}

impl Tool {
    /// Its name in `BROTR_TOOLS`.
    pub fn name(self) -> &'static str {
        match self {
            Tool::NostrRsRelay => "nostr-rs-relay",
            Tool::NostrTools => "nostr-tools",
            Tool::GoNostr => "go-nostr",
            Tool::GoClient => "go-client",
            Tool::NegRelay => "neg-relay",
            Tool::PyRelay => "py-relay",
            Tool::TsRelay => "ts-relay",
            Tool::OpenApiSpecValidator | Tool::Schemathesis => "openapi-check",
        }
    }

    /// The env var `e2e/tools.sh` exports with its path.
    pub fn env(self) -> &'static str {
        match self {
            Tool::NostrRsRelay => "BROTR_NOSTR_RS_RELAY",
            Tool::NostrTools => "BROTR_NODE_VERIFY",
            Tool::GoNostr => "BROTR_GO_VERIFY",
            Tool::GoClient => "BROTR_GO_CLIENT",
            Tool::NegRelay => "BROTR_NEG_RELAY",
            Tool::PyRelay => "BROTR_PY_RELAY",
            Tool::TsRelay => "BROTR_TS_RELAY",
            Tool::OpenApiSpecValidator => "BROTR_OPENAPI_SPEC_VALIDATOR",
            Tool::Schemathesis => "BROTR_SCHEMATHESIS",
        }
    }

    /// Its path. A test that calls this needs the tool: it fails (never skips) without it.
    pub fn path(self) -> PathBuf {
        let env = self.env();
        let p = std::env::var_os(env)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                panic!(
                    "{env} is not set: source e2e/tools.sh (it installs {})",
                    self.name()
                )
            });
        assert!(
            p.exists(),
            "{env}={} does not exist (run e2e/tools.sh)",
            p.display()
        );
        p
    }
}

/// A free loopback port (the listener is closed again; a start that loses the race retries).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free loopback port")
        .port()
}

/// A child process that is killed (and reaped) when dropped, with its output in a log file.
struct Guarded {
    child: Child,
    log: PathBuf,
}

impl Guarded {
    fn spawn(mut cmd: Command, log: &Path) -> Guarded {
        let out = std::fs::File::create(log).expect("create peer log");
        let err = out.try_clone().expect("clone peer log");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        Guarded {
            child,
            log: log.to_owned(),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls the NIP-11 document until it parses, the process exits, or time runs out.
    async fn wait_ready(&mut self, port: u16) -> Result<serde_json::Value, String> {
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("exited with {status}"));
            }
            if let Ok(doc) = nip11(port).await {
                // Still running: the answer came from this process, not a squatter on the port.
                if let Ok(None) = self.child.try_wait() {
                    return Ok(doc);
                }
            }
            if Instant::now() > deadline {
                return Err(format!("no NIP-11 answer within {READY_WITHIN:?}"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GET / with `Accept: application/nostr+json` on a loopback port: the relay's NIP-11 document.
pub async fn nip11(port: u16) -> Result<serde_json::Value, String> {
    let io = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        let req = format!(
            "GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: application/nostr+json\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    };
    let raw = tokio::time::timeout(Duration::from_secs(2), io)
        .await
        .map_err(|_| "timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no HTTP header end")?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!("status line {:?}", head.lines().next()));
    }
    // The document is one JSON object; slicing to its braces also steps over chunk-size lines.
    let (start, end) = (
        body.find('{').ok_or("no JSON")?,
        body.rfind('}').ok_or("no JSON")?,
    );
    serde_json::from_str(&body[start..=end]).map_err(|e| e.to_string())
}

/// Settings of a launched nostr-rs-relay (its `config.toml`); `None` keeps the relay's default.
///
/// nostr-rs-relay 0.8.12 has no server-side cap on REQ results: a filter without `limit` gets
/// every match (oldest first), and a filter's `limit` is applied as given (newest first). For a
/// capping relay use rust-nostr's `RelayBuilder` (`max_filter_limit`, `default_filter_limit`).
#[derive(Clone, Debug, Default)]
pub struct NostrRsRelayConfig {
    /// NIP-11 `name` (default "brotr-test nostr-rs-relay").
    pub name: Option<String>,
    /// Largest EVENT accepted, in bytes (relay default 128 KiB; 0 = unlimited).
    pub max_event_bytes: Option<usize>,
    /// Largest WebSocket message, in bytes (relay default 128 KiB).
    pub max_ws_message_bytes: Option<usize>,
    /// Largest WebSocket frame, in bytes (relay default 128 KiB).
    pub max_ws_frame_bytes: Option<usize>,
    /// Events accepted per second, relay-wide, averaged over a minute.
    pub messages_per_sec: Option<u32>,
    /// REQs accepted per minute.
    pub subscriptions_per_min: Option<u32>,
    /// Reject events dated more than this many seconds ahead.
    pub reject_future_seconds: Option<u64>,
    /// Only these kinds are stored.
    pub event_kind_allowlist: Option<Vec<u64>>,
    /// Require NIP-42 authentication (advertised in NIP-11 `supported_nips`).
    pub nip42_auth: bool,
    /// Send DMs (kind 4) only to their authenticated author or `p`-tagged recipient.
    pub nip42_dms: bool,
    /// TOML appended verbatim (sections not written above, e.g. `[verified_users]`).
    pub extra_toml: String,
}

impl NostrRsRelayConfig {
    /// The `config.toml` for a relay on `port` keeping its SQLite files in `data_dir`.
    pub fn to_toml(&self, port: u16, data_dir: &Path) -> String {
        let name = self.name.as_deref().unwrap_or("brotr-test nostr-rs-relay");
        let mut t = String::new();
        let _ = writeln!(
            t,
            "[info]\nrelay_url = \"ws://127.0.0.1:{port}/\"\nname = {name:?}\ndescription = \"test relay started by brotr's tests\"\n"
        );
        let _ = writeln!(
            t,
            "[database]\nengine = \"sqlite\"\ndata_directory = {:?}\n",
            data_dir.display().to_string()
        );
        let _ = writeln!(t, "[network]\naddress = \"127.0.0.1\"\nport = {port}\n");
        if let Some(s) = self.reject_future_seconds {
            let _ = writeln!(t, "[options]\nreject_future_seconds = {s}\n");
        }
        t.push_str("[limits]\n");
        let limits = [
            ("max_event_bytes", self.max_event_bytes.map(|v| v as u64)),
            (
                "max_ws_message_bytes",
                self.max_ws_message_bytes.map(|v| v as u64),
            ),
            (
                "max_ws_frame_bytes",
                self.max_ws_frame_bytes.map(|v| v as u64),
            ),
            ("messages_per_sec", self.messages_per_sec.map(u64::from)),
            (
                "subscriptions_per_min",
                self.subscriptions_per_min.map(u64::from),
            ),
        ];
        for (key, value) in limits {
            if let Some(v) = value {
                let _ = writeln!(t, "{key} = {v}");
            }
        }
        if let Some(kinds) = &self.event_kind_allowlist {
            let _ = writeln!(t, "event_kind_allowlist = {kinds:?}");
        }
        let _ = writeln!(
            t,
            "\n[authorization]\nnip42_auth = {}\nnip42_dms = {}\n",
            self.nip42_auth, self.nip42_dms
        );
        t.push_str(&self.extra_toml);
        t
    }
}

/// A real nostr-rs-relay on a loopback port, with its SQLite data in a temporary directory.
/// The process is killed and the directory removed on drop.
pub struct NostrRsRelay {
    /// `ws://127.0.0.1:PORT`
    pub url: String,
    pub port: u16,
    /// The NIP-11 document it answered at start.
    pub nip11: serde_json::Value,
    proc: Guarded,
    dir: tempfile::TempDir,
}

impl NostrRsRelay {
    /// Starts one (the binary must be installed, see [`Tool::path`]).
    pub async fn start(config: &NostrRsRelayConfig) -> NostrRsRelay {
        let bin = Tool::NostrRsRelay.path();
        Self::start_with(&bin, config).await
    }

    /// Starts `bin` with `config`; panics (with the relay's log) if it does not come up.
    pub async fn start_with(bin: &Path, config: &NostrRsRelayConfig) -> NostrRsRelay {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut last = String::new();
        // A port picked free can be taken before the relay binds it: retry on a new one.
        for _ in 0..3 {
            let port = free_port();
            let conf = dir.path().join("config.toml");
            std::fs::write(&conf, config.to_toml(port, dir.path())).expect("write config.toml");
            let mut cmd = Command::new(bin);
            cmd.arg("--config")
                .arg(&conf)
                .current_dir(dir.path())
                .env("RUST_LOG", "warn,nostr_rs_relay=info");
            let mut proc = Guarded::spawn(cmd, &dir.path().join("relay.log"));
            match proc.wait_ready(port).await {
                Ok(nip11) => {
                    return NostrRsRelay {
                        url: format!("ws://127.0.0.1:{port}"),
                        port,
                        nip11,
                        proc,
                        dir,
                    };
                }
                Err(e) => last = format!("{e}\n--- relay log ---\n{}", proc.log()),
            }
        }
        panic!("nostr-rs-relay did not start: {last}");
    }

    /// Everything the relay logged so far (for assertion messages).
    pub fn log(&self) -> String {
        self.proc.log()
    }

    /// The directory holding its `config.toml`, SQLite files and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// Settings of a launched `e2e/neg-relay` (its flags); `None` keeps the relay's default.
#[derive(Clone, Debug, Default)]
pub struct NegRelayConfig {
    /// Largest NEG-MSG the relay sends, in bytes before hex (relay default: unlimited; else at
    /// least 4096). A small limit makes a reconciliation take many rounds.
    pub frame_limit: Option<usize>,
    /// A NEG-OPEN matching more events gets `NEG-ERR "blocked: ..."` (default: no limit).
    pub max_sync_events: Option<usize>,
    /// Most events one REQ filter returns (default: no cap).
    pub max_limit: Option<usize>,
}

impl NegRelayConfig {
    fn args(&self) -> Vec<String> {
        let mut args = Vec::new();
        for (flag, value) in [
            ("-frame-limit", self.frame_limit),
            ("-max-sync-events", self.max_sync_events),
            ("-max-limit", self.max_limit),
        ] {
            if let Some(v) = value {
                args.push(format!("{flag}={v}"));
            }
        }
        args
    }
}

/// `e2e/neg-relay`: an in-memory relay (EVENT, REQ, NIP-77 on go-nostr's negentropy, NIP-11) on
/// a loopback port it picks itself, so no port can be taken between choosing and binding it.
/// The process is killed and its directory removed on drop.
pub struct NegRelay {
    /// `ws://127.0.0.1:PORT`
    pub url: String,
    pub port: u16,
    /// The NIP-11 document it answered at start.
    pub nip11: serde_json::Value,
    proc: Guarded,
    dir: tempfile::TempDir,
}

impl NegRelay {
    /// Starts one with default settings.
    pub async fn start() -> NegRelay {
        Self::start_with(&NegRelayConfig::default()).await
    }

    /// Starts one with `config`; panics (with its log) if it does not come up.
    pub async fn start_with(config: &NegRelayConfig) -> NegRelay {
        let bin = Tool::NegRelay.path();
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("neg-relay.log");
        let mut cmd = Command::new(&bin);
        // Port 0: the relay binds a free port and names it in its ready line.
        cmd.args(config.args()).arg("0").current_dir(dir.path());
        let mut proc = Guarded::spawn(cmd, &log);
        let deadline = Instant::now() + READY_WITHIN;
        let port = loop {
            if let Ok(Some(status)) = proc.child.try_wait() {
                panic!("neg-relay exited with {status}:\n{}", proc.log());
            }
            let ready = proc
                .log()
                .lines()
                .find_map(|l| l.strip_prefix("neg-relay ready ws://127.0.0.1:"))
                .and_then(|p| p.trim().parse::<u16>().ok());
            if let Some(port) = ready {
                break port;
            }
            assert!(
                Instant::now() < deadline,
                "neg-relay printed no ready line within {READY_WITHIN:?}:\n{}",
                proc.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        match proc.wait_ready(port).await {
            Ok(nip11) => NegRelay {
                url: format!("ws://127.0.0.1:{port}"),
                port,
                nip11,
                proc,
                dir,
            },
            Err(e) => panic!("neg-relay did not answer: {e}\n{}", proc.log()),
        }
    }

    /// Everything the relay logged so far (for assertion messages).
    pub fn log(&self) -> String {
        self.proc.log()
    }
}

/// One verdict of `e2e/verify-event.mjs` or `e2e/go-verify` (same JSON line format).
#[derive(Clone, Debug, serde::Deserialize)]
pub struct Verdict {
    /// The id is the event's hash and the signature checks against it.
    pub valid: bool,
    /// The verifier's own hash of the event (hex); `None` when the line did not parse.
    pub hash: Option<String>,
    pub error: Option<String>,
}

/// Feeds `events` as JSON lines to a verifier and reads one [`Verdict`] per event.
fn check_with(mut cmd: Command, events: &[nostr::Event]) -> Vec<Verdict> {
    let input: String = events.iter().map(|e| e.as_json() + "\n").collect();
    let out = run_with_stdin(&mut cmd, input.into_bytes());
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let verdicts: Vec<Verdict> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("verdict line {l:?}: {e}")))
        .collect();
    assert_eq!(
        verdicts.len(),
        events.len(),
        "{cmd:?}: one verdict per event"
    );
    verdicts
}

/// nostr-tools' verdict on each event, in order.
pub fn check_with_nostr_tools(events: &[nostr::Event]) -> Vec<Verdict> {
    let mut cmd = Command::new("node");
    cmd.arg(Tool::NostrTools.path());
    check_with(cmd, events)
}

/// Whether nostr-tools' `verifyEvent` accepts each event, in order.
pub fn verify_with_nostr_tools(events: &[nostr::Event]) -> Vec<bool> {
    check_with_nostr_tools(events)
        .into_iter()
        .map(|v| v.valid)
        .collect()
}

/// go-nostr's verdict on each event, in order.
pub fn check_with_go_nostr(events: &[nostr::Event]) -> Vec<Verdict> {
    check_with(Command::new(Tool::GoNostr.path()), events)
}

/// Whether go-nostr (`GetID` and `CheckSignature`) accepts each event, in order.
pub fn verify_with_go_nostr(events: &[nostr::Event]) -> Vec<bool> {
    check_with_go_nostr(events)
        .into_iter()
        .map(|v| v.valid)
        .collect()
}

/// Runs `cmd` with `input` on stdin (written from a thread, so a chatty child cannot deadlock).
fn run_with_stdin(cmd: &mut Command, input: Vec<u8>) -> std::process::Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().expect("wait");
    writer.join().expect("stdin writer").expect("write stdin");
    out
}

/// Waits for `prefix<port>` in a peer's log (peers that pick their own port print it).
async fn port_from_log(proc: &mut Guarded, what: &str, prefix: &str) -> u16 {
    let deadline = Instant::now() + READY_WITHIN;
    loop {
        if let Ok(Some(status)) = proc.child.try_wait() {
            panic!("{what} exited with {status}:\n{}", proc.log());
        }
        let port = proc.log().lines().find_map(|l| {
            let rest = &l[l.find(prefix)? + prefix.len()..];
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse::<u16>().ok()
        });
        if let Some(port) = port {
            return port;
        }
        assert!(
            Instant::now() < deadline,
            "{what} printed no ready line within {READY_WITHIN:?}:\n{}",
            proc.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// PyPI's `nostr-relay` (Python, SQLite) on a loopback port, killed on drop. With `auth`, reading
/// and writing need NIP-42 AUTH by one of `authorized` (the relay's roles are an allow-list).
pub struct PyRelay {
    /// `ws://127.0.0.1:PORT`
    pub url: String,
    pub port: u16,
    pub nip11: serde_json::Value,
    proc: Guarded,
    dir: tempfile::TempDir,
}

impl PyRelay {
    pub async fn start(auth: bool, authorized: &[nostr::PublicKey]) -> PyRelay {
        let bin = Tool::PyRelay.path();
        let dir = tempfile::tempdir().expect("tempdir");
        let mut last = String::new();
        for _ in 0..3 {
            // The AUTH `relay` tag must equal a configured URL, port included: choose it now.
            let port = free_port();
            let conf = dir.path().join("relay.yaml");
            std::fs::write(&conf, Self::config(port, dir.path(), auth)).expect("write config");
            let mut cmd = Command::new(&bin);
            cmd.arg("-c")
                .arg(&conf)
                .args(["serve", "--use-uvicorn"])
                .current_dir(dir.path());
            let mut proc = Guarded::spawn(cmd, &dir.path().join("relay.log"));
            match proc.wait_ready(port).await {
                Ok(nip11) => {
                    for pk in authorized {
                        let out = Command::new(&bin)
                            .arg("-c")
                            .arg(&conf)
                            .args(["role", "set", "-p", &pk.to_hex(), "-r", "rw"])
                            .output()
                            .expect("role set");
                        assert!(out.status.success(), "role set: {out:?}");
                    }
                    return PyRelay {
                        url: format!("ws://127.0.0.1:{port}"),
                        port,
                        nip11,
                        proc,
                        dir,
                    };
                }
                Err(e) => last = format!("{e}\n--- log ---\n{}", proc.log()),
            }
        }
        panic!("py-relay did not start: {last}");
    }

    fn config(port: u16, dir: &Path, auth: bool) -> String {
        let mut c = format!(
            "relay_name: brotr py-relay\nstorage:\n  sqlalchemy.url: sqlite+aiosqlite:///{}/nostr.sqlite3\ngunicorn:\n  bind: 127.0.0.1:{port}\n  loglevel: info\n",
            dir.display()
        );
        if auth {
            let _ = write!(
                c,
                "authentication:\n  enabled: true\n  relay_urls: [ws://127.0.0.1:{port}, ws://127.0.0.1:{port}/]\n  actions: {{save: w, query: r}}\n"
            );
        }
        c
    }

    pub fn log(&self) -> String {
        self.proc.log()
    }
}

/// How `e2e/ts-relay` asks for NIP-42.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TsAuth {
    None,
    Both,
}

/// `@nostr-relay/core` behind `e2e/ts-relay` (TypeScript, in-memory SQLite) on a port it picks,
/// killed on drop.
pub struct TsRelay {
    /// `ws://127.0.0.1:PORT`
    pub url: String,
    pub port: u16,
    pub nip11: serde_json::Value,
    proc: Guarded,
    dir: tempfile::TempDir,
}

impl TsRelay {
    pub async fn start(auth: TsAuth) -> TsRelay {
        let script = Tool::TsRelay.path();
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cmd = Command::new("node");
        cmd.arg(&script).args(["--port", "0", "--auth"]);
        cmd.arg(match auth {
            TsAuth::None => "none",
            TsAuth::Both => "both",
        });
        cmd.current_dir(dir.path());
        let mut proc = Guarded::spawn(cmd, &dir.path().join("relay.log"));
        let port = port_from_log(&mut proc, "ts-relay", "ts-relay ready ws://127.0.0.1:").await;
        match proc.wait_ready(port).await {
            Ok(nip11) => TsRelay {
                url: format!("ws://127.0.0.1:{port}"),
                port,
                nip11,
                proc,
                dir,
            },
            Err(e) => panic!("ts-relay did not answer: {e}\n{}", proc.log()),
        }
    }

    pub fn log(&self) -> String {
        self.proc.log()
    }
}
