//! Integration tests: real origin servers and the real `palisade` binary on
//! loopback ephemeral ports, talking real HTTP.
//!
//! One test crate (one binary linking Pingora) with a module per feature.

mod harness;

mod access_log;
mod acme;
mod auth;
mod blame;
mod bodies;
mod buffering;
mod cache;
mod cli;
mod client_limits;
mod cluster;
mod compression;
mod edge;
mod error_pages;
mod errors;
mod fleet;
mod forwarding;
mod http2;
mod hygiene;
mod interim;
mod lean_forward;
mod lifecycle;
mod limits;
mod metrics;
mod ocsp;
mod origin_faults;
mod protocols;
mod proxy_protocol;
mod reload;
mod route_rules;
mod routing;
mod tls;
mod upstreams;
