//! Prometheus Operator objects, rendered only where their CRDs are installed: a ServiceMonitor
//! for the metrics Service. (Alerts come from the Helm chart's one PrometheusRule.)

use serde_json::json;

use super::{ChildKind, Desired, INSTANCE, OWNER_KIND, Owner};

pub fn service_monitor(owner: &Owner, name: &str) -> Desired {
    let obj = json!({
        "metadata": owner.meta(name, "metrics"),
        "spec": {
            "selector": {"matchLabels": {
                INSTANCE: owner.name,
                OWNER_KIND: owner.kind,
                super::COMPONENT: "metrics",
            }},
            // The probe's `service` label (finder, monitor…) is its own, not the Service's name
            // the Prometheus Operator would put there; the alerts group by it.
            "endpoints": [{"port": "metrics", "path": "/metrics", "interval": "30s", "honorLabels": true}],
        },
    });
    Desired::new(ChildKind::ServiceMonitor, &obj)
}
