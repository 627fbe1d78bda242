//! The client library: every operation, and pipelining.
//!
//! ```sh
//! cargo run --example client               # against a server it starts itself
//! cargo run --example client 127.0.0.1:6000   # against a running server (changes its data!)
//! ```

use sortd::client::Client;
use sortd::frame::{Request, Response};
use sortd::server::{Config, Server};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Use the address given, or start a private server on a free port.
    let (addr, server) = match std::env::args().nth(1) {
        Some(addr) => (addr.parse()?, None),
        None => {
            let server = Server::bind(Config {
                frame_addr: "127.0.0.1:0".parse()?,
                http_addr: None,
                ..Config::default()
            })?;
            let addr = server.frame_addr();
            let stop = server.shutdown_handle();
            (addr, Some((stop, std::thread::spawn(move || server.run()))))
        }
    };
    let mut c = Client::connect(addr)?;

    c.clear()?;
    println!("insert      -> {:?}", c.insert(&[5, 1, 5, 9])?);
    println!("insert_ack  -> len {}", c.insert_ack(&[2, 2])?);
    println!("count 5     -> {}", c.count(5)?);
    println!("remove 2 x1 -> {} removed", c.remove(2, 1)?);
    let (value, len) = c.add_random()?;
    println!("add_random  -> {value} (len {len})");
    let (runs, truncated) = c.get(0, 100, 0)?;
    println!("get 0..=100 -> {runs:?} (truncated: {truncated})");
    let stats = c.stats()?;
    println!(
        "stats       -> len {} distinct {} range {:?}",
        stats.len, stats.distinct, stats.min_max
    );
    c.ping(b"hello")?;

    // Pipelining: queue many requests, then read the replies in order.
    let ids: Vec<u32> = (0..100)
        .map(|v| c.send(&Request::Count { value: v }))
        .collect();
    let mut present = 0;
    for id in ids {
        let (got, reply) = c.recv()?;
        assert_eq!(got, id, "replies come back in request order");
        if let Response::Count(n) = reply {
            present += u64::from(n > 0);
        }
    }
    println!("pipelined 100 COUNTs: {present} values present");
    println!("clear       -> {} removed", c.clear()?);

    if let Some((stop, running)) = server {
        stop.shutdown();
        running.join().expect("server thread")?;
    }
    Ok(())
}
