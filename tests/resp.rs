//! The RESP command decoder on generated input: any commands, however the bytes arrive,
//! decode to themselves; arbitrary bytes never panic (the fuzz target's checks).
#![cfg(feature = "server")]

use proptest::prelude::*;
use sortd::resp::{Decoded, Decoder, Limits};

fn encode(commands: &[Vec<Vec<u8>>]) -> Vec<u8> {
    let mut wire = Vec::new();
    for command in commands {
        wire.extend_from_slice(format!("*{}\r\n", command.len()).as_bytes());
        for arg in command {
            wire.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            wire.extend_from_slice(arg);
            wire.extend_from_slice(b"\r\n");
        }
    }
    wire
}

proptest! {
    #[test]
    fn commands_round_trip_under_any_split(
        commands in prop::collection::vec(
            prop::collection::vec(prop::collection::vec(any::<u8>(), 0..20), 0..8),
            1..10,
        ),
        pieces in prop::collection::vec(1usize..30, 1..10),
    ) {
        let wire = encode(&commands);
        let mut decoder = Decoder::new(Limits::default());
        let (mut buf, mut fed, mut got) = (Vec::new(), 0, Vec::new());
        let mut sizes = pieces.iter().cycle();
        while got.len() < commands.len() {
            match decoder.decode(&buf) {
                Decoded::Command { args, used } => {
                    got.push(args.iter().map(|r| buf[r.clone()].to_vec()).collect::<Vec<_>>());
                    buf.drain(..used);
                }
                Decoded::Incomplete => {
                    prop_assert!(fed < wire.len(), "incomplete at the end");
                    let n = (*sizes.next().unwrap()).min(wire.len() - fed);
                    buf.extend_from_slice(&wire[fed..fed + n]);
                    fed += n;
                }
                Decoded::Invalid(e) => prop_assert!(false, "{}", e),
            }
        }
        prop_assert_eq!(got, commands);
        prop_assert!(buf.is_empty() && fed == wire.len());
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..300)) {
        sortd::fuzzing::resp(&data);
    }
}
