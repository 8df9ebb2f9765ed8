//! Prometheus Operator objects, rendered only where their CRDs are installed: a ServiceMonitor
//! for the metrics Service, and a PrometheusRule with the pipeline's default alerts.

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
            "endpoints": [{"port": "metrics", "path": "/metrics", "interval": "30s"}],
        },
    });
    Desired::new(ChildKind::ServiceMonitor, &obj)
}

pub fn prometheus_rule(owner: &Owner, name: &str) -> Desired {
    let sel = format!("namespace=\"{}\"", owner.namespace);
    let obj = json!({
        "metadata": owner.meta(name, "metrics"),
        "spec": {"groups": [{
            "name": format!("brotr-{}", owner.name),
            "rules": [
                {
                    "alert": "BrotrServiceDown",
                    "expr": format!("up{{{sel}, job=\"{}-metrics\"}} == 0", owner.name),
                    "for": "10m",
                    "labels": {"severity": "warning"},
                    "annotations": {"summary": "A Brotr probe pod has not answered a scrape for 10 minutes."},
                },
                {
                    "alert": "BrotrCycleFailing",
                    "expr": format!("increase(brotr_service_cycles_total{{{sel}, outcome=\"error\"}}[1h]) > 2"),
                    "for": "15m",
                    "labels": {"severity": "warning"},
                    "annotations": {"summary": "A Brotr service failed more than two cycles in the last hour."},
                },
            ],
        }]},
    });
    Desired::new(ChildKind::PrometheusRule, &obj)
}
