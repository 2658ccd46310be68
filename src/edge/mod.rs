//! Edge policies applied before a request goes anywhere: path
//! normalisation and client address filtering.

pub mod host;
pub mod ip_filter;
pub mod overrides;
pub mod path;
pub mod readings;

pub use host::{Host, InvalidHost};
pub use ip_filter::IpFilter;
