//! Dialing over TLS (local CA) and SOCKS5 (overlay names resolved by the proxy), against real
//! relays on loopback.

mod common;

use std::net::SocketAddr;

use brotr_probe::config::{LimitsConfig, NetworksConfig};
use brotr_probe::model::{Network, RelayUrl};
use brotr_probe::net::relay::{Answer, speaks_nostr as probe_nostr};
use brotr_probe::net::{DialError, Dialer, RelayError, tls_config};
use common::peers::*;
use nostr_relay_builder::prelude::*;

async fn relay_addr() -> (LocalRelay, SocketAddr) {
    let (relay, url) = nostr_relay(RelayBuilder::default()).await;
    let addr: SocketAddr = url.trim_start_matches("ws://").parse().expect("relay addr");
    (relay, addr)
}

fn local(url: &str) -> RelayUrl {
    RelayUrl::parse_allowing_local(url).expect("test url")
}

fn dialer(
    networks: NetworksConfig,
    roots: &[rustls::pki_types::CertificateDer<'static>],
) -> Dialer {
    Dialer::new(
        networks,
        LimitsConfig {
            allow_private: true,
            ..Default::default()
        },
        tls_config(roots),
    )
}

#[tokio::test]
async fn wss_through_a_local_ca_validates_and_bad_certificates_do_not() {
    let (_relay, backend) = relay_addr().await;
    let ca = LocalCa::new();
    let good = ca.tls_front(&["localhost"], backend).await;
    let wrong_host = ca.tls_front(&["other.example.com"], backend).await;
    let url = local(&format!("wss://localhost:{}", good.port()));

    let trusting = dialer(NetworksConfig::default(), std::slice::from_ref(&ca.ca_der));
    assert_eq!(probe_nostr(&trusting, &url).await.unwrap(), Answer("EOSE"));

    // Same server, but the CA is not trusted: the web PKI alone must refuse it.
    let strict = dialer(NetworksConfig::default(), &[]);
    let err = probe_nostr(&strict, &url).await.unwrap_err();
    assert!(
        matches!(err, RelayError::Dial(DialError::Handshake { .. })),
        "{err}"
    );
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );

    // Trusted CA, wrong name on the certificate.
    let wrong = local(&format!("wss://localhost:{}", wrong_host.port()));
    let err = probe_nostr(&trusting, &wrong).await.unwrap_err();
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
}

#[tokio::test]
async fn onion_relays_go_through_socks5_with_remote_dns() {
    let (_relay, backend) = relay_addr().await;
    let (proxy, seen) = socks5_proxy(backend).await;
    let mut networks = NetworksConfig::default();
    networks.enable_overlay(Network::Tor, format!("socks5://{proxy}"));
    networks.tor.timeout_secs = Some(5.0);
    let d = dialer(networks, &[]);
    let onion = format!("{}d.onion", "b".repeat(55));
    let url = RelayUrl::parse(&format!("ws://{onion}")).unwrap();
    assert_eq!(url.network(), Network::Tor);
    assert_eq!(probe_nostr(&d, &url).await.unwrap(), Answer("EOSE"));
    assert_eq!(
        *seen.lock().unwrap(),
        vec![format!("{onion}:80")],
        "the proxy, not us, resolved the name"
    );
}

#[tokio::test]
async fn a_dead_proxy_is_a_clear_error() {
    let closed = closed_port().await;
    let mut networks = NetworksConfig::default();
    networks.enable_overlay(Network::Tor, format!("socks5://{closed}"));
    let d = dialer(networks, &[]);
    let url = RelayUrl::parse(&format!("ws://{}d.onion", "c".repeat(55))).unwrap();
    let err = probe_nostr(&d, &url).await.unwrap_err();
    assert!(
        matches!(err, RelayError::Dial(DialError::Proxy { .. })),
        "{err}"
    );
    assert!(err.to_string().contains(&closed.to_string()), "{err}");
}

#[tokio::test]
async fn a_disabled_network_is_not_dialed() {
    let d = dialer(NetworksConfig::default(), &[]);
    let url = RelayUrl::parse(&format!("ws://{}d.onion", "d".repeat(55))).unwrap();
    let err = probe_nostr(&d, &url).await.unwrap_err();
    assert!(err.to_string().contains("network tor is disabled"), "{err}");
}
