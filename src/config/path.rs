//! Key paths into the configuration tree (`routes[3].match.host`), used to
//! point diagnostics at the exact place of a problem.

use std::fmt;

/// One step of a [`KeyPath`]: a mapping key or a sequence index.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Segment {
    /// A key of a YAML mapping.
    Key(String),
    /// A position in a YAML sequence.
    Index(usize),
}

/// A location inside the configuration tree, e.g. `routes[3].upstream`.
///
/// The empty path is the document root.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct KeyPath(Vec<Segment>);

impl KeyPath {
    /// The document root.
    pub fn root() -> Self {
        Self(Vec::new())
    }

    /// This path extended by a mapping key.
    pub fn key(&self, key: impl Into<String>) -> Self {
        let mut segments = self.0.clone();
        segments.push(Segment::Key(key.into()));
        Self(segments)
    }

    /// This path extended by a sequence index.
    pub fn index(&self, index: usize) -> Self {
        let mut segments = self.0.clone();
        segments.push(Segment::Index(index));
        Self(segments)
    }

    /// The path one level up, or `None` at the root.
    pub fn parent(&self) -> Option<Self> {
        if self.0.is_empty() {
            None
        } else {
            Some(Self(self.0[..self.0.len() - 1].to_vec()))
        }
    }

    /// Whether this is the document root.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The segments of this path, outermost first.
    pub fn segments(&self) -> &[Segment] {
        &self.0
    }

    /// Appends the path reported by `serde_path_to_error` below this one.
    pub fn join_serde(&self, path: &serde_path_to_error::Path) -> Self {
        use serde_path_to_error::Segment as S;
        let mut out = self.clone();
        for segment in path.iter() {
            match segment {
                S::Seq { index } => out.0.push(Segment::Index(*index)),
                S::Map { key } => out.0.push(Segment::Key(key.clone())),
                S::Enum { variant } => out.0.push(Segment::Key(variant.clone())),
                S::Unknown => {}
            }
        }
        out
    }
}

fn is_plain_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(top level)");
        }
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(key) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    if is_plain_key(key) {
                        f.write_str(key)?;
                    } else {
                        write!(f, "{key:?}")?;
                    }
                }
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_keys_and_indexes() {
        let path = KeyPath::root().key("routes").index(3).key("upstream");
        assert_eq!(path.to_string(), "routes[3].upstream");
    }

    #[test]
    fn quotes_keys_that_are_not_plain() {
        let path = KeyPath::root().key("upstreams").key("api.v1");
        assert_eq!(path.to_string(), "upstreams.\"api.v1\"");
    }

    #[test]
    fn root_has_a_readable_name_and_no_parent() {
        assert_eq!(KeyPath::root().to_string(), "(top level)");
        assert!(KeyPath::root().parent().is_none());
        assert_eq!(
            KeyPath::root().key("a").index(1).parent(),
            Some(KeyPath::root().key("a"))
        );
    }
}
