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

/// One HTTP request on its own connection (`Connection: close`); returns the status and
/// the body.
pub fn http_call(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut reply = String::new();
    stream.read_to_string(&mut reply).expect("read");
    let status = reply
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP reply: {reply:?}"));
    let body = reply
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_string());
    (status, body)
}
