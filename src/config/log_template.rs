//! The access log's `template` format (nginx's `log_format`): text with
//! `$field` or `${field}` variables naming the fields of the JSON format;
//! `$$` is a literal `$`. Parsed at load, so an unknown field is a
//! configuration error.

/// A field a template may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Field {
    Time,
    RequestId,
    ClientIp,
    Method,
    Host,
    Uri,
    Protocol,
    Status,
    BytesSent,
    BytesReceived,
    DurationMs,
    UpstreamMs,
    UpstreamStatus,
    Listener,
    Route,
    Upstream,
    Backend,
    Tries,
    BackendsTried,
    Cache,
    CacheFill,
    Identity,
    UserAgent,
    Referer,
    Error,
    RefusedBy,
}

/// Every field with its name.
pub const FIELDS: [(&str, Field); 26] = [
    ("time", Field::Time),
    ("request_id", Field::RequestId),
    ("client_ip", Field::ClientIp),
    ("method", Field::Method),
    ("host", Field::Host),
    ("uri", Field::Uri),
    ("protocol", Field::Protocol),
    ("status", Field::Status),
    ("bytes_sent", Field::BytesSent),
    ("bytes_received", Field::BytesReceived),
    ("duration_ms", Field::DurationMs),
    ("upstream_ms", Field::UpstreamMs),
    ("upstream_status", Field::UpstreamStatus),
    ("listener", Field::Listener),
    ("route", Field::Route),
    ("upstream", Field::Upstream),
    ("backend", Field::Backend),
    ("tries", Field::Tries),
    ("backends_tried", Field::BackendsTried),
    ("cache", Field::Cache),
    ("cache_fill", Field::CacheFill),
    ("identity", Field::Identity),
    ("user_agent", Field::UserAgent),
    ("referer", Field::Referer),
    ("error", Field::Error),
    ("refused_by", Field::RefusedBy),
];

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Literal text.
    Text(String),
    /// A field's value.
    Field(Field),
}

/// Parses a template; `Err` names the first unknown or malformed variable.
pub fn parse(template: &str) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    let mut text = String::new();
    let mut rest = template;
    while let Some(dollar) = rest.find('$') {
        text.push_str(&rest[..dollar]);
        rest = &rest[dollar + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            text.push('$');
            rest = after;
            continue;
        }
        let (name, after) = if let Some(braced) = rest.strip_prefix('{') {
            let close = braced
                .find('}')
                .ok_or_else(|| "unclosed `${`".to_string())?;
            (&braced[..close], &braced[close + 1..])
        } else {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            (&rest[..end], &rest[end..])
        };
        let field = FIELDS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, f)| *f)
            .ok_or_else(|| match name {
                "" => "a `$` names no field (write `$$` for a dollar sign)".to_string(),
                _ => format!("unknown field `${name}`"),
            })?;
        if !text.is_empty() {
            parts.push(Part::Text(std::mem::take(&mut text)));
        }
        parts.push(Part::Field(field));
        rest = after;
    }
    text.push_str(rest);
    if !text.is_empty() {
        parts.push(Part::Text(text));
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_text_braces_and_dollars() {
        assert_eq!(
            parse("$client_ip [${time}] $$ \"$method\"").unwrap(),
            [
                Part::Field(Field::ClientIp),
                Part::Text(" [".into()),
                Part::Field(Field::Time),
                Part::Text("] $ \"".into()),
                Part::Field(Field::Method),
                Part::Text("\"".into()),
            ]
        );
        assert!(parse("$nope")
            .unwrap_err()
            .contains("unknown field `$nope`"));
        assert!(parse("${status").is_err());
        assert!(parse("100 $ off").is_err());
        assert_eq!(parse("plain").unwrap(), [Part::Text("plain".into())]);
    }
}
