//! invar-testkit: what invar's tests share: a webhook receiver, and the one policy for tests
//! that need a real server on loopback — under `CI` a missing server fails the test loudly
//! (it must never be skipped quietly); on a developer's machine the test says, loudly, that
//! it skipped.

// A dev-dependency only: its job is to fail the test that uses it, loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Whether `CI` is set to something truthy (CI runs `.ci/run` with `CI=true`).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// `host:port` of a URL with a numeric host (`postgres://u:p@127.0.0.1:5432/db` → `127.0.0.1:5432`).
pub fn url_addr(url: &str) -> Option<String> {
    let authority = url.split("://").nth(1)?.split(['/', '?']).next()?;
    let hostport = authority.rsplit('@').next()?;
    hostport.parse::<SocketAddr>().ok().map(|a| a.to_string())
}

/// Whether `what` answers on TCP at `addr`. If not: panics under `CI` (naming `how_to_start`),
/// otherwise prints a loud warning and returns false so the caller can skip.
pub fn server_up(what: &str, addr: &str, how_to_start: &str) -> bool {
    let up = addr
        .parse::<SocketAddr>()
        .is_ok_and(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok());
    if up {
        return true;
    }
    skip(
        &format!("{what} is not reachable at {addr}"),
        &format!("start it with: {how_to_start}"),
    );
    false
}

/// The one way a test gives up for want of a server or a tool: under `CI` it fails, naming
/// `why` and `how`; elsewhere it prints a loud banner and writes a line to the skip ledger
/// (`INVAR_SKIP_LEDGER`, set by `scripts/test.sh`), which prints every skipped test after
/// the run — so a missing server is never a silent `ok`.
pub fn skip(why: &str, how: &str) {
    let ledger = std::env::var_os("INVAR_SKIP_LEDGER").map(std::path::PathBuf::from);
    skip_with(in_ci(), ledger.as_deref(), why, how);
}

fn skip_with(ci: bool, ledger: Option<&std::path::Path>, why: &str, how: &str) {
    if ci {
        panic!("{why} and CI is set; {how}");
    }
    let test = std::thread::current()
        .name()
        .unwrap_or("(unnamed test)")
        .to_string();
    eprintln!("\n!!!!!!!! WARNING: {why}; this test is SKIPPED. {how} !!!!!!!!\n");
    if let Some(ledger) = ledger {
        use std::io::Write;
        let line = format!("{test}: {why} ({how})\n");
        let _ = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(ledger)
            .and_then(|mut f| f.write_all(line.as_bytes()));
    }
}

/// [`server_up`] for the server a URL points at.
pub fn url_up(what: &str, url: &str, how_to_start: &str) -> bool {
    match url_addr(url) {
        Some(addr) => server_up(what, &addr, how_to_start),
        None => server_up(what, "(no numeric host:port in its URL)", how_to_start),
    }
}

/// A minimal HTTP/1.1 receiver on 127.0.0.1 for alert sinks: answers 200 to every request
/// and keeps each JSON body. Returns the URL (`http://ADDR{path}`) and the bodies so far.
pub fn json_receiver(
    path: &str,
) -> (
    String,
    std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}{path}", listener.local_addr().unwrap());
    let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = bodies.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0u8; len];
            let _ = reader.read_exact(&mut body);
            if let Ok(j) = serde_json::from_slice(&body) {
                seen.lock().unwrap().push(j);
            }
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    (url, bodies)
}

/// What `promtool check metrics` says of `text`: (clean — exit 0 and nothing printed, its
/// output). None when promtool (Debian `prometheus`, installed by
/// `scripts/ensure-services.sh`) is missing: a failure under `CI`, a loud skip elsewhere.
pub fn promtool_check_metrics(text: &str) -> Option<(bool, String)> {
    use std::io::Write;
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("promtool"))
            .find(|p| p.is_file())
    });
    let debian = std::path::PathBuf::from("/usr/bin/promtool");
    let Some(promtool) = on_path.or_else(|| debian.is_file().then_some(debian)) else {
        skip(
            "promtool is not installed",
            "install it with `bash scripts/ensure-services.sh` (Debian package `prometheus`)",
        );
        return None;
    };
    let mut child = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some((out.status.success() && said.trim().is_empty(), said))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_addr_reads_host_and_port() {
        assert_eq!(
            url_addr("postgres://u:p@127.0.0.1:5432/db?x=1").as_deref(),
            Some("127.0.0.1:5432")
        );
        assert_eq!(
            url_addr("mysql://root@127.0.0.1:3306/test").as_deref(),
            Some("127.0.0.1:3306")
        );
        assert_eq!(url_addr("postgres://db.internal/app"), None);
    }
}

#[cfg(test)]
mod skips {
    use super::*;

    #[test]
    fn a_skip_is_written_to_the_ledger_with_the_test_name() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = dir.path().join("skips");
        skip_with(false, Some(&ledger), "redis is not reachable", "start it");
        let text = std::fs::read_to_string(&ledger).unwrap();
        assert_eq!(
            text,
            "skips::a_skip_is_written_to_the_ledger_with_the_test_name: redis is not reachable (start it)\n"
        );
    }

    #[test]
    #[should_panic(expected = "redis is not reachable and CI is set; start it")]
    fn under_ci_a_skip_fails() {
        skip_with(true, None, "redis is not reachable", "start it");
    }
}
