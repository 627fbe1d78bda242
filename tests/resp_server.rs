//! The RESP listener end to end, over raw sockets: the connection commands clients send,
//! the multiset commands on the same sets the other protocols see, inline commands,
//! pipelining, and bad input answered with an error and a close.
#![cfg(feature = "server")]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use sortd::server::{Config, Server, Spawned};

/// Frames and RESP on free loopback ports, no HTTP, two event loops.
fn config() -> Config {
    Config {
        frame_addr: "127.0.0.1:0".parse().unwrap(),
        http_addr: None,
        resp_addr: Some("127.0.0.1:0".parse().unwrap()),
        threads: 2,
        ..Config::default()
    }
}

/// A server running `config`, and where it speaks RESP.
fn start_with(config: Config) -> (Spawned, SocketAddr) {
    let server = Server::bind(config).unwrap();
    let resp = server.resp_addr().unwrap();
    (server.spawn().unwrap(), resp)
}

fn start() -> (Spawned, SocketAddr) {
    start_with(config())
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// A command as an array of bulk strings.
fn command(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
    out
}

/// Sends `wire` and reads exactly `expected.len()` bytes back.
fn exchange(s: &mut TcpStream, wire: &[u8], expected: &str) {
    s.write_all(wire).unwrap();
    let mut got = vec![0; expected.len()];
    s.read_exact(&mut got)
        .unwrap_or_else(|e| panic!("{e}, expecting {expected:?}"));
    assert_eq!(String::from_utf8_lossy(&got), expected);
}

fn call(s: &mut TcpStream, args: &[&str], expected: &str) {
    exchange(s, &command(args), expected);
}

#[test]
fn connection_commands_answer_as_redis_does() {
    let (_server, addr) = start();
    let mut s = connect(addr);
    call(&mut s, &["PING"], "+PONG\r\n");
    call(&mut s, &["ping", "hi"], "$2\r\nhi\r\n");
    call(&mut s, &["ECHO", "a b"], "$3\r\na b\r\n");
    call(&mut s, &["SELECT", "0"], "+OK\r\n");
    call(
        &mut s,
        &["SELECT", "1"],
        "-ERR DB index is out of range\r\n",
    );
    // Unknown names are left out (the whole table is checked through redis-cli).
    call(&mut s, &["COMMAND", "DOCS", "nope"], "*0\r\n");
    call(&mut s, &["COMMAND", "INFO", "nope"], "*1\r\n$-1\r\n");
    call(
        &mut s,
        &["COMMAND", "COUNT"],
        &format!(":{}\r\n", sortd::resp::COMMANDS.len()),
    );
    call(&mut s, &["CLIENT", "GETNAME"], "$-1\r\n");
    call(&mut s, &["CLIENT", "SETNAME", "me"], "+OK\r\n");
    call(&mut s, &["CLIENT", "GETNAME"], "$2\r\nme\r\n");
    call(&mut s, &["CLIENT", "SETINFO", "LIB-NAME", "x"], "+OK\r\n");
    let auth = "-ERR AUTH <password> called without any password configured for the default \
                user. Are you sure your configuration is correct?\r\n";
    call(&mut s, &["AUTH", "secret"], auth);
    call(
        &mut s,
        &["FOO", "a", "b"],
        "-ERR unknown command 'FOO', with args beginning with: 'a' 'b' \r\n",
    );
    call(
        &mut s,
        &["HELLO", "4"],
        "-NOPROTO unsupported protocol version\r\n",
    );
    // HELLO 3: a map, and RESP3 from then on (a null is `_`).
    s.write_all(&command(&["HELLO", "3"])).unwrap();
    let mut head = [0u8; 4];
    s.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"%7\r\n");
    let mut rest = Vec::new();
    while !rest.ends_with(b"*0\r\n") {
        let mut b = [0u8; 1];
        s.read_exact(&mut b).unwrap();
        rest.push(b[0]);
    }
    let rest = String::from_utf8(rest).unwrap();
    assert!(rest.contains("$5\r\nproto\r\n:3\r\n"), "{rest}");
    assert!(rest.contains("$6\r\nserver\r\n$5\r\nsortd\r\n"), "{rest}");
    call(&mut s, &["CLIENT", "SETNAME", "x"], "+OK\r\n");
    let mut t = connect(addr);
    call(&mut t, &["CLIENT", "GETNAME"], "$-1\r\n");
    // HELLO 2: the same fields as a flat array.
    s.write_all(&command(&["HELLO", "2"])).unwrap();
    let mut rest = Vec::new();
    while !rest.ends_with(b"*0\r\n") {
        let mut b = [0u8; 1];
        s.read_exact(&mut b).unwrap();
        rest.push(b[0]);
    }
    assert!(
        rest.starts_with(b"*14\r\n"),
        "{}",
        String::from_utf8_lossy(&rest)
    );
    assert!(String::from_utf8_lossy(&rest).contains("$5\r\nproto\r\n:2\r\n"));
    call(&mut s, &["CLIENT", "GETNAME"], "$1\r\nx\r\n");
    call(&mut s, &["QUIT"], "+OK\r\n");
    let mut end = Vec::new();
    assert_eq!(
        s.read_to_end(&mut end).unwrap(),
        0,
        "QUIT closes the connection"
    );
}

#[test]
fn multiset_commands_work_on_the_sets_the_other_protocols_see() {
    let (server, addr) = start();
    let mut s = connect(addr);
    call(&mut s, &["MS.ADD", "scores:1", "3", "1", "3"], ":3\r\n");
    call(&mut s, &["MS.CARD", "scores:1"], ":3\r\n");
    call(&mut s, &["MS.COUNT", "scores:1", "3"], ":2\r\n");
    call(&mut s, &["MS.RANK", "scores:1", "3"], ":1\r\n");
    call(&mut s, &["MS.REM", "scores:1", "3"], ":1\r\n");
    call(&mut s, &["MS.REM", "scores:1", "1", "5"], ":1\r\n");
    call(&mut s, &["MS.CARD", "nope"], ":0\r\n");
    call(&mut s, &["MS.REM", "nope", "1"], ":0\r\n");
    call(
        &mut s,
        &["EXISTS", "scores:1", "nope", "scores:1"],
        ":2\r\n",
    );
    let mut c = sortd::client::Client::connect(server.frame_addr()).unwrap();
    c.use_set(Some("scores:1")).unwrap();
    assert_eq!(c.count(3).unwrap(), 1);
    c.insert_ack(&[9]).unwrap();
    call(&mut s, &["MS.CARD", "scores:1"], ":2\r\n");
    call(&mut s, &["MS.ADD", "default", "7"], ":1\r\n");
    assert_eq!(server.set().to_vec(), [7]);
    call(&mut s, &["DEL", "scores:1", "nope"], ":1\r\n");
    call(&mut s, &["EXISTS", "scores:1"], ":0\r\n");
    call(
        &mut s,
        &["DEL", "default"],
        "-ERR the default set cannot be dropped; CLEAR empties it\r\n",
    );
    // Errors, each leaving the connection usable.
    call(
        &mut s,
        &["MS.ADD", "k", "1.5"],
        "-ERR value is not an integer or out of range\r\n",
    );
    call(
        &mut s,
        &["MS.ADD", "k"],
        "-ERR wrong number of arguments for 'ms.add' command\r\n",
    );
    call(
        &mut s,
        &["MS.ADD", "a\nb", "1"],
        "-ERR a set name cannot hold control characters ('\\n' in \"a\\nb\")\r\n",
    );
    call(
        &mut s,
        &["MS.ADD", "", "1"],
        "-ERR a set name cannot be empty\r\n",
    );
    call(&mut s, &["EXISTS", "k"], ":0\r\n"); // refused adds created nothing
    // Inline commands, and a pipeline answered in order.
    exchange(&mut s, b"PING\r\nMS.ADD inline 5 6\n", "+PONG\r\n:2\r\n");
    let mut wire = Vec::new();
    let mut expected = String::new();
    for i in 1..=100 {
        wire.extend_from_slice(&command(&["MS.ADD", "piped", &i.to_string()]));
        expected.push_str(&format!(":{i}\r\n"));
    }
    exchange(&mut s, &wire, &expected);
}

#[test]
fn bad_input_gets_an_error_and_a_close_and_hurts_nobody() {
    let (_server, addr) = start();
    let mut other = connect(addr);
    call(&mut other, &["MS.ADD", "kept", "1"], ":1\r\n");
    for wire in [
        b"*1\r\n*1\r\n".to_vec(),
        b"*1\r\n*1\r\n".repeat(100_000),
        b"$3\r\nfoo\r\n".to_vec(),
        b"*99999999999\r\n".to_vec(),
        format!("*1\r\n${}\r\n", u64::MAX).into_bytes(),
        vec![b'a'; 70_000],
    ] {
        let mut s = connect(addr);
        let _ = s.write_all(&wire); // the server may close before taking it all
        let mut reply = Vec::new();
        let _ = s.read_to_end(&mut reply);
        let reply = String::from_utf8_lossy(&reply);
        assert!(reply.starts_with("-ERR Protocol error: "), "{reply}");
        assert!(reply.len() < 300, "{reply}");
    }
    call(&mut other, &["MS.CARD", "kept"], ":1\r\n");
}

/// RESP writes go through the log like any other: acknowledged over RESP, there after a
/// restart, in the sets the frame protocol reads.
#[test]
fn resp_writes_are_persisted() {
    let data = tempfile::tempdir().unwrap();
    let persistent = || Config {
        persistence: Some(sortd::persist::Options {
            fsync: sortd::persist::Fsync::Always,
            ..sortd::persist::Options::new(data.path())
        }),
        ..config()
    };
    let (server, addr) = start_with(persistent());
    let mut s = connect(addr);
    call(&mut s, &["MS.ADD", "kept", "5", "5", "6"], ":3\r\n");
    call(&mut s, &["MS.ADD", "gone", "1"], ":1\r\n");
    call(&mut s, &["MS.REM", "kept", "5"], ":1\r\n");
    call(&mut s, &["DEL", "gone"], ":1\r\n");
    server.stop().unwrap();
    let server = Server::bind(persistent()).unwrap();
    assert!(server.sets().get("gone").is_none());
    let kept = server.sets().get("kept").unwrap();
    assert_eq!(kept.data().runs().collect::<Vec<_>>(), [(5, 1), (6, 1)]);
}

/// From an adversarial review: replies that repeat the request keep to `--max-output`; one
/// command costs at most `--max-frame` bytes in all; DEL checks every key before dropping
/// any; integers and names follow Redis's rules.
#[test]
fn limits_and_redis_rules_hold_on_every_command() {
    let (_server, addr) = start_with(Config {
        max_output: 65536,
        max_frame: 65536,
        ..config()
    });
    let mut s = connect(addr);
    let big = "x".repeat(40_000);
    s.write_all(&command(&["ECHO", &big])).unwrap();
    let mut reply = [0u8; 5];
    s.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"-ERR ");
    let mut rest = Vec::new();
    while !rest.ends_with(b"\r\n") {
        let mut b = [0u8; 1];
        s.read_exact(&mut b).unwrap();
        rest.push(b[0]);
    }
    assert!(String::from_utf8_lossy(&rest).contains("does not fit"));
    call(&mut s, &["PING"], "+PONG\r\n");
    call(
        &mut s,
        &["CLIENT", "SETNAME", "a b"],
        "-ERR Client names cannot contain spaces, newlines or special characters.\r\n",
    );
    call(
        &mut s,
        &["CLIENT", "SETNAME", &"n".repeat(300)],
        "-ERR Client names are at most 255 bytes here\r\n",
    );
    call(
        &mut s,
        &["HELLO", "4"],
        "-NOPROTO unsupported protocol version\r\n",
    );
    call(
        &mut s,
        &["HELLO", "x"],
        "-ERR Protocol version is not an integer or out of range\r\n",
    );
    for bad in ["+1", " 1", "-", "", "1e3", "0x10", "9223372036854775808"] {
        call(
            &mut s,
            &["MS.ADD", "k", bad],
            "-ERR value is not an integer or out of range\r\n",
        );
    }
    call(
        &mut s,
        &["MS.ADD", "k", "-9223372036854775808", "0"],
        ":2\r\n",
    );
    // Leading zeros, as redis-benchmark writes __rand_int__: the same values.
    call(
        &mut s,
        &["MS.ADD", "z", "000000000123", "-007", "-0"],
        ":3\r\n",
    );
    call(&mut s, &["MS.COUNT", "z", "123"], ":1\r\n");
    call(&mut s, &["MS.COUNT", "z", "-7"], ":1\r\n");
    call(&mut s, &["MS.COUNT", "z", "0"], ":1\r\n");
    call(&mut s, &["MS.ADD", "a", "1"], ":1\r\n");
    call(
        &mut s,
        &["DEL", "a", "default"],
        "-ERR the default set cannot be dropped; CLEAR empties it\r\n",
    );
    call(&mut s, &["EXISTS", "a"], ":1\r\n");
    exchange(&mut s, b"*-1\r\n*0\r\nPING\r\n", "+PONG\r\n");
    // A command over --max-frame in all, though each bulk string is under it.
    let mut t = connect(addr);
    let half = "y".repeat(40_000);
    let _ = t.write_all(&command(&["MS.ADD", "k", &half, &half]));
    let mut reply = Vec::new();
    let _ = t.read_to_end(&mut reply);
    let reply = String::from_utf8_lossy(&reply);
    assert!(
        reply.starts_with("-ERR Protocol error: a command of more than 65536 bytes"),
        "{reply}"
    );
    call(&mut s, &["MS.CARD", "k"], ":2\r\n");
}

/// A RESP client that trickles a command a byte at a time, never finishing it, is dropped
/// by the idle timeout like any other; a client that goes on sending commands is not.
#[test]
fn a_slowloris_resp_client_is_dropped_and_a_busy_one_is_not() {
    let (_server, addr) = start_with(Config {
        idle_timeout: Duration::from_millis(300),
        ..config()
    });
    let mut slow = connect(addr);
    // The read timeout paces the trickle (a byte per 100 ms) and notices the close.
    slow.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut busy = connect(addr);
    let wire = command(&["MS.ADD", "k", &"1".repeat(200)]);
    let mut closed = false;
    for &byte in &wire[..wire.len() - 1] {
        call(&mut busy, &["PING"], "+PONG\r\n");
        if slow.write_all(&[byte]).is_err() {
            closed = true;
            break;
        }
        let mut b = [0; 1];
        match slow.read(&mut b) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(_) => panic!("no reply is owed to an incomplete command"),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => {
                closed = true;
                break;
            }
        }
    }
    assert!(closed, "a slowloris client should be disconnected");
    call(&mut busy, &["MS.CARD", "k"], ":0\r\n");
}

/// `--max-values` above the default raises the RESP argument limit with it, so an MS.ADD
/// of that many values is decoded (and one value more gets the protocol error).
#[test]
fn max_values_above_the_default_raises_the_argument_limit() {
    let max_values = 1_000_100u32;
    let (_server, addr) = start_with(Config {
        limits: sortd::service::Limits {
            max_values,
            ..sortd::service::Limits::default()
        },
        ..config()
    });
    let mut s = connect(addr);
    let mut wire = format!("*{}\r\n$6\r\nMS.ADD\r\n$1\r\nk\r\n", max_values + 2).into_bytes();
    for _ in 0..max_values {
        wire.extend_from_slice(b"$1\r\n7\r\n");
    }
    exchange(&mut s, &wire, &format!(":{max_values}\r\n"));
    let mut t = connect(addr);
    let _ = t.write_all(format!("*{}\r\n", max_values + 3).as_bytes());
    let mut reply = Vec::new();
    let _ = t.read_to_end(&mut reply);
    assert!(
        String::from_utf8_lossy(&reply)
            .contains("argument count 1000103 is over the limit of 1000102"),
        "{}",
        String::from_utf8_lossy(&reply)
    );
}
