//! Embedding the sortd server in another program: bind on free ports, serve from a
//! thread, use the multiset directly beside the network clients, and shut down cleanly.
//!
//! ```sh
//! cargo run --example embedded_server
//! ```

use std::thread;

use sortd::client::Client;
use sortd::server::{Config, Server};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = Server::bind(Config {
        frame_addr: "127.0.0.1:0".parse()?,
        http_addr: Some("127.0.0.1:0".parse()?),
        threads: 2,
        ..Config::default()
    })?;
    let frame = server.frame_addr();
    let http = server.http_addr().expect("HTTP was asked for");
    println!("serving frames on {frame}, HTTP on http://{http}");

    // The program can read and write the same multiset its clients do.
    let set = std::sync::Arc::clone(server.set());
    set.insert_n(42, 2);

    let stop = server.shutdown_handle();
    let running = thread::spawn(move || server.run());

    let mut client = Client::connect(frame)?;
    let sorted = client.insert(&[7, 3, 7])?;
    println!("a client inserted [7, 3, 7] and got back {sorted:?}");
    assert_eq!(sorted, [3, 7, 7, 42, 42]);
    assert_eq!(set.count(&7), 2);

    // Graceful: owed replies are written, then run() returns.
    stop.shutdown();
    running.join().expect("server thread")?;
    println!("stopped; {} values were held", set.len());
    Ok(())
}
