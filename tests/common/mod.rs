//! Helpers shared by the end-to-end tests.
// Each test binary uses a different part of these helpers.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use sortd::server::{Config, Server, Spawned};

/// A server running on its own thread (the library's `Spawned`, which shuts it down and
/// joins it on drop), with its addresses and multiset at hand.
pub struct Running {
    pub addr: SocketAddr,
    pub http: SocketAddr,
    pub set: Arc<sortd::SortedMultiset<i64>>,
    pub sets: Arc<sortd::service::Sets>,
    server: Option<Spawned>,
}

impl Running {
    pub fn start(config: Config) -> Running {
        let server = Server::bind(Config {
            frame_addr: "127.0.0.1:0".parse().unwrap(),
            http_addr: Some("127.0.0.1:0".parse().unwrap()),
            ..config
        })
        .and_then(Server::spawn)
        .expect("bind and spawn");
        Running {
            addr: server.frame_addr(),
            http: server.http_addr().expect("HTTP is enabled"),
            set: Arc::clone(server.set()),
            sets: Arc::clone(server.sets()),
            server: Some(server),
        }
    }

    /// Shuts the server down gracefully; what `Server::run` returned.
    pub fn stop(&mut self) -> std::io::Result<()> {
        self.server.take().map_or(Ok(()), Spawned::stop)
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

/// The server binary, started on free ports with two event loops unless `args` say
/// otherwise; killed on drop if still running.
pub struct Proc {
    pub child: Child,
    pub frame: SocketAddr,
    pub http: SocketAddr,
    /// Where it speaks RESP, when started with `--resp-addr`.
    pub resp: Option<SocketAddr>,
}

impl Proc {
    /// Starts `server args..`, through `sh -c shell_prefix` when given (to set resource
    /// limits). Returns stderr when it exits instead of starting.
    pub fn start(shell_prefix: Option<&str>, args: &[&str]) -> Result<Proc, String> {
        let server = env!("CARGO_BIN_EXE_server");
        let mut all = vec!["--frame-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"];
        if !args.contains(&"--threads") {
            all.extend(["--threads", "2"]);
        }
        all.extend_from_slice(args);
        let mut cmd = match shell_prefix {
            Some(prefix) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("{prefix}; exec \"$0\" \"$@\""))
                    .arg(server);
                c
            }
            None => Command::new(server),
        };
        let mut child = cmd
            .args(&all)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn server");
        // The banner is printed once both ports are bound: the readiness signal.
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read banner");
        if line.is_empty() {
            let mut err = String::new();
            child
                .stderr
                .take()
                .expect("stderr")
                .read_to_string(&mut err)
                .expect("read stderr");
            child.wait().expect("wait");
            return Err(err);
        }
        let addr_after = |marker: &str| -> SocketAddr {
            let rest = &line[line.find(marker).expect("banner") + marker.len()..];
            rest.split([',', ' '])
                .next()
                .unwrap()
                .parse()
                .expect("address")
        };
        Ok(Proc {
            frame: addr_after("frame protocol on "),
            http: addr_after("HTTP on http://"),
            resp: line.contains("RESP on ").then(|| addr_after("RESP on ")),
            child,
        })
    }

    /// SIGTERM, then waits; returns stderr. Panics if the exit was not clean.
    pub fn terminate(mut self) -> String {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        assert!(self.child.wait().expect("wait").success());
        self.stderr()
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("wait");
    }

    /// Waits for the process to exit by itself (within `within`); its exit status and
    /// stderr.
    pub fn wait_exit(mut self, within: Duration) -> (std::process::ExitStatus, String) {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return (status, self.stderr());
            }
            assert!(Instant::now() < deadline, "the server did not exit");
            thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn stderr(&mut self) -> String {
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            e.read_to_string(&mut err).expect("read stderr");
        }
        err
    }

    /// The server's resident set, in KiB (`VmRSS` in `/proc/PID/status`).
    pub fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS")
    }

    /// The anonymous part of the resident set (the heap and stacks, not the binary's own
    /// pages, which stay resident once touched), in KiB.
    pub fn rss_anon_kib(&self) -> u64 {
        self.status_kib("RssAnon")
    }

    fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("read /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{field} in /proc status"))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One line of `GET /metrics`: the value of `name` (with its labels, as printed), or 0
/// when absent.
pub fn metric(http: SocketAddr, name: &str) -> u64 {
    let (status, text) = http_call(http, "GET", "/metrics", "");
    assert_eq!(status, 200);
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .map_or(0, |v| v.trim().parse().expect("metric value"))
}

/// Polls `condition` until it holds or `within` passes; says which.
pub fn eventually(within: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// A keep-alive HTTP/1.1 connection for tests: one request, one response.
pub struct HttpConn {
    reader: BufReader<std::net::TcpStream>,
}

impl HttpConn {
    pub fn open(addr: SocketAddr) -> std::io::Result<HttpConn> {
        let stream = std::net::TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        Ok(HttpConn {
            reader: BufReader::new(stream),
        })
    }

    /// Sends one request and reads its response: status and body.
    pub fn call(&mut self, method: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
        use std::io::Write;
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.reader.get_mut().write_all(request.as_bytes())?;
        let mut head = String::new();
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            if line == "\r\n" {
                break;
            }
            head.push_str(&line);
        }
        let bad = |what: &str| std::io::Error::other(format!("{what} in {head:?}"));
        let status = head
            .get(9..12)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("no status"))?;
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| bad("no Content-Length"))?;
        let mut body = vec![0; len];
        self.reader.read_exact(&mut body)?;
        String::from_utf8(body)
            .map(|b| (status, b))
            .map_err(|_| bad("a body that is not UTF-8"))
    }
}
