//! A real `redis-server` on a loopback port, for the fleet rate-limit tests
//! (installed by `scripts/setup --test`).

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::proxy::free_port;

/// A running Redis; killed when dropped.
pub struct Redis {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl Redis {
    /// Starts `redis-server` without persistence on a free port.
    pub async fn start() -> Redis {
        for _ in 0..3 {
            let port = free_port();
            let child = Command::new("redis-server")
                .args([
                    "--port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server not found: run scripts/setup --test");
            let mut redis = Redis {
                child,
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
            };
            if redis.wait_ready().await {
                return redis;
            }
        }
        panic!("redis-server did not start");
    }

    /// Waits until Redis answers PING (false if the process exited).
    async fn wait_ready(&mut self) -> bool {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if let Ok(mut s) = tokio::net::TcpStream::connect(self.addr).await {
                let mut buf = [0u8; 7];
                if s.write_all(b"PING\r\n").await.is_ok()
                    && s.read_exact(&mut buf).await.is_ok()
                    && &buf == b"+PONG\r\n"
                {
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    /// Kills the server (to test what happens when Redis goes away).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}
