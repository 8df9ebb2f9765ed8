//! kstatus conditions (what Flux and Argo CD read): `Ready`, `Reconciling`, `Stalled`, each with
//! the generation it describes. A condition's `lastTransitionTime` changes only when its status
//! flips, so a status computed twice from the same state is byte-identical and is not written.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Where a resource is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Everything the spec asks for exists and is ready.
    Ready,
    /// On its way: children being created, a migration running, a reference not there yet.
    InProgress,
    /// Cannot get there without a change: an invalid spec, a migration that refuses, a name
    /// taken by something else.
    Stalled,
    /// In place but not working (a scheduled run failed); heals on its own or needs a look,
    /// but no change of the spec is pending.
    Degraded,
    /// `paused: true`: children are left alone; `ready` says how they are.
    Paused { ready: bool },
}

/// The verdict of one reconcile: a state, a PascalCase reason and a message for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub state: State,
    pub reason: String,
    pub message: String,
}

impl Verdict {
    pub fn new(state: State, reason: &str, message: impl Into<String>) -> Verdict {
        Verdict {
            state,
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// The three conditions for `verdict`, keeping transition times of `old` where a status did not
/// change.
pub fn conditions(old: &[Condition], v: &Verdict, generation: i64, now: &Time) -> Vec<Condition> {
    let ready = matches!(v.state, State::Ready | State::Paused { ready: true });
    let (reconciling, reconciling_reason) = match v.state {
        State::InProgress => (true, v.reason.as_str()),
        State::Paused { .. } => (false, "Paused"),
        State::Stalled => (false, "Stalled"),
        State::Ready | State::Degraded => (false, "Converged"),
    };
    let stalled = v.state == State::Stalled;
    let make = |type_: &str, status: bool, reason: &str, message: &str| {
        let status = if status { "True" } else { "False" }.to_owned();
        let last = old
            .iter()
            .find(|c| c.type_ == type_ && c.status == status)
            .map(|c| c.last_transition_time.clone())
            .unwrap_or_else(|| now.clone());
        Condition {
            type_: type_.into(),
            status,
            reason: reason.into(),
            message: message.into(),
            observed_generation: Some(generation),
            last_transition_time: last,
        }
    };
    vec![
        make("Ready", ready, &v.reason, &v.message),
        make(
            "Reconciling",
            reconciling,
            reconciling_reason,
            if reconciling { &v.message } else { "" },
        ),
        make(
            "Stalled",
            stalled,
            if stalled { &v.reason } else { "NotStalled" },
            if stalled { &v.message } else { "" },
        ),
    ]
}

/// The condition of `type_`, if present.
pub fn condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Time {
        Time(s.parse().unwrap())
    }

    fn status(cs: &[Condition], ty: &str) -> (String, String) {
        let c = condition(cs, ty).unwrap();
        (c.status.clone(), c.reason.clone())
    }

    #[test]
    fn each_state_maps_to_kstatus_conditions() {
        let now = t("2026-11-30T10:00:00Z");
        let cases = [
            (
                State::Ready,
                ("True", "AllReady"),
                ("False", "Converged"),
                ("False", "NotStalled"),
            ),
            (
                State::InProgress,
                ("False", "X"),
                ("True", "X"),
                ("False", "NotStalled"),
            ),
            (
                State::Stalled,
                ("False", "X"),
                ("False", "Stalled"),
                ("True", "X"),
            ),
            (
                State::Degraded,
                ("False", "X"),
                ("False", "Converged"),
                ("False", "NotStalled"),
            ),
            (
                State::Paused { ready: true },
                ("True", "X"),
                ("False", "Paused"),
                ("False", "NotStalled"),
            ),
        ];
        for (state, ready, reconciling, stalled) in cases {
            let reason = if state == State::Ready {
                "AllReady"
            } else {
                "X"
            };
            let cs = conditions(&[], &Verdict::new(state.clone(), reason, "m"), 7, &now);
            let s = |p: (&str, &str)| (p.0.to_owned(), p.1.to_owned());
            assert_eq!(status(&cs, "Ready"), s(ready), "{state:?}");
            assert_eq!(status(&cs, "Reconciling"), s(reconciling), "{state:?}");
            assert_eq!(status(&cs, "Stalled"), s(stalled), "{state:?}");
            assert!(cs.iter().all(|c| c.observed_generation == Some(7)));
        }
    }

    #[test]
    fn transition_times_move_only_on_flips() {
        let (t1, t2) = (t("2026-11-30T10:00:00Z"), t("2026-11-30T11:00:00Z"));
        let v = Verdict::new(State::InProgress, "Creating", "creating children");
        let first = conditions(&[], &v, 1, &t1);
        // Same state an hour later: identical, so nothing is written.
        assert_eq!(conditions(&first, &v, 1, &t2), first);
        // Ready flips: Ready and Reconciling move, Stalled keeps its time.
        let ready = conditions(&first, &Verdict::new(State::Ready, "AllReady", ""), 2, &t2);
        let at =
            |cs: &[Condition], ty: &str| condition(cs, ty).unwrap().last_transition_time.clone();
        assert_eq!(at(&ready, "Ready"), t2);
        assert_eq!(at(&ready, "Reconciling"), t2);
        assert_eq!(at(&ready, "Stalled"), t1);
    }
}
