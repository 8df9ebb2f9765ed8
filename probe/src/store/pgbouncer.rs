//! A PgBouncer in front of a server the probe knows only by its URL: the `[databases]` entry,
//! the server-side TLS settings and the auth file, derived from that URL (`brotr-probe
//! pooler-config`). The operator renders such a pooler in front of an external database: its
//! pod writes these files at start from the URL Secret, so no secret is copied into a
//! ConfigMap and the URL is parsed once, here, with its percent-encoding.
//!
//! The clients reach the pooler with the same URL pointed elsewhere ([`DatabaseUrl::via`]):
//! same user, password and database name, the pooler's host and port.

use percent_encoding::percent_decode_str;

use super::{DatabaseUrl, StoreError};

/// What PgBouncer needs to front one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgBouncerFiles {
    /// Included at the end of the `[pgbouncer]` section: `server_tls_*`, then the
    /// `[databases]` entry. Holds no secret.
    pub server_ini: String,
    /// PgBouncer's `auth_file`: the URL's user and password (the pooler answers its clients'
    /// SCRAM with it and logs in to the server with it).
    pub userlist: String,
}

/// The TLS modes libpq and PgBouncer's `server_tls_sslmode` share.
const SSL_MODES: [&str; 6] = [
    "disable",
    "allow",
    "prefer",
    "require",
    "verify-ca",
    "verify-full",
];

/// The URL's query parameters that choose the server or its TLS, which a URL pointed at a
/// pooler must not keep.
const SERVER_PARAMS: [&str; 8] = [
    "host",
    "hostaddr",
    "port",
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "sslpassword",
];

fn bad(url: &DatabaseUrl, reason: impl Into<String>) -> StoreError {
    StoreError::BadUrl {
        url: url.redacted(),
        reason: reason.into(),
    }
}

fn decode(s: &str) -> Result<String, String> {
    percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| "a percent-encoded part is not UTF-8".to_owned())
}

/// Characters PgBouncer's config takes as they are in a host or database name (no quoting
/// games: anything else is refused, naming the part).
fn plain(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'))
}

/// A value of PgBouncer's auth file: in double quotes, a double quote doubled.
fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

impl PgBouncerFiles {
    /// The files for the server `url` names. `ca_file` is the CA the server's certificate is
    /// checked against when the URL has no `sslrootcert` (the pods' `PGSSLROOTCERT`).
    pub fn for_server(url: &DatabaseUrl, ca_file: Option<&str>) -> Result<Self, StoreError> {
        let DatabaseUrl::Postgres(raw) = url else {
            return Err(bad(
                url,
                "a pooler fronts a PostgreSQL server: a postgres:// URL",
            ));
        };
        let u = url::Url::parse(raw).map_err(|e| bad(url, e.to_string()))?;
        let mut sslmode = "prefer".to_owned();
        let mut rootcert = ca_file.map(str::to_owned);
        for (k, v) in u.query_pairs() {
            match k.as_ref() {
                "host" | "hostaddr" => {
                    return Err(bad(
                        url,
                        "the pooler reaches the server over TCP: give the host in the URL's \
                         authority, not as a query parameter",
                    ));
                }
                "sslmode" => {
                    if !SSL_MODES.contains(&v.as_ref()) {
                        return Err(bad(
                            url,
                            format!("sslmode {v:?} is none of {}", SSL_MODES.join(", ")),
                        ));
                    }
                    sslmode = v.into_owned();
                }
                "sslrootcert" => rootcert = Some(v.into_owned()),
                _ => {}
            }
        }
        let host = u
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad(url, "no host"))?;
        // An IPv6 address comes in brackets; PgBouncer takes it bare.
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if !plain(host) {
            return Err(bad(
                url,
                "the host has characters a pooler config cannot hold",
            ));
        }
        let port = u.port().unwrap_or(5432);
        let user = decode(u.username()).map_err(|r| bad(url, r))?;
        if user.is_empty() {
            return Err(bad(
                url,
                "no user: the pooler logs in to the server as the URL's user",
            ));
        }
        let password = decode(u.password().unwrap_or("")).map_err(|r| bad(url, r))?;
        if password.is_empty() {
            return Err(bad(
                url,
                "no password: the pooler's clients log in with the URL's password (SCRAM)",
            ));
        }
        if [&user, &password]
            .iter()
            .any(|s| s.contains(['\n', '\r', '\0']))
        {
            return Err(bad(url, "the user or password holds a line break or NUL"));
        }
        let database = decode(u.path().trim_start_matches('/')).map_err(|r| bad(url, r))?;
        let database = if database.is_empty() {
            user.clone()
        } else {
            database
        };
        if !plain(&database) || database.contains(':') {
            return Err(bad(
                url,
                "the database name has characters a pooler config cannot hold (a-z, 0-9, \
                 '.', '-', '_')",
            ));
        }
        let mut server_ini = String::from(
            "; Written by brotr-probe pooler-config from the server's URL at the pod's start.\n",
        );
        server_ini.push_str(&format!("server_tls_sslmode = {sslmode}\n"));
        if let Some(ca) = rootcert.filter(|_| sslmode != "disable") {
            if ca.contains(['\n', '\r', '\0']) {
                return Err(bad(url, "sslrootcert holds a line break or NUL"));
            }
            server_ini.push_str(&format!("server_tls_ca_file = {ca}\n"));
        }
        server_ini.push_str(&format!(
            "\n[databases]\n{database} = host={host} port={port} dbname={database}\n"
        ));
        Ok(PgBouncerFiles {
            server_ini,
            userlist: format!("{} {}\n", quoted(&user), quoted(&password)),
        })
    }
}

impl DatabaseUrl {
    /// The same database reached through a pooler at `addr` (`HOST:PORT`): the URL's user,
    /// password, database and other parameters, with that host and port and TLS off on the hop
    /// to the pooler (it listens in the cluster without TLS; it speaks TLS to the server).
    pub fn via(&self, addr: &str) -> Result<DatabaseUrl, StoreError> {
        let DatabaseUrl::Postgres(raw) = self else {
            return Err(bad(self, "--db-via needs a postgres:// URL"));
        };
        let (host, port) = addr
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)))
            .filter(|(h, p)| !h.is_empty() && *p > 0)
            .ok_or_else(|| StoreError::BadUrl {
                url: format!("--db-via {addr}"),
                reason: "expected HOST:PORT".into(),
            })?;
        let mut u = url::Url::parse(raw).map_err(|e| bad(self, e.to_string()))?;
        u.set_host(Some(host)).map_err(|e| StoreError::BadUrl {
            url: format!("--db-via {addr}"),
            reason: e.to_string(),
        })?;
        u.set_port(Some(port))
            .map_err(|()| bad(self, "the URL cannot take a port"))?;
        let kept: Vec<(String, String)> = u
            .query_pairs()
            .filter(|(k, _)| !SERVER_PARAMS.contains(&k.as_ref()))
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        u.query_pairs_mut()
            .clear()
            .extend_pairs(kept)
            .append_pair("sslmode", "disable");
        Ok(DatabaseUrl::Postgres(u.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> DatabaseUrl {
        s.parse().unwrap()
    }

    #[test]
    fn the_files_hold_the_server_and_the_decoded_login() {
        let f = PgBouncerFiles::for_server(
            &url("postgres://brotr%40app:p%40ss%20%22w%22%3Ard@db.example.net:6543/archive?sslmode=verify-full&application_name=x"),
            Some("/etc/brotr/ca.crt"),
        )
        .unwrap();
        assert!(f.server_ini.contains("server_tls_sslmode = verify-full\n"));
        assert!(
            f.server_ini
                .contains("server_tls_ca_file = /etc/brotr/ca.crt\n")
        );
        assert!(
            f.server_ini
                .contains("[databases]\narchive = host=db.example.net port=6543 dbname=archive\n")
        );
        assert!(!f.server_ini.contains("p@ss"), "no password in the config");
        assert_eq!(f.userlist, "\"brotr@app\" \"p@ss \"\"w\"\":rd\"\n");
    }

    #[test]
    fn defaults_follow_libpq_and_sslrootcert_wins() {
        let f = PgBouncerFiles::for_server(&url("postgres://u:p@10.0.0.7/"), None).unwrap();
        assert!(f.server_ini.contains("server_tls_sslmode = prefer\n"));
        assert!(!f.server_ini.contains("server_tls_ca_file"));
        assert!(
            f.server_ini
                .contains("u = host=10.0.0.7 port=5432 dbname=u\n")
        );
        let f = PgBouncerFiles::for_server(
            &url("postgres://u:p@[fd00::7]:5433/d?sslmode=require&sslrootcert=/ca.pem"),
            Some("/other.pem"),
        )
        .unwrap();
        assert!(f.server_ini.contains("server_tls_ca_file = /ca.pem\n"));
        assert!(
            f.server_ini
                .contains("d = host=fd00::7 port=5433 dbname=d\n")
        );
    }

    #[test]
    fn what_a_pooler_cannot_front_is_refused_naming_the_part() {
        for (u, why) in [
            ("postgres://u@h/d", "no password"),
            ("postgres://:p@h/d", "no user"),
            ("postgres://u:p@h/d?host=/run/postgresql", "over TCP"),
            (
                "postgres://u:p@h/d?sslmode=sometimes",
                "sslmode \"sometimes\"",
            ),
            ("postgres://u:p@h/we%20ird", "database name"),
            ("postgres://u:p%0Aq@h/d", "line break"),
            ("./brotr.db", "postgres:// URL"),
        ] {
            let e = PgBouncerFiles::for_server(&url(u), None)
                .unwrap_err()
                .to_string();
            assert!(e.contains(why), "{u}: {e}");
            assert!(!e.contains(":p@"), "{u}: the password is redacted: {e}");
        }
    }

    #[test]
    fn via_points_the_url_at_the_pooler_without_tls() {
        let v = url("postgres://u:p%40w@db.example.net:6543/archive?sslmode=verify-full&sslrootcert=/ca.pem&application_name=x")
            .via("p-pooler.ns.svc:5432")
            .unwrap();
        let DatabaseUrl::Postgres(s) = &v else {
            panic!("{v:?}")
        };
        assert_eq!(
            s,
            "postgres://u:p%40w@p-pooler.ns.svc:5432/archive?application_name=x&sslmode=disable"
        );
        for bad in ["p-pooler", ":5432", "h:0", "h:x"] {
            let e = url("postgres://u:p@h/d").via(bad).unwrap_err().to_string();
            assert!(e.contains("HOST:PORT") && e.contains(bad), "{e}");
        }
        let e = url("./brotr.db").via("h:1").unwrap_err().to_string();
        assert!(e.contains("--db-via needs a postgres:// URL"), "{e}");
    }
}
