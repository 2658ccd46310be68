//! A yardstick, not a product: the smallest Pingora proxy that forwards
//! every request to one upstream (no cache, no filters, one thread,
//! mimalloc like Palisade). `benches/compare.sh` runs it beside Palisade
//! and nginx, so a table shows how much of a request's cost is Pingora's
//! own path and how much Palisade adds.
//!
//! With `THIN_LEAN` set in its environment it forwards in `request_filter`
//! on Pingora's connector and HTTP/1.1 client instead (no retries, no
//! filters): the floor of a lean forward path like Palisade's
//! (`src/proxy/lean_forward.rs`), for `benches/instructions.sh`.
//!
//!   cargo run --release --example thin_proxy -- LISTEN_ADDR UPSTREAM_ADDR

use async_trait::async_trait;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Thin {
    upstream: String,
    /// The connector of the lean variant (`THIN_LEAN`).
    lean: Option<pingora::connectors::http::Connector>,
}

impl Thin {
    fn peer(&self) -> HttpPeer {
        HttpPeer::new(self.upstream.as_str(), false, String::new())
    }

    /// The lean variant: one upstream exchange, copied through.
    async fn forward(
        &self,
        connector: &pingora::connectors::http::Connector,
        session: &mut Session,
    ) -> Result<()> {
        let peer = self.peer();
        let (mut up, _reused) = connector.get_http_session(&peer).await?;
        let req = session.req_header().clone();
        up.write_request_header(Box::new(req)).await?;
        up.finish_request_body().await?;
        up.read_response_header().await?;
        let Some(resp) = up.response_header() else {
            return Error::e_explain(ErrorType::InternalError, "no header");
        };
        session
            .write_response_header(Box::new(resp.clone()), false)
            .await?;
        while let Some(body) = up.read_response_body().await? {
            session.write_response_body(Some(body), false).await?;
        }
        session.write_response_body(None, true).await?;
        session.finish_body().await?;
        connector.release_http_session(up, &peer, None).await;
        Ok(())
    }
}

#[async_trait]
impl ProxyHttp for Thin {
    type CTX = ();

    fn new_ctx(&self) -> Self::CTX {}

    async fn request_filter(&self, session: &mut Session, _ctx: &mut ()) -> Result<bool> {
        let Some(connector) = &self.lean else {
            return Ok(false);
        };
        self.forward(connector, session).await?;
        Ok(true)
    }

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(self.peer()))
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
    let lean = std::env::var_os("THIN_LEAN")
        .is_some()
        .then(|| pingora::connectors::http::Connector::new(None));
    let mut service = http_proxy_service(&server.configuration, Thin { upstream, lean });
    service.add_tcp(&listen);
    server.add_service(service);
    server.run_forever();
}
