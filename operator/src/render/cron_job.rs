//! CronJobs: the maintenance steps and the schedule-mode RelayMonitor.
//!
//! Runs never overlap (`Forbid`), one finished Job of each outcome is kept, and a run is cut
//! short before the next one is due (`activeDeadlineSeconds` below the schedule's period).

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, JobTemplateSpec};
use k8s_openapi::api::core::v1::PodSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{ChildKind, Desired, Owner, job};

/// What a CronJob runs and when.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule<'a> {
    pub cron: &'a str,
    pub time_zone: Option<&'a str>,
    pub suspend: bool,
}

pub fn cron_job(
    owner: &Owner,
    name: &str,
    component: &str,
    schedule: &Schedule<'_>,
    pod: PodSpec,
    annotations: BTreeMap<String, String>,
) -> Desired {
    let mut spec = job::spec(owner, component, pod, annotations, 0);
    spec.active_deadline_seconds = Some(deadline_secs(schedule.cron));
    let c = CronJob {
        metadata: owner.meta(name, component),
        spec: Some(CronJobSpec {
            schedule: schedule.cron.to_owned(),
            time_zone: schedule.time_zone.map(str::to_owned),
            suspend: Some(schedule.suspend),
            concurrency_policy: Some("Forbid".into()),
            // A run missed by more than this (controller-manager down) is skipped.
            starting_deadline_seconds: Some(300),
            successful_jobs_history_limit: Some(1),
            failed_jobs_history_limit: Some(1),
            job_template: JobTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(owner.labels(component)),
                    ..Default::default()
                }),
                spec: Some(spec),
            },
        }),
        ..Default::default()
    };
    Desired::new(ChildKind::CronJob, &c)
}

/// Seconds a run may take: 90% of the schedule's period as far as it can be read from the
/// expression (`*/N` minutes, hourly, daily, weekly, monthly), one hour otherwise.
pub fn deadline_secs(cron: &str) -> i64 {
    let period: i64 = match cron.trim() {
        "@hourly" => 3600,
        "@daily" | "@midnight" => 86_400,
        "@weekly" => 7 * 86_400,
        "@monthly" | "@yearly" | "@annually" => 28 * 86_400,
        expr => {
            let f: Vec<&str> = expr.split_whitespace().collect();
            match f.as_slice() {
                [m, "*", "*", "*", "*"] => match m.strip_prefix("*/").map(str::parse::<i64>) {
                    Some(Ok(n)) if n > 0 => n * 60,
                    _ if *m == "*" => 60,
                    _ if m.parse::<i64>().is_ok() => 3600,
                    _ => 3600,
                },
                [_, h, "*", "*", "*"] => match h.strip_prefix("*/").map(str::parse::<i64>) {
                    Some(Ok(n)) if n > 0 => n * 3600,
                    _ if h.parse::<i64>().is_ok() => 86_400,
                    _ => 3600,
                },
                _ => 3600,
            }
        }
    };
    (period * 9 / 10).clamp(50, 86_400)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_ends_before_the_next_is_due() {
        for (cron, secs) in [
            ("*/30 * * * *", 1620),
            ("*/5 * * * *", 270),
            ("* * * * *", 54),
            ("17 * * * *", 3240),
            ("0 */6 * * *", 19_440),
            ("30 4 * * *", 77_760),
            ("@hourly", 3240),
            ("@daily", 77_760),
            ("@weekly", 86_400),
            ("0 4 * * 1", 3240),
        ] {
            assert_eq!(deadline_secs(cron), secs, "{cron}");
        }
    }

    #[test]
    fn runs_never_overlap_and_exit_2_fails_at_once() {
        let o = Owner {
            kind: "RelayMonitor",
            name: "m".into(),
            namespace: "ns".into(),
            uid: "u".into(),
        };
        let d = cron_job(
            &o,
            "m-rmon",
            "monitor",
            &Schedule {
                cron: "*/30 * * * *",
                time_zone: None,
                suspend: false,
            },
            PodSpec::default(),
            BTreeMap::new(),
        );
        let spec = &d.object["spec"];
        assert_eq!(spec["concurrencyPolicy"], "Forbid");
        assert_eq!(spec["jobTemplate"]["spec"]["activeDeadlineSeconds"], 1620);
        assert_eq!(spec["jobTemplate"]["spec"]["backoffLimit"], 0);
        let rule = &spec["jobTemplate"]["spec"]["podFailurePolicy"]["rules"][0];
        assert_eq!(rule["action"], "FailJob");
        assert_eq!(rule["onExitCodes"]["values"], serde_json::json!([2]));
        assert_eq!(
            spec["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"],
            "Never"
        );
        // Jobs made by the CronJob carry the owner's labels, so they can be traced back to it.
        assert_eq!(
            spec["jobTemplate"]["metadata"]["labels"]["brotr.dev/owner-uid"],
            "u"
        );
    }
}
