//! Header rewrite rules compiled for the hot path: names and values are
//! validated and built once, at load time.

use http::{HeaderName, HeaderValue};
use pingora::http::{RequestHeader, ResponseHeader};

use crate::config::HeaderRules;

/// Something whose headers can be edited: a request or a response header.
pub trait HeaderTarget {
    /// Removes every value of `name`.
    fn remove(&mut self, name: &HeaderName);
    /// Replaces every value of `name` with `value`.
    fn insert(&mut self, name: &HeaderName, value: &HeaderValue) -> pingora::Result<()>;
    /// Adds `value` to `name`, keeping the existing values.
    fn append(&mut self, name: &HeaderName, value: &HeaderValue) -> pingora::Result<()>;
}

macro_rules! impl_header_target {
    ($t:ty) => {
        impl HeaderTarget for $t {
            fn remove(&mut self, name: &HeaderName) {
                self.remove_header(name);
            }
            fn insert(&mut self, name: &HeaderName, value: &HeaderValue) -> pingora::Result<()> {
                self.insert_header(name.clone(), value.clone())
            }
            fn append(&mut self, name: &HeaderName, value: &HeaderValue) -> pingora::Result<()> {
                self.append_header(name.clone(), value.clone()).map(|_| ())
            }
        }
    };
}

impl_header_target!(RequestHeader);
impl_header_target!(ResponseHeader);

/// The compiled form of [`HeaderRules`]: remove, then set, then add.
#[derive(Debug, Clone, Default)]
pub struct HeaderEdits {
    /// Also applied to responses Palisade generates.
    pub always: bool,
    remove: Box<[HeaderName]>,
    set: Box<[(HeaderName, HeaderValue)]>,
    add: Box<[(HeaderName, HeaderValue)]>,
}

impl HeaderEdits {
    /// Compiles validated rules.
    pub fn compile(rules: &HeaderRules) -> Self {
        Self {
            always: rules.always,
            remove: rules.remove.iter().map(|n| n.0.clone()).collect(),
            set: rules
                .set
                .iter()
                .map(|(n, v)| (n.0.clone(), v.0.clone()))
                .collect(),
            add: rules
                .add
                .iter()
                .map(|(n, v)| (n.0.clone(), v.0.clone()))
                .collect(),
        }
    }

    /// Whether applying these edits would change nothing.
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.set.is_empty() && self.add.is_empty()
    }

    /// Applies the edits to `target`.
    pub fn apply(&self, target: &mut impl HeaderTarget) -> pingora::Result<()> {
        for name in self.remove.iter() {
            target.remove(name);
        }
        for (name, value) in self.set.iter() {
            target.insert(name, value)?;
        }
        for (name, value) in self.add.iter() {
            target.append(name, value)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_then_sets_then_adds() {
        let rules: HeaderRules = serde_yaml::from_str(
            "{remove: [x-drop, x-replace], set: {x-replace: new, x-set: one}, add: {x-set: two}}",
        )
        .unwrap();
        let edits = HeaderEdits::compile(&rules);
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.insert_header("x-drop", "a").unwrap();
        req.insert_header("x-replace", "old").unwrap();
        req.insert_header("x-keep", "k").unwrap();
        edits.apply(&mut req).unwrap();
        assert!(req.headers.get("x-drop").is_none());
        assert_eq!(req.headers.get("x-replace").unwrap(), "new");
        let set: Vec<_> = req.headers.get_all("x-set").iter().collect();
        assert_eq!(set, ["one", "two"]);
        assert_eq!(req.headers.get("x-keep").unwrap(), "k");
    }
}
