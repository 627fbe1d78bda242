//! Helpers shared by the end-to-end tests.
// Each test binary uses a different part of these helpers.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread;

use sortd::server::{Config, Server, ShutdownHandle};

/// A server running on its own thread; shut down and joined on drop.
pub struct Running {
    pub addr: SocketAddr,
    pub http: SocketAddr,
    shutdown: ShutdownHandle,
    thread: Option<thread::JoinHandle<std::io::Result<()>>>,
    pub set: Arc<sortd::SortedMultiset<i64>>,
}

impl Running {
    pub fn start(config: Config) -> Running {
        let server = Server::bind(Config {
            frame_addr: "127.0.0.1:0".parse().unwrap(),
            http_addr: Some("127.0.0.1:0".parse().unwrap()),
            ..config
        })
        .expect("bind");
        Running {
            addr: server.frame_addr(),
            http: server.http_addr().expect("HTTP is enabled"),
            shutdown: server.shutdown_handle(),
            set: Arc::clone(server.set()),
            thread: Some(thread::spawn(move || server.run())),
        }
    }

    pub fn stop(&mut self) -> std::io::Result<()> {
        self.shutdown.shutdown();
        self.thread
            .take()
            .map_or(Ok(()), |t| t.join().expect("server thread"))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// A two-thread configuration: this machine has two cores.
pub fn small_config() -> Config {
    Config {
        threads: 2,
        ..Config::default()
    }
}
