//! DNS check with hickory: A (with TTL), AAAA, CNAME, NS of the registrable domain, PTR of the
//! first A. Each query may fail alone; nothing found at all is a failure.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{Name, RData, RecordType};

use crate::monitor::report::{Check, DnsData};

/// A resolver: the system's, or one server (`ip:port`, tests and private deployments).
pub fn resolver(server: Option<SocketAddr>, timeout: Duration) -> Result<TokioResolver, String> {
    let mut builder = match server {
        Some(addr) => {
            let mut udp = ConnectionConfig::udp();
            udp.port = addr.port();
            let mut tcp = ConnectionConfig::tcp();
            tcp.port = addr.port();
            let ns = NameServerConfig::new(addr.ip(), true, vec![udp, tcp]);
            TokioResolver::builder_with_config(
                ResolverConfig::from_name_servers(vec![ns]),
                TokioRuntimeProvider::default(),
            )
        }
        None => TokioResolver::builder_tokio().map_err(|e| e.to_string())?,
    };
    let opts = builder.options_mut();
    opts.timeout = timeout;
    opts.attempts = 1;
    builder.build().map_err(|e| e.to_string())
}

/// Fully qualified form of `host` so search domains are never appended.
fn fqdn(host: &str) -> String {
    if host.ends_with('.') {
        host.to_owned()
    } else {
        format!("{host}.")
    }
}

fn name_str(n: &Name) -> String {
    n.to_utf8().trim_end_matches('.').to_owned()
}

/// The registrable domain of `host` (public suffix + one label), e.g. `relay.example.co.uk` →
/// `example.co.uk`.
pub fn registrable_domain(host: &str) -> Option<String> {
    psl::domain_str(host.trim_end_matches('.')).map(str::to_owned)
}

/// Runs every query within `timeout` overall.
pub async fn check(resolver: &TokioResolver, host: &str, timeout: Duration) -> Check<DnsData> {
    if host.parse::<IpAddr>().is_ok() || host.starts_with('[') {
        return Check::failed("host is an IP address");
    }
    match tokio::time::timeout(timeout, query_all(resolver, host)).await {
        Ok(data) if data == DnsData::default() => Check::failed("no DNS records found"),
        Ok(data) => Check::ok(data),
        Err(_) => Check::failed(format!("DNS queries not done within {timeout:?}")),
    }
}

async fn query_all(resolver: &TokioResolver, host: &str) -> DnsData {
    let name = fqdn(host);
    let mut data = DnsData::default();
    let (a, aaaa, cname, ns) = tokio::join!(
        resolver.lookup(name.as_str(), RecordType::A),
        resolver.lookup(name.as_str(), RecordType::AAAA),
        resolver.lookup(name.as_str(), RecordType::CNAME),
        async {
            match registrable_domain(host) {
                Some(d) => Some(resolver.lookup(fqdn(&d).as_str(), RecordType::NS).await),
                None => None,
            }
        }
    );
    if let Ok(a) = a {
        for r in a.answers() {
            match &r.data {
                RData::A(ip) => {
                    data.dns_ips.push(ip.0.to_string());
                    data.dns_ttl.get_or_insert(r.ttl);
                }
                RData::CNAME(c) if data.dns_cname.is_none() => {
                    data.dns_cname = Some(name_str(&c.0));
                }
                _ => {}
            }
        }
    }
    if let Ok(aaaa) = aaaa {
        for r in aaaa.answers() {
            if let RData::AAAA(ip) = &r.data {
                data.dns_ips_v6.push(ip.0.to_string());
            }
        }
    }
    if data.dns_cname.is_none()
        && let Ok(c) = cname
    {
        data.dns_cname = c.answers().iter().find_map(|r| match &r.data {
            RData::CNAME(c) => Some(name_str(&c.0)),
            _ => None,
        });
    }
    if let Some(Ok(ns)) = ns {
        data.dns_ns = ns
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::NS(n) => Some(name_str(&n.0)),
                _ => None,
            })
            .collect();
        data.dns_ns.sort();
    }
    if let Some(first) = data.dns_ips.first().and_then(|s| s.parse::<IpAddr>().ok()) {
        let ptr_name = Name::from(first);
        if let Ok(ptr) = resolver.lookup(ptr_name, RecordType::PTR).await {
            data.dns_reverse = ptr.answers().iter().find_map(|r| match &r.data {
                RData::PTR(p) => Some(name_str(&p.0)),
                _ => None,
            });
        }
    }
    data
}

/// Addresses of `host` for the geo and net checks: the literal itself, else A then AAAA.
pub async fn addresses(resolver: &TokioResolver, host: &str) -> Vec<IpAddr> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return vec![ip];
    }
    match resolver.lookup_ip(fqdn(host).as_str()).await {
        Ok(l) => l.iter().collect(),
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registrable_domains() {
        for (host, want) in [
            ("relay.damus.io", Some("damus.io")),
            ("a.b.example.co.uk", Some("example.co.uk")),
            ("example.com", Some("example.com")),
            ("nos.lol.", Some("nos.lol")),
        ] {
            assert_eq!(registrable_domain(host).as_deref(), want, "{host}");
        }
    }
}
