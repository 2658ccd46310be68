//! Human-friendly units in the configuration: durations (`30s`, `250ms`,
//! `1h 30m`) and byte sizes (`512KiB`, `64MiB`, `1GB`).

use std::fmt;
use std::str::FromStr;
use std::time::Duration as StdDuration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// A duration written with a unit, such as `30s`, `250ms` or `1h 30m`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct HumanDuration(pub StdDuration);

impl HumanDuration {
    /// A duration of `secs` seconds.
    pub const fn from_secs(secs: u64) -> Self {
        Self(StdDuration::from_secs(secs))
    }

    /// A duration of `millis` milliseconds.
    pub const fn from_millis(millis: u64) -> Self {
        Self(StdDuration::from_millis(millis))
    }

    /// The duration as a standard library value.
    pub fn get(self) -> StdDuration {
        self.0
    }

    /// Whole seconds, rounded up (Pingora's shutdown settings count seconds).
    pub fn ceil_secs(self) -> u64 {
        self.0.as_secs() + u64::from(self.0.subsec_nanos() > 0)
    }
}

impl FromStr for HumanDuration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "duration `{s}` has no unit; write for example `{s}s` or `{s}ms`"
            ));
        }
        humantime::parse_duration(s)
            .map(HumanDuration)
            .map_err(|e| format!("invalid duration `{s}`: {e} (examples: 30s, 250ms, 5m, 1h 30m)"))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor;
        impl Visitor<'_> for DurationVisitor {
            type Value = HumanDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration with a unit, such as 30s or 250ms")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<HumanDuration, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<HumanDuration, E> {
                Err(E::custom(format!(
                    "duration `{v}` has no unit; write for example `{v}s` or `{v}ms`"
                )))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<HumanDuration, E> {
                Err(E::custom(format!(
                    "duration `{v}` must be positive and have a unit"
                )))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<HumanDuration, E> {
                Err(E::custom(format!(
                    "duration `{v}` has no unit; write for example `1500ms` instead of `1.5`"
                )))
            }
        }
        deserializer.deserialize_any(DurationVisitor)
    }
}

/// A size in bytes, written as a plain integer or with a unit: `B`, `KB`,
/// `MB`, `GB`, `TB` (powers of 1000) or `KiB`, `MiB`, `GiB`, `TiB` (powers of
/// 1024).
///
/// Single-letter units such as `64m` are rejected on purpose: nginx reads them
/// as binary units and most other tools as decimal ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct ByteSize(pub u64);

const SIZE_UNITS: &[(&str, u64)] = &[
    ("B", 1),
    ("KB", 1_000),
    ("MB", 1_000_000),
    ("GB", 1_000_000_000),
    ("TB", 1_000_000_000_000),
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("TiB", 1 << 40),
];

impl ByteSize {
    /// The size in bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        let split = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(text.len());
        let (number, unit) = (text[..split].trim(), text[split..].trim());
        let invalid = || format!("invalid size `{text}` (examples: 4096, 512KiB, 64MiB, 1GB)");
        if number.is_empty() {
            return Err(invalid());
        }
        let multiplier = if unit.is_empty() {
            1
        } else {
            SIZE_UNITS
                .iter()
                .find(|(name, _)| *name == unit)
                .map(|(_, m)| *m)
                .ok_or_else(|| {
                    format!(
                        "invalid size `{text}`: unknown unit `{unit}` (use B, KB, MB, GB, TB, KiB, MiB, GiB or TiB)"
                    )
                })?
        };
        let bytes = if number.contains('.') {
            let value: f64 = number.parse().map_err(|_| invalid())?;
            let bytes = value * multiplier as f64;
            if !bytes.is_finite() || bytes > u64::MAX as f64 {
                return Err(format!("size `{text}` is too large"));
            }
            bytes.round() as u64
        } else {
            let value: u64 = number.parse().map_err(|_| invalid())?;
            value
                .checked_mul(multiplier)
                .ok_or_else(|| format!("size `{text}` is too large"))?
        };
        Ok(ByteSize(bytes))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, multiplier) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
            if self.0 >= multiplier && self.0 % multiplier == 0 {
                return write!(f, "{}{name}", self.0 / multiplier);
            }
        }
        write!(f, "{}B", self.0)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;
        impl Visitor<'_> for SizeVisitor {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as 64MiB or 4096")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom(format!("size `{v}` must not be negative")))
            }
        }
        deserializer.deserialize_any(SizeVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations_with_units() {
        assert_eq!(
            "30s".parse::<HumanDuration>().unwrap().get(),
            StdDuration::from_secs(30)
        );
        assert_eq!(
            "250ms".parse::<HumanDuration>().unwrap().get(),
            StdDuration::from_millis(250)
        );
        assert_eq!(
            "1h 30m".parse::<HumanDuration>().unwrap().get(),
            StdDuration::from_secs(5400)
        );
        assert_eq!(
            "0s".parse::<HumanDuration>().unwrap().get(),
            StdDuration::ZERO
        );
    }

    #[test]
    fn rejects_durations_without_unit_with_a_hint() {
        let err = "30".parse::<HumanDuration>().unwrap_err();
        assert!(err.contains("30s"), "{err}");
        assert!("soon".parse::<HumanDuration>().is_err());
    }

    #[test]
    fn rounds_durations_up_to_whole_seconds() {
        assert_eq!(HumanDuration::from_millis(1).ceil_secs(), 1);
        assert_eq!(HumanDuration::from_secs(3).ceil_secs(), 3);
        assert_eq!(HumanDuration::from_millis(0).ceil_secs(), 0);
    }

    #[test]
    fn parses_sizes() {
        assert_eq!("4096".parse::<ByteSize>().unwrap().bytes(), 4096);
        assert_eq!("64MiB".parse::<ByteSize>().unwrap().bytes(), 64 << 20);
        assert_eq!("64 MiB".parse::<ByteSize>().unwrap().bytes(), 64 << 20);
        assert_eq!("1GB".parse::<ByteSize>().unwrap().bytes(), 1_000_000_000);
        assert_eq!("1.5KiB".parse::<ByteSize>().unwrap().bytes(), 1536);
    }

    #[test]
    fn rejects_ambiguous_or_malformed_sizes() {
        let err = "64m".parse::<ByteSize>().unwrap_err();
        assert!(err.contains("unknown unit `m`"), "{err}");
        assert!("MiB".parse::<ByteSize>().is_err());
        assert!("99999999999TiB".parse::<ByteSize>().is_err());
    }

    #[test]
    fn displays_sizes_in_the_largest_exact_binary_unit() {
        assert_eq!(ByteSize(64 << 20).to_string(), "64MiB");
        assert_eq!(ByteSize(1000).to_string(), "1000B");
    }
}
