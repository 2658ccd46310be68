//! Deserializing one part of the configuration with every problem reported,
//! not only the first.
//!
//! serde stops at the first error it meets, so two typos in two cache
//! policies, or two bad networks in one list, took two rounds of fix and
//! check. [`item`] records the error, takes the failing node out of the
//! value (an unknown key; the entry of a list or mapping whose value is
//! wrong) and deserializes again, until the value deserializes or nothing
//! more can be taken out. Entries taken out of a list shift the positions
//! serde reports for later ones; those are mapped back to where the entry
//! was written, so every error names the right `[index]`.

use std::collections::HashMap;

use serde::de::DeserializeOwned;
use serde_path_to_error::Segment as SerdeSegment;
use serde_yaml::Value;

use super::diagnostic::{did_you_mean, ConfigError};
use super::path::KeyPath;

/// More errors than this in one item are not worth another round: the
/// first ones are reported, the rest after they are fixed.
const MAX_ERRORS_PER_ITEM: usize = 50;

/// One step into a YAML value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Step {
    Key(String),
    Index(usize),
}

/// Deserializes `value` (found at `path`) into `T`, adding a located
/// [`ConfigError`] to `errors` for every problem found; `None` if there
/// was any.
pub(super) fn item<T: DeserializeOwned>(
    value: Value,
    path: &KeyPath,
    errors: &mut Vec<ConfigError>,
) -> Option<T> {
    let mut value = value;
    let mut taken = Taken::default();
    let mut failed = false;
    for _ in 0..MAX_ERRORS_PER_ITEM {
        let error = match serde_path_to_error::deserialize::<_, T>(&value) {
            Ok(parsed) => return (!failed).then_some(parsed),
            Err(e) => e,
        };
        failed = true;
        let Some(at) = steps(error.path()) else {
            errors.push(serde_error(path.join_serde(error.path()), error.inner()));
            return None;
        };
        let message = error.inner().to_string();
        // A key this loop took out is now missing: already reported.
        let caused = missing_field(&message)
            .is_some_and(|field| taken.keys.contains(&(at.clone(), field.to_string())));
        if !caused {
            errors.push(serde_error(
                join(path, &taken.as_written(&at)),
                error.inner(),
            ));
        }
        let went = match unknown_field(&message) {
            Some(key) => {
                // The path may end at the unknown key or at its mapping.
                let key = Step::Key(key.to_string());
                let mapping = match at.split_last() {
                    Some((last, parent)) if *last == key => parent,
                    _ => &at[..],
                };
                take(&mut value, mapping, &key)
            }
            // A bad value, or a mapping without a required key: the entry
            // goes.
            None => taken.take_node(&mut value, &at),
        };
        if !went {
            return None;
        }
    }
    None
}

/// What [`item`] took out of the value so far.
#[derive(Default)]
struct Taken {
    /// List entries: per list (its path as written), the positions as
    /// written.
    entries: HashMap<Vec<Step>, Vec<usize>>,
    /// Mapping keys: (the mapping's path now, the key).
    keys: Vec<(Vec<Step>, String)>,
}

impl Taken {
    /// Removes the node at `at` from its parent; whether there was one.
    fn take_node(&mut self, value: &mut Value, at: &[Step]) -> bool {
        let Some((last, parent)) = at.split_last() else {
            return false;
        };
        let written = self.as_written(at);
        if !take(value, parent, last) {
            return false;
        }
        match (last, written.split_last()) {
            (Step::Index(_), Some((Step::Index(i), list))) => {
                let positions = self.entries.entry(list.to_vec()).or_default();
                positions.push(*i);
                positions.sort_unstable();
            }
            (Step::Key(k), _) => self.keys.push((parent.to_vec(), k.clone())),
            _ => {}
        }
        true
    }

    /// `at` (positions in the value as it is now) as written in the file.
    fn as_written(&self, at: &[Step]) -> Vec<Step> {
        let mut out = Vec::with_capacity(at.len());
        for step in at {
            let step = match step {
                Step::Index(now) => Step::Index(self.written_index(&out, *now)),
                key => key.clone(),
            };
            out.push(step);
        }
        out
    }

    /// The written position of the entry now at `now` in list `list`.
    fn written_index(&self, list: &[Step], now: usize) -> usize {
        let Some(gone) = self.entries.get(list) else {
            return now;
        };
        let mut index = now;
        for g in gone {
            if *g <= index {
                index += 1;
            }
        }
        index
    }
}

/// The steps of a serde path, or `None` when it has a step that cannot be
/// followed in the value (an enum variant, an unknown position).
fn steps(path: &serde_path_to_error::Path) -> Option<Vec<Step>> {
    path.iter()
        .map(|segment| match segment {
            SerdeSegment::Seq { index } => Some(Step::Index(*index)),
            SerdeSegment::Map { key } => Some(Step::Key(key.clone())),
            SerdeSegment::Enum { .. } | SerdeSegment::Unknown => None,
        })
        .collect()
}

fn join(base: &KeyPath, steps: &[Step]) -> KeyPath {
    steps.iter().fold(base.clone(), |path, step| match step {
        Step::Key(k) => path.key(k.as_str()),
        Step::Index(i) => path.index(*i),
    })
}

/// Removes the child `step` of the node at `parent` in `value`; whether
/// there was one.
fn take(value: &mut Value, parent: &[Step], step: &Step) -> bool {
    let mut node = value;
    for s in parent {
        let next = match (node, s) {
            (Value::Mapping(m), Step::Key(k)) => m.get_mut(k.as_str()),
            (Value::Sequence(items), Step::Index(i)) => items.get_mut(*i),
            _ => None,
        };
        match next {
            Some(n) => node = n,
            None => return false,
        }
    }
    match (node, step) {
        (Value::Mapping(m), Step::Key(k)) => m.remove(k.as_str()).is_some(),
        (Value::Sequence(items), Step::Index(i)) if *i < items.len() => {
            items.remove(*i);
            true
        }
        _ => false,
    }
}

fn unknown_field(message: &str) -> Option<&str> {
    message.strip_prefix("unknown field `")?.split('`').next()
}

fn missing_field(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.split('`').next()
}

/// Turns a serde error into a [`ConfigError`], pointing unknown keys at the
/// key and suggesting the closest known one.
pub(super) fn serde_error(path: KeyPath, error: &serde_yaml::Error) -> ConfigError {
    let message = error.to_string();
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let unknown = rest.split('`').next().unwrap_or_default();
        let expected: Vec<&str> = rest
            .split_once("expected")
            .map(|(_, list)| list.split('`').skip(1).step_by(2).collect())
            .unwrap_or_default();
        let mut e = ConfigError::key(path, format!("unknown key `{unknown}`"));
        if let Some(s) = did_you_mean(unknown, expected.iter().copied()) {
            e = e.with_hint(format!("did you mean `{s}`?"));
        } else if !expected.is_empty() {
            e = e.with_hint(format!("expected one of: {}", expected.join(", ")));
        }
        return e;
    }
    if let Some(field) = missing_field(&message) {
        return ConfigError::key(path, format!("missing required key `{field}`"));
    }
    ConfigError::value(path, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Policy {
        #[serde(default)]
        ttl: u32,
        name: String,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Section {
        #[serde(default)]
        nets: Vec<u8>,
        #[serde(default)]
        policies: indexmap::IndexMap<String, Policy>,
    }

    fn errors_of(yaml: &str) -> Vec<String> {
        let value: Value = serde_yaml::from_str(yaml).unwrap();
        let mut errors = Vec::new();
        let parsed = item::<Section>(value, &KeyPath::root().key("s"), &mut errors);
        assert_eq!(parsed.is_none(), !errors.is_empty());
        errors
            .iter()
            .map(|e| format!("{}: {}", e.path, e.message))
            .collect()
    }

    #[test]
    fn every_bad_list_entry_is_reported_at_its_written_position() {
        let errors = errors_of("nets: [1, x, 3, y, z, 6]");
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[0].starts_with("s.nets[1]"), "{errors:?}");
        assert!(errors[1].starts_with("s.nets[3]"), "{errors:?}");
        assert!(errors[2].starts_with("s.nets[4]"), "{errors:?}");
    }

    #[test]
    fn unknown_keys_in_several_entries_are_all_reported() {
        let errors =
            errors_of("policies:\n  a: { name: a, tll: 1 }\n  b: { name: b, nmae: x }\nextra: 1\n");
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors.iter().any(|e| e.contains("`tll`")), "{errors:?}");
        assert!(errors.iter().any(|e| e.contains("`nmae`")), "{errors:?}");
        assert!(errors.iter().any(|e| e.contains("`extra`")), "{errors:?}");
    }

    #[test]
    fn a_removed_bad_value_is_not_reported_again_as_missing() {
        let errors = errors_of("policies:\n  a: { name: [1] }\n  b: { name: b, ttl: x }\n");
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors.iter().all(|e| !e.contains("missing")), "{errors:?}");
    }

    #[test]
    fn a_good_value_deserializes_once() {
        assert!(errors_of("nets: [1, 2]\npolicies: { a: { name: a } }").is_empty());
    }
}
