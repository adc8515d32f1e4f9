//! `rediss://` against a real TLS Redis that each test starts for itself (Debian's
//! `redis-server`, built with TLS, on free loopback ports; stopped by its PID when the test
//! ends), with a throwaway CA, server and client certificates made by the `openssl` CLI in
//! a temporary directory:
//!
//! - set checks over `rediss://` decide exactly as over `redis://` on the same server's data;
//! - a CA that did not sign the server's certificate (and the webpki roots, which know
//!   nothing of a test CA) is an `error` naming the TLS failure, the source unavailable, exit
//!   2, the password nowhere;
//! - an ACL user and password in the URL (and `requirepass`'s password alone) work over TLS
//!   and plain TCP;
//! - mutual TLS (`tls-auth-clients yes`): the client certificate is sent, and without one the
//!   server's refusal is a TLS error.
//!
//! A missing `redis-server` or `openssl` fails the test under `CI` and skips it (loudly)
//! otherwise.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is its job

use invar_core::{InvariantResult, Outcome, RunReport};
use invar_sources::{Engine, RunOptions};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const REDIS_SERVER: &str = "redis-server";
const PASSWORD: &str = "tls-test-s3cret-pw";
const USER: &str = "invar-tls-user";
const USER_PASSWORD: &str = "acl-user-s3cret-pw";

/// Whether `tool` runs (`tool --version` or `tool version`); if not: a panic under `CI`, a
/// loud skip notice otherwise.
fn have(tool: &str, version_arg: &str) -> bool {
    let ok = Command::new(tool)
        .arg(version_arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return true;
    }
    let how = "bash scripts/ensure-services.sh (Debian: apt-get install redis-server openssl)";
    invar_testkit::skip(
        &format!("`{tool}` is not installed"),
        &format!("install it with: {how}"),
    );
    false
}

fn tools() -> bool {
    // Both checked (and reported) even when the first is missing.
    let redis = have(REDIS_SERVER, "--version");
    let openssl = have("openssl", "version");
    redis && openssl
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("running openssl");
    assert!(
        out.status.success(),
        "openssl {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA (`{name}.pem`, `{name}.key`) in `dir`.
fn make_ca(dir: &Path, name: &str) {
    let (pem, key) = (format!("{name}.pem"), format!("{name}.key"));
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &pem,
            "-days",
            "2",
            "-subj",
            &format!("/CN=invar test {name}"),
        ],
    );
}

/// A leaf certificate (`{name}.pem`, `{name}.key`) signed by the CA `ca`, with `ext` (an
/// openssl extension config: its subjectAltName and extendedKeyUsage).
fn make_leaf(dir: &Path, name: &str, ca: &str, ext: &str) {
    let (pem, key, csr, extfile) = (
        format!("{name}.pem"),
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.ext"),
    );
    std::fs::write(dir.join(&extfile), ext).unwrap();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            &format!("/CN=invar test {name}"),
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "2",
            "-extfile",
            &extfile,
        ],
    );
}

/// The throwaway PKI of one test: `ca` signs `server` (127.0.0.1 and localhost) and `client`;
/// `other-ca` signs `stranger` (a client certificate the server must refuse).
fn pki() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    make_ca(d, "ca");
    make_ca(d, "other-ca");
    make_leaf(
        d,
        "server",
        "ca",
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
    );
    make_leaf(d, "client", "ca", "extendedKeyUsage=clientAuth\n");
    make_leaf(d, "stranger", "other-ca", "extendedKeyUsage=clientAuth\n");
    dir
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `redis-server` of this test: a plain port and a TLS port over one dataset, the default
/// user's password `PASSWORD`, and the ACL user `USER`, who may only read (`+@read`, `PING`,
/// `SELECT`: what docs/REDIS.md says a source's user needs). Killed (by its PID) on drop.
struct TlsRedis {
    child: Child,
    plain: u16,
    tls: u16,
    log: PathBuf,
}

impl TlsRedis {
    fn start(pki: &Path, auth_clients: &str) -> TlsRedis {
        let (plain, tls) = (free_port(), free_port());
        let log = pki.join(format!("redis-{tls}.log"));
        let user_pw = format!(">{USER_PASSWORD}");
        let (plain_s, tls_s) = (plain.to_string(), tls.to_string());
        let args: Vec<&str> = vec![
            "--bind",
            "127.0.0.1",
            "--port",
            &plain_s,
            "--tls-port",
            &tls_s,
            "--tls-cert-file",
            "server.pem",
            "--tls-key-file",
            "server.key",
            "--tls-ca-cert-file",
            "ca.pem",
            "--tls-auth-clients",
            auth_clients,
            "--requirepass",
            PASSWORD,
            "--user",
            USER,
            "on",
            &user_pw,
            "~*",
            "+@read",
            "+ping",
            "+select",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--dir",
            ".",
            "--logfile",
            "",
        ];
        let child = Command::new(REDIS_SERVER)
            .args(&args)
            .current_dir(pki)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting redis-server");
        let mut server = TlsRedis {
            child,
            plain,
            tls,
            log,
        };
        server.wait_ready();
        server
    }

    /// Both ports accept connections, or a panic with the server's log.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        let up = |port: u16| {
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        };
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "redis-server exited ({status}) before listening (is it built with TLS?):\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            if up(self.plain) && up(self.tls) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "redis-server did not listen on {} and {} within 15s:\n{}",
            self.plain,
            self.tls,
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    fn plain_url(&self, auth: &str) -> String {
        format!("redis://{auth}@127.0.0.1:{}/0", self.plain)
    }

    fn tls_url(&self, auth: &str) -> String {
        format!("rediss://{auth}@127.0.0.1:{}/0", self.tls)
    }

    /// Runs each command (argv) over the plain port, as the default user.
    fn seed(&self, cmds: &[&[&str]]) {
        let client = redis::Client::open(self.plain_url(&format!(":{PASSWORD}"))).unwrap();
        let mut conn = client
            .get_connection()
            .expect("connecting to the test redis");
        for c in cmds {
            let mut cmd = redis::cmd(c[0]);
            for a in &c[1..] {
                cmd.arg(*a);
            }
            let () = cmd.query(&mut conn).expect("seeding the test redis");
        }
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Loads `yaml` as `dir/invar.yaml` (so `tls` paths resolve against `dir`) and runs it.
async fn run(dir: &Path, yaml: &str) -> RunReport {
    let path = dir.join("invar.yaml");
    std::fs::write(&path, yaml).unwrap();
    let cfg = invar_config::load_with_env(&path, &|_| None)
        .unwrap_or_else(|d| panic!("{}", d.render(false)));
    Engine::new(Arc::new(cfg))
        .run(&RunOptions::default())
        .await
        .report
}

fn result<'a>(r: &'a RunReport, id: &str) -> &'a InvariantResult {
    r.results
        .iter()
        .find(|x| x.id == id)
        .unwrap_or_else(|| panic!("no result {id}"))
}

/// What a run decided, invariant by invariant: everything but timings.
fn decisions(r: &RunReport) -> serde_json::Value {
    let mut v: Vec<serde_json::Value> = r
        .results
        .iter()
        .map(|x| {
            serde_json::json!({
                "id": x.id,
                "outcome": x.outcome,
                "examined": x.examined,
                "violations_total": x.violations_total,
                "violations": x.violations,
                "measured": x.measured,
                "reason": x.reason,
            })
        })
        .collect();
    v.sort_by_key(|x| x["id"].to_string());
    serde_json::Value::Array(v)
}

/// Set checks over the source `cache` (`url`, `tls`): a literal sorted set (over TCP one
/// streamed `ZRANGE`, over TLS `ZSCAN` pages), a pattern walked with SCAN, a set.
fn set_checks(url: &str, tls: &str) -> String {
    format!(
        r#"
sources:
  cache: {{ type: redis, url: "{url}", timeout: 5s{tls} }}
invariants:
  - id: SLOTS
    title: the slot set holds the running executions
    same:
      left:  {{ source: cache, redis: {{ zset: "slots" }}, key: member }}
      right: {{ values: ["e1", "e2", "e4"] }}
  - id: SLOTS-OK
    title: the slot set holds e1, e2 and e3
    same:
      left:  {{ source: cache, redis: {{ zset: "slots" }}, key: member }}
      right: {{ values: ["e1", "e2", "e3"] }}
  - id: AGENTS
    title: every agent with slots is known
    subset:
      each: {{ source: cache, redis: {{ zset: "agent:slots:{{agent}}" }}, key: agent }}
      in:   {{ values: ["alpha"] }}
  - id: TAGS
    title: no tag is banned
    disjoint:
      left:  {{ source: cache, redis: {{ set: "tags" }}, key: member }}
      right: {{ values: ["banned", "x"] }}
"#
    )
}

fn seed_sets(server: &TlsRedis) {
    server.seed(&[
        &["ZADD", "slots", "1", "e1", "2", "e2", "3", "e3"],
        &["ZADD", "agent:slots:alpha", "1", "e1"],
        &["ZADD", "agent:slots:beta", "2", "e2"],
        &["SADD", "tags", "x", "y"],
    ]);
}

fn tls_block(ca: &str) -> String {
    format!(", tls: {{ ca_file: {ca} }}")
}

#[tokio::test]
async fn set_checks_over_rediss_decide_exactly_as_over_redis() {
    if !tools() {
        return;
    }
    let pki = pki();
    let server = TlsRedis::start(pki.path(), "no");
    seed_sets(&server);
    let auth = format!(":{PASSWORD}");
    let plain = run(pki.path(), &set_checks(&server.plain_url(&auth), "")).await;
    let tls = run(
        pki.path(),
        &set_checks(&server.tls_url(&auth), &tls_block("ca.pem")),
    )
    .await;
    assert!(plain.sources_unavailable.is_empty(), "{plain:?}");
    assert!(tls.sources_unavailable.is_empty(), "{tls:?}");
    assert_eq!(decisions(&tls), decisions(&plain));
    // And what they decided is what the data says (so the comparison is not of two errors).
    let outcomes: Vec<(&str, Outcome)> = ["SLOTS", "SLOTS-OK", "AGENTS", "TAGS"]
        .iter()
        .map(|id| (*id, result(&tls, id).outcome))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("SLOTS", Outcome::Fail),
            ("SLOTS-OK", Outcome::Pass),
            ("AGENTS", Outcome::Fail),
            ("TAGS", Outcome::Fail),
        ],
        "{:#}",
        decisions(&tls)
    );
    assert_eq!(
        serde_json::to_value(&result(&tls, "SLOTS").violations).unwrap(),
        serde_json::json!([
            {"side": "only_left", "key": {"member": "e3"}},
            {"side": "only_right", "key": {"value": "e4"}},
        ])
    );
    assert_eq!(tls.exit_code, plain.exit_code);
}

#[tokio::test]
async fn a_wrong_ca_is_an_error_naming_the_tls_failure_without_the_password() {
    if !tools() {
        return;
    }
    let pki = pki();
    let server = TlsRedis::start(pki.path(), "no");
    seed_sets(&server);
    let url = server.tls_url(&format!("{USER}:{USER_PASSWORD}"));
    // A CA that did not sign the server's certificate, and no `tls` (the webpki roots).
    for tls in [tls_block("other-ca.pem"), String::new()] {
        let report = run(pki.path(), &set_checks(&url, &tls)).await;
        for id in ["SLOTS", "SLOTS-OK", "AGENTS", "TAGS"] {
            assert_eq!(result(&report, id).outcome, Outcome::Error, "{tls}: {id}");
        }
        assert_eq!(report.exit_code, 2, "{tls}");
        assert_eq!(report.sources_unavailable.len(), 1, "{report:?}");
        let down = &report.sources_unavailable[0];
        eprintln!("wrong CA ({tls}): {}", down.error);
        assert_eq!(down.source, "cache");
        assert!(
            down.error.contains("TLS handshake failed")
                && down.error.contains("UnknownIssuer")
                && down.error.contains("tls.ca_file"),
            "{tls}: {}",
            down.error
        );
        let reason = result(&report, "SLOTS").reason.clone().unwrap_or_default();
        assert!(reason.contains("TLS handshake failed"), "{reason}");
        let json = serde_json::to_string(&report).unwrap();
        assert!(!json.contains(USER_PASSWORD), "{json}");
        assert!(
            json.contains(&format!("rediss://{USER}:***@127.0.0.1:{}/0", server.tls)),
            "{json}"
        );
    }
}

#[tokio::test]
async fn an_acl_user_and_password_in_the_url_work_over_tls_and_tcp() {
    if !tools() {
        return;
    }
    let pki = pki();
    let server = TlsRedis::start(pki.path(), "no");
    seed_sets(&server);
    let ca = tls_block("ca.pem");
    let user = format!("{USER}:{USER_PASSWORD}");
    let default = format!(":{PASSWORD}");
    for (url, tls) in [
        (server.tls_url(&user), ca.as_str()),
        (server.plain_url(&user), ""),
        (server.tls_url(&default), ca.as_str()),
    ] {
        let report = run(pki.path(), &set_checks(&url, tls)).await;
        assert!(report.sources_unavailable.is_empty(), "{report:?}");
        assert_eq!(result(&report, "SLOTS-OK").outcome, Outcome::Pass);
        assert_eq!(result(&report, "SLOTS").outcome, Outcome::Fail);
    }
    // A wrong password (the right user) is refused: an error that shows neither password.
    for (url, tls) in [
        (
            server.tls_url(&format!("{USER}:not-{USER_PASSWORD}")),
            ca.as_str(),
        ),
        (server.plain_url(&format!("{USER}:not-{USER_PASSWORD}")), ""),
    ] {
        let report = run(pki.path(), &set_checks(&url, tls)).await;
        let r = result(&report, "SLOTS-OK");
        assert_eq!(r.outcome, Outcome::Error, "{r:?}");
        assert_eq!(report.exit_code, 2);
        let json = serde_json::to_string(&report).unwrap();
        assert!(!json.contains(USER_PASSWORD), "{json}");
    }
}

#[tokio::test]
async fn mutual_tls_sends_the_client_certificate() {
    if !tools() {
        return;
    }
    let pki = pki();
    let server = TlsRedis::start(pki.path(), "yes");
    seed_sets(&server);
    let url = server.tls_url(&format!(":{PASSWORD}"));
    let with = |cert: &str| {
        format!(", tls: {{ ca_file: ca.pem, cert_file: {cert}.pem, key_file: {cert}.key }}")
    };
    let report = run(pki.path(), &set_checks(&url, &with("client"))).await;
    assert!(report.sources_unavailable.is_empty(), "{report:?}");
    assert_eq!(result(&report, "SLOTS-OK").outcome, Outcome::Pass);
    assert_eq!(result(&report, "SLOTS").outcome, Outcome::Fail);

    // No client certificate, or one from a CA the server does not trust: refused by the
    // server, an error naming TLS.
    for tls in [tls_block("ca.pem"), with("stranger")] {
        let report = run(pki.path(), &set_checks(&url, &tls)).await;
        assert_eq!(result(&report, "SLOTS-OK").outcome, Outcome::Error, "{tls}");
        assert_eq!(report.exit_code, 2);
        assert_eq!(report.sources_unavailable.len(), 1, "{report:?}");
        let error = &report.sources_unavailable[0].error;
        eprintln!("refused client ({tls}): {error}");
        assert!(error.contains("TLS handshake failed"), "{tls}: {error}");
        let json = serde_json::to_string(&report).unwrap();
        assert!(!json.contains(PASSWORD), "{json}");
    }
}
