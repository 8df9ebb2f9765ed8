//! ConfigMaps: the probe's config file, and relay lists (seeds, monitor targets).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;

use super::{ChildKind, Desired, Owner};

/// The ConfigMap holding `probe.yaml`.
pub fn probe_config(owner: &Owner, name: &str, text: &str) -> Desired {
    config_map(owner, name, "config", "probe.yaml", text.to_owned())
}

/// A ConfigMap holding `relays.txt`, one URL per line.
pub fn relay_list(owner: &Owner, name: &str, component: &str, relays: &[String]) -> Desired {
    let mut text = relays.join("\n");
    text.push('\n');
    config_map(owner, name, component, "relays.txt", text)
}

fn config_map(owner: &Owner, name: &str, component: &str, key: &str, text: String) -> Desired {
    let cm = ConfigMap {
        metadata: owner.meta(name, component),
        data: Some(BTreeMap::from([(key.to_owned(), text)])),
        ..Default::default()
    };
    Desired::new(ChildKind::ConfigMap, &cm)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_lists_are_one_url_per_line() {
        let o = Owner {
            kind: "RelayMonitor",
            name: "m".into(),
            namespace: "ns".into(),
            uid: "u".into(),
        };
        let d = relay_list(
            &o,
            "m-rmon-targets",
            "targets",
            &["wss://a".into(), "wss://b".into()],
        );
        assert_eq!(d.object["data"]["relays.txt"], "wss://a\nwss://b\n");
        assert_eq!(
            d.object["metadata"]["labels"]["app.kubernetes.io/component"],
            "targets"
        );
    }
}
