//! Which migrations a database holds against the ones this binary knows. Only `migrate` changes
//! the schema; every other command checks first, so during a rollout old and new pods can run
//! side by side:
//!
//! * behind (a known migration is not applied) → refuse: "run `brotr-probe migrate`";
//! * ahead by migrations this binary does not know → keep working when every one of them is
//!   marked compatible (its file name starts with `NNNN_compat_`, so its description starts with
//!   `compat `), refuse otherwise.

/// Why the database's schema cannot be used by this binary.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    #[error(
        "database {target} has no Brotr schema yet; run `brotr-probe migrate` (or `brotr-probe run`, which migrates)"
    )]
    Empty { target: String },
    #[error(
        "database {target} is behind this brotr-probe: migration {missing:?} not applied; run `brotr-probe migrate`"
    )]
    Behind { target: String, missing: Vec<i64> },
    #[error(
        "database {target} was migrated by a newer brotr-probe: migration {unknown:?} is not known to this version and not marked compatible; upgrade this brotr-probe"
    )]
    Ahead { target: String, unknown: Vec<i64> },
}

/// The verdict on `applied` = `(version, description)` rows of `_sqlx_migrations` (successful
/// ones) against the versions this binary knows. `Ok` carries the compatible unknown versions.
pub fn judge(
    target: &str,
    known: &[i64],
    applied: &[(i64, String)],
) -> Result<Vec<i64>, VersionError> {
    if applied.is_empty() {
        return Err(VersionError::Empty {
            target: target.to_owned(),
        });
    }
    let missing: Vec<i64> = known
        .iter()
        .copied()
        .filter(|v| !applied.iter().any(|(a, _)| a == v))
        .collect();
    if !missing.is_empty() {
        return Err(VersionError::Behind {
            target: target.to_owned(),
            missing,
        });
    }
    let unknown: Vec<&(i64, String)> = applied.iter().filter(|(v, _)| !known.contains(v)).collect();
    let incompatible: Vec<i64> = unknown
        .iter()
        .filter(|(_, d)| !is_compatible(d))
        .map(|(v, _)| *v)
        .collect();
    if !incompatible.is_empty() {
        return Err(VersionError::Ahead {
            target: target.to_owned(),
            unknown: incompatible,
        });
    }
    Ok(unknown.iter().map(|(v, _)| *v).collect())
}

/// sqlx turns `0006_compat_add_index.sql` into the description `compat add index`.
fn is_compatible(description: &str) -> bool {
    description == "compat" || description.starts_with("compat ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(v: &[(i64, &str)]) -> Vec<(i64, String)> {
        v.iter().map(|(n, d)| (*n, (*d).to_owned())).collect()
    }

    #[test]
    fn verdicts() {
        let known = [1, 2, 3];
        let cur = rows(&[(1, "tables"), (2, "functions"), (3, "views")]);
        assert_eq!(judge("db", &known, &cur), Ok(vec![]));
        assert!(matches!(
            judge("db", &known, &[]),
            Err(VersionError::Empty { .. })
        ));
        let behind = rows(&[(1, "tables"), (2, "functions")]);
        assert_eq!(
            judge("db", &known, &behind),
            Err(VersionError::Behind {
                target: "db".into(),
                missing: vec![3]
            })
        );
        let compat = rows(&[(1, "a"), (2, "b"), (3, "c"), (4, "compat add index")]);
        assert_eq!(judge("db", &known, &compat), Ok(vec![4]));
        let ahead = rows(&[
            (1, "a"),
            (2, "b"),
            (3, "c"),
            (4, "compat x"),
            (5, "drop column"),
        ]);
        let e = judge("db", &known, &ahead).unwrap_err();
        assert_eq!(
            e,
            VersionError::Ahead {
                target: "db".into(),
                unknown: vec![5]
            }
        );
        assert!(e.to_string().contains("upgrade this brotr-probe"));
        assert!(!is_compatible("compatible change"));
    }

    #[test]
    fn the_messages_say_what_to_run() {
        let e = VersionError::Behind {
            target: "sqlite:x.db".into(),
            missing: vec![5],
        };
        assert!(e.to_string().contains("run `brotr-probe migrate`"));
    }
}
