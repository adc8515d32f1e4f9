//! `server:` — where `invar watch` listens, and the API tokens (secrets: never echoed).

use crate::cx::{Cx, sub};
use crate::yaml::Node;
use invar_core::{Secret, Server};

const SERVER_KEYS: &[&str] = &["listen", "admin_token", "read_token", "overdue_after"];

/// API tokens shorter than this are refused: a bearer token is the only thing guarding runs.
const MIN_TOKEN_LEN: usize = 16;

pub(crate) fn server(cx: &mut Cx, node: Option<&Node>) -> Server {
    let mut out = Server::default();
    let Some(node) = node else {
        return out;
    };
    let Some(f) = cx.map(node, "server", SERVER_KEYS, &[]) else {
        return out;
    };
    if let Some(e) = f.get("listen")
        && let Some(v) = cx.string(&e.value, "server.listen")
    {
        let port_ok = v
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !port_ok {
            cx.err(
                e.value.pos,
                "server.listen",
                format!("`listen` must be an address `host:port`, found `{v}`"),
                Some("e.g. `127.0.0.1:8080`, `0.0.0.0:8080` or `localhost:8080`".into()),
            );
        } else {
            out.listen = v;
        }
    }
    for key in ["admin_token", "read_token"] {
        let Some(e) = f.get(key) else { continue };
        let path = sub("server", key);
        let Some(v) = cx.string(&e.value, &path) else {
            continue;
        };
        if v.len() < MIN_TOKEN_LEN {
            cx.err(
                e.value.pos,
                &path,
                format!("`{key}` must be at least {MIN_TOKEN_LEN} characters long"),
                Some("its value is not shown: it is a secret; e.g. `openssl rand -hex 24`".into()),
            );
            continue;
        }
        let secret = Some(Secret::new(v));
        if key == "admin_token" {
            out.admin_token = secret;
        } else {
            out.read_token = secret;
        }
    }
    if let Some(e) = f.get("overdue_after")
        && let Some(d) = cx.duration(&e.value, "server.overdue_after")
    {
        out.overdue_after = d;
    }
    out
}
