//! Policy overrides in trigger metadata: any field of [`PolicySettings`],
//! under the name it has in the config file, given as a string. The field
//! list comes from the settings type itself, so a new policy field is an
//! override key with no further code.

use std::sync::LazyLock;

use serde_json::{Map, Value};

use super::{TriggerError, err, quoted};
use lagrate_policy::PolicySettings;

/// The settings as a JSON object keyed by their config-file names.
fn fields(settings: &PolicySettings) -> Map<String, Value> {
    match serde_json::to_value(settings) {
        Ok(Value::Object(fields)) => fields,
        _ => unreachable!("PolicySettings serializes as a struct"),
    }
}

/// Names of the policy fields, read off the type once.
static POLICY_FIELDS: LazyLock<Vec<String>> =
    LazyLock::new(|| fields(&PolicySettings::default()).keys().cloned().collect());

/// Names of the policy fields.
pub fn policy_fields() -> &'static [String] {
    &POLICY_FIELDS
}

/// Whether `key` names a policy field.
pub fn is_policy_field(key: &str) -> bool {
    POLICY_FIELDS
        .binary_search_by(|f| f.as_str().cmp(key))
        .is_ok()
}

/// `base` with each `(key, value)` applied, then validated. The error names
/// the key and says what is allowed.
pub fn apply(base: PolicySettings, given: &[(&str, &str)]) -> Result<PolicySettings, TriggerError> {
    let mut settings = base;
    for &(key, text) in given {
        let mut object = fields(&settings);
        // Whole-number fields (replica counts) serialize as integers.
        let whole = object.get(key).is_some_and(Value::is_u64);
        // Named choices (rebalance) are strings, checked by the type.
        let named = object.get(key).is_some_and(Value::is_string);
        let value = if named {
            Value::from(text.trim())
        } else if whole {
            text.trim().parse::<u32>().map(Value::from).map_err(|_| {
                err(
                    key,
                    format!("{key} must be a whole number >= 0, got {}", quoted(text)),
                )
            })?
        } else {
            text.trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .map(Value::from)
                .ok_or_else(|| err(key, format!("{key} must be a number, got {}", quoted(text))))?
        };
        object.insert(key.to_owned(), value);
        settings = serde_json::from_value(Value::Object(object))
            .map_err(|e| err(key, format!("{key}: {e}, got {}", quoted(text))))?;
    }
    settings
        .validate()
        .map_err(|(key, message)| err(key, format!("{key} {message}")))?;
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_policy_field_is_an_override_and_numbers_are_checked_by_kind() {
        let keys = policy_fields();
        for key in [
            "headroom",
            "drainSeconds",
            "podCapacity",
            "minReplicas",
            "maxReplicas",
        ] {
            assert!(keys.iter().any(|k| k == key), "{key} missing from {keys:?}");
        }
        let base = PolicySettings::default();
        let set = apply(
            base.clone(),
            &[("podCapacity", "250"), ("minReplicas", "2")],
        )
        .unwrap();
        assert_eq!((set.pod_capacity, set.min_replicas), (Some(250.0), 2));
        let e = apply(base.clone(), &[("minReplicas", "2.5")]).unwrap_err();
        assert_eq!(e.key, "minReplicas");
        assert!(e.message.contains("whole number"), "{e}");
        let e = apply(base.clone(), &[("headroom", "lots")]).unwrap_err();
        assert!(e.message.contains("headroom must be a number"), "{e}");
        let e = apply(base.clone(), &[("drainSeconds", "0")]).unwrap_err();
        assert_eq!(e.key, "drainSeconds");
        let set = apply(base.clone(), &[("rebalance", "cooperative")]).unwrap();
        assert_eq!(set.rebalance, lagrate_policy::Rebalance::Cooperative);
        let e = apply(base, &[("rebalance", "sticky")]).unwrap_err();
        assert_eq!(e.key, "rebalance");
        assert!(
            e.message.contains("eager") && e.message.contains("cooperative"),
            "names what is allowed: {e}"
        );
    }

    #[test]
    fn the_wait_objective_is_an_override_checked_like_the_rest() {
        let base = PolicySettings::default();
        let set = apply(base.clone(), &[("waitObjectiveSeconds", "30")]).unwrap();
        assert_eq!(set.wait_objective(), 30.0);
        // Keys of the earlier hysteresis rules are still accepted (and
        // reported as unused), so that existing ScaledObjects still load.
        let set = apply(base.clone(), &[("settleSeconds", "30")]).unwrap();
        assert_eq!(set.unused_keys(), ["settleSeconds"]);
        let e = apply(base, &[("waitObjectiveSeconds", "-5")]).unwrap_err();
        assert_eq!(e.key, "waitObjectiveSeconds");
        assert!(e.message.contains("> 0"), "{e}");
    }
}
