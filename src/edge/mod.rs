//! Edge policies applied before a request goes anywhere: the host, path
//! normalisation, client address filtering, and a route's own answers and
//! rewrites.

pub mod compression;
pub mod host;
pub mod ip_filter;
pub mod overrides;
pub mod path;
pub mod readings;
pub mod rules;

pub use host::{Host, InvalidHost};
pub use ip_filter::IpFilter;
