//! Positions of keys and values in the YAML source.
//!
//! `serde_yaml` turns the file into data but forgets where each piece came
//! from. This module walks the YAML event stream once (with `saphyr-parser`)
//! and records, for every key path, the line and column of the key and of its
//! value, so that any diagnostic — from deserialization, validation or
//! compilation — can point at the right place.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScanError, Span};

use super::path::KeyPath;

/// A 1-based line and column in the configuration file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    /// Line number, starting at 1.
    pub line: usize,
    /// Column number, starting at 1.
    pub column: usize,
}

impl Position {
    fn from_span(span: &Span) -> Self {
        Self {
            line: span.start.line(),
            column: span.start.col() + 1,
        }
    }
}

/// Which end of a `key: value` pair a diagnostic should point at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Anchor {
    /// The key itself (e.g. for an unknown key).
    Key,
    /// The value (e.g. for a value that does not parse).
    Value,
}

#[derive(Clone, Copy, Debug, Default)]
struct Entry {
    key: Option<Position>,
    value: Option<Position>,
}

/// A YAML syntax error with its position.
#[derive(Debug, Clone)]
pub struct SyntaxError {
    /// Where the parser gave up.
    pub position: Position,
    /// What the parser expected.
    pub message: String,
}

impl From<ScanError> for SyntaxError {
    fn from(e: ScanError) -> Self {
        Self {
            position: Position {
                line: e.marker().line(),
                column: e.marker().col() + 1,
            },
            message: e.info().to_string(),
        }
    }
}

/// Key path → source position index of one YAML document.
#[derive(Debug, Default)]
pub struct SourceMap {
    entries: HashMap<KeyPath, Entry>,
}

enum Frame {
    Map {
        path: Option<KeyPath>,
        /// Key whose value comes next, `None` while a key is expected.
        pending_key: Option<String>,
        /// A non-scalar key is being skipped.
        in_complex_key: bool,
    },
    Seq {
        path: Option<KeyPath>,
        next: usize,
    },
}

impl SourceMap {
    /// Indexes `text`, or returns the first syntax error.
    pub fn parse(text: &str) -> Result<Self, SyntaxError> {
        let mut map = SourceMap::default();
        let mut stack: Vec<Frame> = Vec::new();
        let mut documents = 0usize;
        for event in Parser::new_from_str(text) {
            let (event, span) = event?;
            match event {
                Event::DocumentStart(_) => {
                    documents += 1;
                }
                Event::Scalar(value, ..) => {
                    if documents > 1 {
                        continue;
                    }
                    match stack.last_mut() {
                        Some(Frame::Map {
                            path,
                            pending_key,
                            in_complex_key,
                        }) if pending_key.is_none() && !*in_complex_key => {
                            if let Some(path) = path {
                                let key_path = path.key(value.as_ref());
                                map.entries.entry(key_path).or_default().key =
                                    Some(Position::from_span(&span));
                            }
                            *pending_key = Some(value.into_owned());
                        }
                        _ => {
                            let path = map.value_path(&mut stack);
                            map.record_value(path, &span);
                        }
                    }
                }
                Event::Alias(_) => {
                    if documents > 1 {
                        continue;
                    }
                    let path = map.value_path(&mut stack);
                    map.record_value(path, &span);
                }
                Event::MappingStart(..) | Event::SequenceStart(..) => {
                    if documents > 1 {
                        continue;
                    }
                    let is_map = matches!(event, Event::MappingStart(..));
                    let path = if let Some(Frame::Map {
                        pending_key: None,
                        in_complex_key,
                        ..
                    }) = stack.last_mut()
                    {
                        // A mapping or sequence used as a key: not addressable.
                        *in_complex_key = true;
                        None
                    } else {
                        let path = map.value_path(&mut stack);
                        map.record_value(path.clone(), &span);
                        path
                    };
                    stack.push(if is_map {
                        Frame::Map {
                            path,
                            pending_key: None,
                            in_complex_key: false,
                        }
                    } else {
                        Frame::Seq { path, next: 0 }
                    });
                }
                Event::MappingEnd | Event::SequenceEnd => {
                    if documents > 1 {
                        continue;
                    }
                    let finished = stack.pop();
                    let was_key = matches!(
                        &finished,
                        Some(Frame::Map { path: None, .. }) | Some(Frame::Seq { path: None, .. })
                    );
                    if let Some(Frame::Map {
                        in_complex_key,
                        pending_key,
                        ..
                    }) = stack.last_mut()
                    {
                        if was_key && *in_complex_key {
                            *in_complex_key = false;
                            *pending_key = Some(String::from("?"));
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(map)
    }

    /// The path of the value node that starts now, advancing the parent frame.
    fn value_path(&self, stack: &mut [Frame]) -> Option<KeyPath> {
        match stack.last_mut() {
            None => Some(KeyPath::root()),
            Some(Frame::Map {
                path, pending_key, ..
            }) => {
                let key = pending_key.take()?;
                path.as_ref().map(|p| p.key(key))
            }
            Some(Frame::Seq { path, next }) => {
                let index = *next;
                *next += 1;
                path.as_ref().map(|p| p.index(index))
            }
        }
    }

    fn record_value(&mut self, path: Option<KeyPath>, span: &Span) {
        if let Some(path) = path {
            self.entries.entry(path).or_default().value = Some(Position::from_span(span));
        }
    }

    /// The position of `path` (its key or its value), or of the nearest
    /// enclosing node that has one.
    pub fn locate(&self, path: &KeyPath, anchor: Anchor) -> Option<Position> {
        let mut current = Some(path.clone());
        let mut first = true;
        while let Some(p) = current {
            if let Some(entry) = self.entries.get(&p) {
                let found = match (anchor, first) {
                    (Anchor::Key, true) => entry.key.or(entry.value),
                    (Anchor::Value, true) => entry.value.or(entry.key),
                    // For an enclosing node, its key reads best ("in routes[2]").
                    (_, false) => entry.key.or(entry.value),
                };
                if found.is_some() {
                    return found;
                }
            }
            first = false;
            current = p.parent();
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "\
server:
  threads: 2
routes:
  - name: api
    upstream: web
  - match: {host: example.com}
    upstream: other
";

    fn pos(line: usize, column: usize) -> Option<Position> {
        Some(Position { line, column })
    }

    #[test]
    fn locates_keys_and_values() {
        let map = SourceMap::parse(DOC).unwrap();
        let threads = KeyPath::root().key("server").key("threads");
        assert_eq!(map.locate(&threads, Anchor::Key), pos(2, 3));
        assert_eq!(map.locate(&threads, Anchor::Value), pos(2, 12));
        let upstream = KeyPath::root().key("routes").index(1).key("upstream");
        assert_eq!(map.locate(&upstream, Anchor::Value), pos(7, 15));
    }

    #[test]
    fn locates_entries_of_flow_mappings() {
        let map = SourceMap::parse(DOC).unwrap();
        let host = KeyPath::root()
            .key("routes")
            .index(1)
            .key("match")
            .key("host");
        assert_eq!(map.locate(&host, Anchor::Key), pos(6, 13));
        assert_eq!(map.locate(&host, Anchor::Value), pos(6, 19));
    }

    #[test]
    fn falls_back_to_the_nearest_known_parent() {
        let map = SourceMap::parse(DOC).unwrap();
        let missing = KeyPath::root().key("routes").index(0).key("match");
        assert_eq!(map.locate(&missing, Anchor::Key), pos(4, 5));
    }

    #[test]
    fn reports_syntax_errors_with_position() {
        let err = SourceMap::parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(err.position.line >= 1);
        assert!(!err.message.is_empty());
    }
}
