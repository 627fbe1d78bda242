//! The command table: every command's name, arity, flags, documentation and handler, in
//! one place. Dispatch, `COMMAND`, `COMMAND DOCS` (what `redis-cli` builds its hints and
//! `help` from) and the arity errors all read it, so a command is declared once.

use super::{Ctx, Outcome, connection, keys, multiset, server};

/// What runs a command: the context and the arguments after the command's name (after
/// the subcommand's, for a subcommand).
pub type Handler = fn(&mut Ctx<'_>, &[&[u8]]) -> Outcome;

/// One command (or subcommand).
#[derive(Debug)]
pub struct Command {
    /// Upper case, as matched (case-insensitively) and documented: `MS.ADD`, `SETNAME`.
    pub name: &'static str,
    /// Redis's arity: the number of words including the name (a subcommand's counts both
    /// words); negative: at least that many.
    pub arity: i32,
    /// Redis's command flags (`COMMAND INFO`): `write` or `readonly`, `fast`, ...
    pub flags: &'static [&'static str],
    /// Where the key is (first, last, step; `0, 0, 0`: no key; last `-1`: every argument
    /// from the first key on).
    pub keys: (i32, i32, i32),
    /// `COMMAND DOCS` group (`redis-cli`'s `help @group`).
    pub group: &'static str,
    /// One line on what it does.
    pub summary: &'static str,
    /// Its cost.
    pub complexity: &'static str,
    /// Its arguments, for `COMMAND DOCS`.
    pub args: &'static [Arg],
    /// Subcommands (`CLIENT SETNAME`); the command itself runs when called without one.
    pub subcommands: &'static [Command],
    /// Whether its reply reports the data (so, with persistence on, waits for the log like
    /// every read); `PING` and the connection commands do not.
    pub reads_data: bool,
    /// ACL categories beyond those its flags and group give (`COMMAND INFO`).
    pub acl: &'static [&'static str],
    /// Runs it.
    pub run: Handler,
}

impl Command {
    /// Its arguments as `redis-cli` shows them in hints and `help` (`key value [value
    /// ...]`), by the rules it applies to `COMMAND DOCS`.
    ///
    /// ```
    /// let range = sortd::resp::lookup(sortd::resp::COMMANDS, b"MS.RANGE").unwrap();
    /// assert_eq!(range.hint(), "key min max [LIMIT count] [WITHCOUNTS]");
    /// ```
    #[must_use]
    pub fn hint(&self) -> String {
        hint(self.args, " ")
    }

    /// Whether `words` words (the name included) suit the arity.
    #[must_use]
    pub fn takes(&self, words: usize) -> bool {
        let n = self.arity.unsigned_abs() as usize;
        if self.arity < 0 {
            words >= n
        } else {
            words == n
        }
    }
}

/// Arguments as a hint, joined by `separator`.
fn hint(args: &[Arg], separator: &str) -> String {
    args.iter()
        .map(Arg::hint)
        .collect::<Vec<_>>()
        .join(separator)
}

/// The kind of an argument, in `COMMAND DOCS`'s words.
#[derive(Debug)]
pub enum Kind {
    /// A key: a set's name.
    Key,
    /// An `i64`.
    Integer,
    /// A floating-point number.
    Double,
    /// Any string.
    String,
    /// A glob pattern.
    Pattern,
    /// A keyword alone (`WITHCOUNTS`).
    PureToken,
    /// One of several.
    OneOf(&'static [Arg]),
    /// Several in a row.
    Block(&'static [Arg]),
}

impl Kind {
    /// The name `COMMAND DOCS` gives it.
    #[must_use]
    pub fn doc_name(&self) -> &'static str {
        match self {
            Kind::Key => "key",
            Kind::Integer => "integer",
            Kind::Double => "double",
            Kind::String => "string",
            Kind::Pattern => "pattern",
            Kind::PureToken => "pure-token",
            Kind::OneOf(_) => "oneof",
            Kind::Block(_) => "block",
        }
    }
}

/// One documented argument.
#[derive(Debug)]
pub struct Arg {
    /// Its name in hints (`value`).
    pub name: &'static str,
    /// What it holds.
    pub kind: Kind,
    /// The keyword before it (`LIMIT`), if any.
    pub token: Option<&'static str>,
    /// May be left out.
    pub optional: bool,
    /// May repeat.
    pub multiple: bool,
}

const fn arg(name: &'static str, kind: Kind) -> Arg {
    Arg {
        name,
        kind,
        token: None,
        optional: false,
        multiple: false,
    }
}

impl Arg {
    /// This argument in a hint: its token and name, `[...]` when optional, `[name ...]`
    /// after it when it repeats.
    fn hint(&self) -> String {
        let repeat = match &self.kind {
            Kind::OneOf(args) => hint(args, "|"),
            Kind::Block(args) => hint(args, " "),
            Kind::PureToken => String::new(),
            _ => self.name.to_string(),
        };
        let token = match (self.token, &self.kind) {
            (Some(t), Kind::PureToken) => t.to_string(),
            (Some(t), _) => format!("{t} "),
            (None, _) => String::new(),
        };
        let mut s = format!("{token}{repeat}");
        if self.multiple {
            s = format!("{s} [{repeat} ...]");
        }
        if self.optional {
            s = format!("[{s}]");
        }
        s
    }

    const fn optional(mut self) -> Arg {
        self.optional = true;
        self
    }

    const fn multiple(mut self) -> Arg {
        self.multiple = true;
        self
    }

    const fn token(mut self, token: &'static str) -> Arg {
        self.token = Some(token);
        self
    }
}

/// A keyword alone, optional (`WITHCOUNTS`), named `name` in hints.
const fn flag(name: &'static str, token: &'static str) -> Arg {
    arg(name, Kind::PureToken).token(token).optional()
}

const KEY: Arg = arg("key", Kind::Key);
const VALUE: Arg = arg("value", Kind::Integer);
const MIN: Arg = arg("min", Kind::Integer);
const MAX: Arg = arg("max", Kind::Integer);

/// Defaults for the fields most commands share; each entry overrides what it needs.
const BASE: Command = Command {
    name: "",
    arity: 1,
    flags: &[],
    keys: (0, 0, 0),
    group: "",
    summary: "",
    complexity: "O(1)",
    args: &[],
    subcommands: &[],
    reads_data: false,
    acl: &[],
    run: server::unreachable,
};

/// A multiset command on one key (the first argument).
const MULTISET: Command = Command {
    keys: (1, 1, 1),
    group: "multiset",
    reads_data: true,
    ..BASE
};

/// Every command, sorted by name (dispatch searches it; a test checks the order).
pub static COMMANDS: &[Command] = &[
    Command {
        name: "AUTH",
        arity: -2,
        flags: &["noscript", "loading", "stale", "fast", "no_auth"],
        group: "connection",
        summary: "Authenticates as Redis does with no password set: user default takes any password",
        args: &[
            arg("username", Kind::String).optional(),
            arg("password", Kind::String),
        ],
        run: connection::auth,
        ..BASE
    },
    Command {
        name: "CLIENT",
        arity: -2,
        group: "connection",
        summary: "Commands about the connection itself",
        subcommands: &[
            Command {
                name: "GETNAME",
                arity: 2,
                flags: &["noscript", "loading", "stale"],
                group: "connection",
                summary: "Returns the connection's name",
                run: connection::client_getname,
                ..BASE
            },
            Command {
                name: "ID",
                arity: 2,
                flags: &["noscript", "loading", "stale"],
                group: "connection",
                summary: "Returns the connection's unique id",
                run: connection::client_id,
                ..BASE
            },
            Command {
                name: "SETINFO",
                arity: 4,
                flags: &["noscript", "loading", "stale"],
                group: "connection",
                summary: "Accepts the client library's name and version (and keeps neither)",
                args: &[arg(
                    "attr",
                    Kind::OneOf(&[
                        arg("libname", Kind::String).token("LIB-NAME"),
                        arg("libver", Kind::String).token("LIB-VER"),
                    ]),
                )],
                run: connection::client_setinfo,
                ..BASE
            },
            Command {
                name: "SETNAME",
                arity: 3,
                flags: &["noscript", "loading", "stale"],
                group: "connection",
                summary: "Names the connection (at most 255 bytes, no spaces)",
                args: &[arg("connection-name", Kind::String)],
                run: connection::client_setname,
                ..BASE
            },
        ],
        run: server::unreachable,
        ..BASE
    },
    Command {
        name: "COMMAND",
        arity: -1,
        flags: &["loading", "stale"],
        group: "server",
        summary: "Describes every command (name, arity, flags, key positions)",
        complexity: "O(N) where N is the number of commands",
        subcommands: &[
            Command {
                name: "COUNT",
                arity: 2,
                flags: &["loading", "stale"],
                group: "server",
                summary: "Returns how many commands there are",
                run: server::command_count,
                ..BASE
            },
            Command {
                name: "DOCS",
                arity: -2,
                flags: &["loading", "stale"],
                group: "server",
                summary: "Documents the commands named, or every command (redis-cli's hints)",
                complexity: "O(N) where N is the number of commands documented",
                args: &[arg("command-name", Kind::String).optional().multiple()],
                run: server::command_docs,
                ..BASE
            },
            Command {
                name: "INFO",
                arity: -2,
                flags: &["loading", "stale"],
                group: "server",
                summary: "Describes the commands named, or every command",
                complexity: "O(N) where N is the number of commands described",
                args: &[arg("command-name", Kind::String).optional().multiple()],
                run: server::command_info,
                ..BASE
            },
            Command {
                name: "LIST",
                arity: -2,
                flags: &["loading", "stale"],
                group: "server",
                summary: "Returns every command's name, or those a filter keeps",
                complexity: "O(N) where N is the number of commands",
                args: &[arg(
                    "filterby",
                    Kind::OneOf(&[
                        arg("module-name", Kind::String).token("MODULE"),
                        arg("category", Kind::String).token("ACLCAT"),
                        arg("pattern", Kind::Pattern).token("PATTERN"),
                    ]),
                )
                .token("FILTERBY")
                .optional()],
                run: server::command_list,
                ..BASE
            },
        ],
        run: server::command_all,
        ..BASE
    },
    Command {
        name: "CONFIG",
        arity: -2,
        group: "server",
        summary: "Reads the server's settings as Redis names them (they are set by flags)",
        subcommands: &[
            Command {
                name: "GET",
                arity: -3,
                flags: &["admin", "noscript", "loading", "stale"],
                group: "server",
                summary: "Returns the settings whose names match the patterns",
                complexity: "O(N) where N is the number of settings",
                args: &[arg("parameter", Kind::Pattern).multiple()],
                run: server::config_get,
                ..BASE
            },
            Command {
                name: "SET",
                arity: -4,
                flags: &["admin", "noscript", "loading", "stale"],
                group: "server",
                summary: "Refused: sortd is configured by its command-line flags",
                args: &[arg(
                    "data",
                    Kind::Block(&[arg("parameter", Kind::String), arg("value", Kind::String)]),
                )
                .multiple()],
                run: server::config_set,
                ..BASE
            },
        ],
        run: server::unreachable,
        ..BASE
    },
    Command {
        name: "DBSIZE",
        arity: 1,
        flags: &["readonly", "fast"],
        group: "server",
        summary: "Returns how many sets there are, default included",
        reads_data: true,
        acl: &["@keyspace"],
        run: keys::dbsize,
        ..BASE
    },
    Command {
        name: "DEL",
        arity: -2,
        flags: &["write"],
        keys: (1, -1, 1),
        group: "generic",
        summary: "Drops sets, values and all; returns how many existed (default cannot be \
                  dropped)",
        complexity: "O(N) where N is the number of keys",
        args: &[KEY.multiple()],
        reads_data: true,
        run: keys::del,
        ..BASE
    },
    Command {
        name: "ECHO",
        arity: 2,
        flags: &["loading", "stale", "fast"],
        group: "connection",
        summary: "Returns the message",
        args: &[arg("message", Kind::String)],
        run: connection::echo,
        ..BASE
    },
    Command {
        name: "EXISTS",
        arity: -2,
        flags: &["readonly", "fast"],
        keys: (1, -1, 1),
        group: "generic",
        summary: "Returns how many of the keys name a set",
        complexity: "O(N) where N is the number of keys",
        args: &[KEY.multiple()],
        reads_data: true,
        run: keys::exists,
        ..BASE
    },
    Command {
        name: "HELLO",
        arity: -1,
        flags: &["noscript", "loading", "stale", "fast", "no_auth"],
        group: "connection",
        summary: "Chooses RESP2 or RESP3 and describes the server",
        args: &[arg(
            "arguments",
            Kind::Block(&[
                arg("protover", Kind::Integer),
                arg(
                    "username-password",
                    Kind::Block(&[arg("username", Kind::String), arg("password", Kind::String)]),
                )
                .token("AUTH")
                .optional(),
                arg("clientname", Kind::String).token("SETNAME").optional(),
            ]),
        )
        .optional()],
        run: connection::hello,
        ..BASE
    },
    Command {
        name: "INFO",
        arity: -1,
        flags: &["loading", "stale"],
        group: "server",
        summary: "Describes the server: server, clients, persistence, stats, keyspace",
        args: &[arg("section", Kind::String).optional().multiple()],
        reads_data: true,
        run: server::info,
        ..BASE
    },
    Command {
        name: "KEYS",
        arity: 2,
        flags: &["readonly"],
        group: "generic",
        summary: "Returns the names of the sets that match the pattern",
        complexity: "O(N) where N is the number of sets",
        args: &[arg("pattern", Kind::Pattern)],
        reads_data: true,
        run: keys::keys,
        ..BASE
    },
    Command {
        name: "MS.ADD",
        arity: -3,
        flags: &["write", "denyoom"],
        summary: "Adds the values (creating the set); returns the set's size afterwards",
        complexity: "O(M log N) for M values in a set of N distinct",
        args: &[KEY, VALUE.multiple()],
        run: multiset::add,
        ..MULTISET
    },
    Command {
        name: "MS.CARD",
        arity: 2,
        flags: &["readonly", "fast"],
        summary: "Returns how many occurrences the set holds",
        args: &[KEY],
        run: multiset::card,
        ..MULTISET
    },
    Command {
        name: "MS.CLEAR",
        arity: 2,
        flags: &["write"],
        summary: "Removes every value (the set stays); returns how many occurrences went",
        complexity: "O(N) for N distinct values",
        args: &[KEY],
        run: multiset::clear,
        ..MULTISET
    },
    Command {
        name: "MS.COUNT",
        arity: 3,
        flags: &["readonly", "fast"],
        summary: "Returns how many times the value occurs",
        complexity: "O(log N)",
        args: &[KEY, VALUE],
        run: multiset::count,
        ..MULTISET
    },
    Command {
        name: "MS.COUNTRANGE",
        arity: 4,
        flags: &["readonly"],
        summary: "Returns how many occurrences lie within min..max (-inf, +inf, (exclusive)",
        complexity: "O(log N + M) for M distinct values in the range",
        args: &[KEY, MIN, MAX],
        run: multiset::countrange,
        ..MULTISET
    },
    Command {
        name: "MS.QUANTILE",
        arity: -3,
        flags: &["readonly"],
        summary: "Returns the nearest-rank quantile of each q in 0..=1 (nil for an empty set)",
        complexity: "O(N) for N distinct values",
        args: &[KEY, arg("q", Kind::Double).multiple()],
        run: multiset::quantile,
        ..MULTISET
    },
    Command {
        name: "MS.RANGE",
        arity: -4,
        flags: &["readonly"],
        summary: "Returns the occurrences within min..max in ascending order, or each value \
                  with its count",
        complexity: "O(log N + M) for M values returned",
        args: &[
            KEY,
            MIN,
            MAX,
            arg("count", Kind::Integer).token("LIMIT").optional(),
            flag("withcounts", "WITHCOUNTS"),
        ],
        run: multiset::range,
        ..MULTISET
    },
    Command {
        name: "MS.RANK",
        arity: 3,
        flags: &["readonly"],
        summary: "Returns how many occurrences lie below the value",
        complexity: "O(M) for M distinct values below it",
        args: &[KEY, VALUE],
        run: multiset::rank,
        ..MULTISET
    },
    Command {
        name: "MS.REM",
        arity: -3,
        flags: &["write", "fast"],
        summary: "Removes up to count (default 1) occurrences of the value; returns how many",
        complexity: "O(log N)",
        args: &[KEY, VALUE, arg("count", Kind::Integer).optional()],
        run: multiset::rem,
        ..MULTISET
    },
    Command {
        name: "MS.SCAN",
        arity: -3,
        flags: &["readonly"],
        summary: "Pages through the set: a cursor to go on from (0 at the end) and value, \
                  count pairs",
        complexity: "O(log N + M) for M values returned",
        args: &[
            KEY,
            arg("cursor", Kind::String),
            arg("count", Kind::Integer).token("COUNT").optional(),
        ],
        run: multiset::scan,
        ..MULTISET
    },
    Command {
        name: "MS.SELECT",
        arity: 3,
        flags: &["readonly"],
        summary: "Returns the value of the k-th smallest occurrence, from 0 (nil past the end)",
        complexity: "O(M) for M distinct values up to it",
        args: &[KEY, arg("k", Kind::Integer)],
        run: multiset::select,
        ..MULTISET
    },
    Command {
        name: "MS.STATS",
        arity: 2,
        flags: &["readonly", "fast"],
        summary: "Returns the set's size, distinct values, smallest and largest",
        args: &[KEY],
        run: multiset::stats,
        ..MULTISET
    },
    Command {
        name: "PING",
        arity: -1,
        flags: &["fast"],
        group: "connection",
        summary: "Returns PONG, or the message",
        args: &[arg("message", Kind::String).optional()],
        run: connection::ping,
        ..BASE
    },
    Command {
        name: "QUIT",
        arity: -1,
        flags: &["noscript", "loading", "stale", "fast", "no_auth"],
        group: "connection",
        summary: "Answers OK and closes the connection",
        run: connection::quit,
        ..BASE
    },
    Command {
        name: "SCAN",
        arity: -2,
        flags: &["readonly"],
        group: "generic",
        summary: "Pages through the set names: a cursor to go on from (0 at the end) and names",
        complexity: "O(1) per call, O(N) for a whole scan",
        args: &[
            arg("cursor", Kind::Integer),
            arg("pattern", Kind::Pattern).token("MATCH").optional(),
            arg("count", Kind::Integer).token("COUNT").optional(),
            arg("type", Kind::String).token("TYPE").optional(),
        ],
        reads_data: true,
        run: keys::scan,
        ..BASE
    },
    Command {
        name: "SELECT",
        arity: 2,
        flags: &["loading", "stale", "fast"],
        group: "connection",
        summary: "Chooses the database: only 0 exists",
        args: &[arg("index", Kind::Integer)],
        run: connection::select,
        ..BASE
    },
    Command {
        name: "TYPE",
        arity: 2,
        flags: &["readonly", "fast"],
        keys: (1, 1, 1),
        group: "generic",
        summary: "Returns multiset for a set that exists, none otherwise",
        args: &[KEY],
        reads_data: true,
        run: keys::type_of,
        ..BASE
    },
    Command {
        name: "UNLINK",
        arity: -2,
        flags: &["write", "fast"],
        keys: (1, -1, 1),
        group: "generic",
        summary: "Drops sets, as DEL does",
        complexity: "O(N) where N is the number of keys",
        args: &[KEY.multiple()],
        reads_data: true,
        run: keys::del,
        ..BASE
    },
];

/// The command (or subcommand, in `table`) named `name`, in any case.
#[must_use]
pub fn lookup(table: &'static [Command], name: &[u8]) -> Option<&'static Command> {
    position(table, name).map(|i| &table[i])
}

/// The command or subcommand a full name names: `ms.add`, or `client|getname` (as
/// `COMMAND INFO` and `COMMAND DOCS` take them), in any case.
#[must_use]
pub fn lookup_full(name: &[u8]) -> Option<(&'static Command, Option<&'static str>)> {
    match name.iter().position(|&b| b == b'|') {
        None => lookup(COMMANDS, name).map(|c| (c, None)),
        Some(at) => {
            let parent = lookup(COMMANDS, &name[..at])?;
            lookup(parent.subcommands, &name[at + 1..]).map(|sub| (sub, Some(parent.name)))
        }
    }
}

/// Where in `table` the command named `name` (in any case) is.
#[must_use]
pub fn position(table: &[Command], name: &[u8]) -> Option<usize> {
    table
        .binary_search_by(|c| c.name.bytes().cmp(name.iter().map(u8::to_ascii_uppercase)))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_sorted_and_complete() {
        fn check(table: &[Command], parent: &str) {
            for pair in table.windows(2) {
                assert!(pair[0].name < pair[1].name, "{parent}{}", pair[1].name);
            }
            for c in table {
                assert_eq!(c.name, c.name.to_ascii_uppercase());
                assert!(!c.summary.is_empty(), "{parent}{} has no summary", c.name);
                assert!(!c.group.is_empty(), "{parent}{} has no group", c.name);
                assert_ne!(c.arity, 0);
                check(c.subcommands, &format!("{}|", c.name));
            }
        }
        check(COMMANDS, "");
        assert_eq!(lookup(COMMANDS, b"ms.add").map(|c| c.name), Some("MS.ADD"));
        assert_eq!(lookup(COMMANDS, b"Ping").map(|c| c.name), Some("PING"));
        assert!(lookup(COMMANDS, b"MS.ADDX").is_none());
        assert!(lookup(COMMANDS, b"").is_none());
    }

    #[test]
    fn arity_counts_the_name() {
        let add = lookup(COMMANDS, b"MS.ADD").unwrap();
        assert!(!add.takes(2));
        assert!(add.takes(3) && add.takes(30));
        let card = lookup(COMMANDS, b"MS.CARD").unwrap();
        assert!(card.takes(2) && !card.takes(3));
    }
}
