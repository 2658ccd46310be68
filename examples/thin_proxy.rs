//! A yardstick, not a product: the smallest Pingora proxy that forwards
//! every request to one upstream (no cache, no filters, one thread,
//! mimalloc like Palisade). `benches/compare.sh` runs it beside Palisade
//! and nginx, so a table shows how much of a request's cost is Pingora's
//! own path and how much Palisade adds.
//!
//!   cargo run --release --example thin_proxy -- LISTEN_ADDR UPSTREAM_ADDR

use async_trait::async_trait;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Thin {
    upstream: String,
}

#[async_trait]
impl ProxyHttp for Thin {
    type CTX = ();

    fn new_ctx(&self) -> Self::CTX {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(
            self.upstream.as_str(),
            false,
            String::new(),
        )))
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(upstream)) = (args.next(), args.next()) else {
        eprintln!("usage: thin_proxy LISTEN_ADDR UPSTREAM_ADDR");
        std::process::exit(2);
    };
    let conf = ServerConf {
        threads: 1,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut service = http_proxy_service(&server.configuration, Thin { upstream });
    service.add_tcp(&listen);
    server.add_service(service);
    server.run_forever();
}
