//! What tools ask the server about itself: `COMMAND` (and `COMMAND DOCS`, from which
//! `redis-cli` builds its hints and `help`), `INFO`, `CONFIG GET`, and `HELP` of commands
//! with subcommands. All of it is read off the command table.

use std::fmt::Write as _;

use super::{COMMANDS, Command, Ctx, Kind, Outcome, Refusal, is_word, lookup_full, syntax_error};
use crate::resp::{Pattern, Reply};

/// The Redis version whose protocol and connection commands sortd's follow, for clients
/// that choose features by `redis_version` (RESP3 and `HELLO` from 6, `CLIENT SETINFO`
/// from 7.2).
pub const REDIS_VERSION: &str = "7.2.0";

/// The version of sortd that added each documented command (`since` in `COMMAND DOCS`).
const SINCE: &str = "0.1.0";

/// A handler the table never reaches (a command with subcommands only, whose arity
/// requires one).
pub fn unreachable(_ctx: &mut Ctx<'_>, _args: &[&[u8]]) -> Outcome {
    Err(Refusal("ERR this command needs a subcommand".into()))
}

/// `X HELP` for a command `X` with subcommands: a line per subcommand with its arguments,
/// then what it does, as Redis words its help.
pub fn help(ctx: &mut Ctx<'_>, command: &Command) {
    let mut lines = vec![format!(
        "{} <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        command.name
    )];
    for sub in command.subcommands {
        lines.push(
            format!("{} {}", sub.name, sub.hint())
                .trim_end()
                .to_string(),
        );
        lines.push(format!("    {}.", sub.summary));
    }
    lines.push("HELP".into());
    lines.push("    Print this help.".into());
    let mut r = ctx.reply();
    r.array(lines.len());
    for line in &lines {
        r.simple(line);
    }
}

/// `COMMAND`: every command's description.
pub fn command_all(ctx: &mut Ctx<'_>, _args: &[&[u8]]) -> Outcome {
    let mut r = ctx.reply();
    r.array(COMMANDS.len());
    for c in COMMANDS {
        info_entry(&mut r, c, None);
    }
    Ok(())
}

/// `COMMAND COUNT`.
pub fn command_count(ctx: &mut Ctx<'_>, _args: &[&[u8]]) -> Outcome {
    ctx.reply().count(COMMANDS.len() as u64);
    Ok(())
}

/// `COMMAND LIST [FILTERBY MODULE name | ACLCAT category | PATTERN pattern]`: the names
/// of every command, or of those in the ACL category or matching the pattern (in any
/// case); no command comes from a module.
pub fn command_list(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> Outcome {
    // Every command with its full name; filtered, their subcommands too, as Redis lists.
    let all = COMMANDS.iter().map(|c| (c, full_name(c, None)));
    let names: Vec<String> = match args {
        [] => all.map(|(_, name)| name).collect(),
        [filterby, kind, value] if is_word(filterby, "FILTERBY") => {
            let with_subs = COMMANDS.iter().flat_map(|c| {
                std::iter::once((c, full_name(c, None))).chain(
                    c.subcommands
                        .iter()
                        .map(|s| (s, full_name(s, Some(c.name)))),
                )
            });
            if is_word(kind, "MODULE") {
                Vec::new()
            } else if is_word(kind, "ACLCAT") {
                let category = format!("@{}", String::from_utf8_lossy(value).to_ascii_lowercase());
                with_subs
                    .filter(|(c, _)| categories(c).contains(&category.as_str()))
                    .map(|(_, name)| name)
                    .collect()
            } else if is_word(kind, "PATTERN") {
                let pattern = Pattern::new(&value.to_ascii_lowercase());
                with_subs
                    .filter(|(_, name)| pattern.matches(name.as_bytes()))
                    .map(|(_, name)| name)
                    .collect()
            } else {
                return Err(syntax_error());
            }
        }
        _ => return Err(syntax_error()),
    };
    let mut r = ctx.reply();
    r.array(names.len());
    for name in names {
        r.bulk(name.as_bytes());
    }
    Ok(())
}

/// `COMMAND INFO [name ...]`: the named commands' descriptions (nil for unknown names), or
/// every command's.
pub fn command_info(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> Outcome {
    if args.is_empty() {
        return command_all(ctx, args);
    }
    ctx.reply().array(args.len());
    for name in args {
        let mut r = ctx.reply();
        match lookup_full(name) {
            Some((c, parent)) => info_entry(&mut r, c, parent),
            None => r.null(),
        }
        // A name may be asked for again and again: the reply grows with the request.
        if ctx.over_budget() {
            return Err(ctx.too_long());
        }
    }
    Ok(())
}

/// `COMMAND DOCS [name ...]`: the named commands' documentation (unknown names left out),
/// or every command's.
pub fn command_docs(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> Outcome {
    let chosen: Vec<(&Command, Option<&str>)> = if args.is_empty() {
        COMMANDS.iter().map(|c| (c, None)).collect()
    } else {
        args.iter().filter_map(|n| lookup_full(n)).collect()
    };
    ctx.reply().map(chosen.len());
    for (c, parent) in chosen {
        let mut r = ctx.reply();
        r.bulk(full_name(c, parent).as_bytes());
        docs_entry(&mut r, c);
        // As in `COMMAND INFO`: a name asked for many times is documented each time.
        if ctx.over_budget() {
            return Err(ctx.too_long());
        }
    }
    Ok(())
}

/// One command's `COMMAND INFO` entry, as Redis 7 writes it: name, arity, flags, first
/// key, last key, step, ACL categories, tips, key specifications, subcommands.
fn info_entry(r: &mut Reply<'_>, c: &Command, parent: Option<&str>) {
    r.array(10);
    r.bulk(full_name(c, parent).as_bytes());
    r.integer(i64::from(c.arity));
    r.set(c.flags.len());
    for flag in c.flags {
        r.simple(flag);
    }
    r.integer(i64::from(c.keys.0));
    r.integer(i64::from(c.keys.1));
    r.integer(i64::from(c.keys.2));
    let categories = categories(c);
    r.set(categories.len());
    for category in categories {
        r.simple(category);
    }
    r.array(0); // tips
    r.array(0); // key specifications
    r.array(c.subcommands.len());
    for sub in c.subcommands {
        info_entry(r, sub, Some(c.name));
    }
}

/// A command's ACL categories, from its flags and group.
fn categories(c: &Command) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = c.acl.to_vec();
    if c.flags.contains(&"write") {
        out.push("@write");
    }
    if c.flags.contains(&"readonly") {
        out.push("@read");
    }
    out.push(if c.flags.contains(&"fast") {
        "@fast"
    } else {
        "@slow"
    });
    match c.group {
        "connection" => out.push("@connection"),
        "generic" => out.push("@keyspace"),
        "server" => out.push("@admin"),
        _ => {}
    }
    out
}

/// `name` or `parent|name`, in lower case, as Redis names (sub)commands in replies.
fn full_name(c: &Command, parent: Option<&str>) -> String {
    match parent {
        Some(p) => format!("{p}|{}", c.name),
        None => c.name.to_string(),
    }
    .to_ascii_lowercase()
}

/// One command's `COMMAND DOCS` entry: summary, since, group, complexity, arguments and
/// subcommands (the last two when there are any).
fn docs_entry(r: &mut Reply<'_>, c: &Command) {
    r.map(4 + usize::from(!c.args.is_empty()) + usize::from(!c.subcommands.is_empty()));
    r.bulk(b"summary");
    r.bulk(c.summary.as_bytes());
    r.bulk(b"since");
    r.bulk(SINCE.as_bytes());
    r.bulk(b"group");
    r.bulk(c.group.as_bytes());
    r.bulk(b"complexity");
    r.bulk(c.complexity.as_bytes());
    if !c.args.is_empty() {
        r.bulk(b"arguments");
        doc_args(r, c.args);
    }
    if !c.subcommands.is_empty() {
        r.bulk(b"subcommands");
        r.map(c.subcommands.len());
        for sub in c.subcommands {
            r.bulk(full_name(sub, Some(c.name)).as_bytes());
            docs_entry(r, sub);
        }
    }
}

/// Arguments as `COMMAND DOCS` lists them: a map each of name, type, and token, flags and
/// nested arguments where they apply. (`redis-cli` asserts on the types of these fields:
/// strings are bulk strings, flags simple strings.)
fn doc_args(r: &mut Reply<'_>, args: &[super::Arg]) {
    r.array(args.len());
    for a in args {
        let nested = match &a.kind {
            Kind::OneOf(args) | Kind::Block(args) => Some(*args),
            _ => None,
        };
        let flags: Vec<&str> = [(a.optional, "optional"), (a.multiple, "multiple")]
            .into_iter()
            .filter_map(|(on, flag)| on.then_some(flag))
            .collect();
        r.map(
            2 + usize::from(a.token.is_some())
                + usize::from(!flags.is_empty())
                + usize::from(nested.is_some()),
        );
        r.bulk(b"name");
        r.bulk(a.name.as_bytes());
        r.bulk(b"type");
        r.bulk(a.kind.doc_name().as_bytes());
        if let Some(token) = a.token {
            r.bulk(b"token");
            r.bulk(token.as_bytes());
        }
        if !flags.is_empty() {
            r.bulk(b"flags");
            r.set(flags.len());
            for flag in flags {
                r.simple(flag);
            }
        }
        if let Some(nested) = nested {
            r.bulk(b"arguments");
            doc_args(r, nested);
        }
    }
}

/// `CONFIG GET pattern [pattern ...]`: the settings whose Redis names match, as pairs,
/// each once. Only what tools ask about: `redis-benchmark` reads `save` and `appendonly`
/// on start (and warns when it cannot).
pub fn config_get(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> Outcome {
    let log = ctx.service.log();
    let settings: [(&str, String); 5] = [
        (
            "appendfsync",
            log.map_or("no".into(), |l| appendfsync(l.fsync())),
        ),
        (
            "appendonly",
            if log.is_some() { "yes" } else { "no" }.into(),
        ),
        ("databases", "1".into()),
        ("maxmemory", "0".into()),
        ("save", String::new()),
    ];
    // Case-insensitive, as in Redis: the settings' names are lower case.
    let patterns: Vec<Pattern> = args
        .iter()
        .map(|p| Pattern::new(&p.to_ascii_lowercase()))
        .collect();
    // A setting named exactly (no glob character) is answered under the name as it was
    // asked for, as Redis does; one matched by a pattern under its own name.
    let chosen: Vec<(&[u8], &String)> = settings
        .iter()
        .filter_map(|(name, value)| {
            let asked = args
                .iter()
                .zip(&patterns)
                .find(|(_, p)| p.matches(name.as_bytes()))?;
            let literal = !asked.0.iter().any(|b| b"*?[\\".contains(b));
            Some((if literal { asked.0 } else { name.as_bytes() }, value))
        })
        .collect();
    let mut r = ctx.reply();
    r.map(chosen.len());
    for (name, value) in chosen {
        r.bulk(name);
        r.bulk(value.as_bytes());
    }
    Ok(())
}

/// Redis's word for an fsync policy.
fn appendfsync(policy: crate::persist::Fsync) -> String {
    match policy {
        crate::persist::Fsync::Never => "no".into(),
        other => other.to_string(),
    }
}

/// `CONFIG SET`: refused, since flags set everything.
pub fn config_set(_ctx: &mut Ctx<'_>, _args: &[&[u8]]) -> Outcome {
    Err(Refusal(
        "ERR CONFIG SET is not supported: sortd is configured by its command-line flags \
         (server --help)"
            .into(),
    ))
}

/// `INFO [section ...]`: `server`, `clients`, `persistence`, `stats` and `keyspace`, in
/// Redis's `field:value` lines (all of them when no section is named, or `all`,
/// `everything`, `default`).
///
/// It answers after a log failure too, as `STATS` and `GET /stats` do, so an operator
/// can see why writes fail (`aof_last_write_status:err`, `sortd_log_failure`).
pub fn info(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> Outcome {
    let wanted = |section: &str| {
        args.is_empty()
            || args.iter().any(|a| {
                a.eq_ignore_ascii_case(section.as_bytes())
                    || ["all", "everything", "default"]
                        .iter()
                        .any(|all| a.eq_ignore_ascii_case(all.as_bytes()))
            })
    };
    let service = ctx.service;
    let metrics = service.metrics();
    let mut text = String::new();
    // Writing into a String cannot fail.
    let mut section = |name: &str, fields: &[(&str, String)]| {
        if !wanted(&name.to_ascii_lowercase()) {
            return;
        }
        if !text.is_empty() {
            text.push_str("\r\n");
        }
        let _ = write!(text, "# {name}\r\n");
        for (field, value) in fields {
            let _ = write!(text, "{field}:{value}\r\n");
        }
    };
    let relaxed = std::sync::atomic::Ordering::Relaxed;
    section(
        "Server",
        &[
            ("redis_version", REDIS_VERSION.into()),
            ("sortd_version", env!("CARGO_PKG_VERSION").into()),
            ("redis_mode", "standalone".into()),
            ("arch_bits", (usize::BITS).to_string()),
            ("process_id", std::process::id().to_string()),
            ("uptime_in_seconds", metrics.uptime().as_secs().to_string()),
        ],
    );
    section(
        "Clients",
        &[(
            "connected_clients",
            metrics.connections_open.load(relaxed).to_string(),
        )],
    );
    let log = service.log();
    let stats = log.map(|l| l.stats()).unwrap_or_default();
    section(
        "Persistence",
        &[
            ("loading", "0".into()),
            ("aof_enabled", u8::from(log.is_some()).to_string()),
            (
                "aof_last_write_status",
                if log.and_then(|l| l.failure()).is_some() {
                    "err"
                } else {
                    "ok"
                }
                .into(),
            ),
            (
                "sortd_log_failure",
                log.and_then(|l| l.failure())
                    .unwrap_or("")
                    .replace(['\r', '\n'], " "),
            ),
            (
                "aof_fsync",
                log.map_or("no".into(), |l| appendfsync(l.fsync())),
            ),
            ("sortd_log_bytes", stats.log_bytes.to_string()),
            ("sortd_snapshot_bytes", stats.snapshot_bytes.to_string()),
            ("sortd_fsyncs", stats.fsyncs.to_string()),
            ("sortd_compactions", stats.compactions.to_string()),
        ],
    );
    section(
        "Stats",
        &[
            (
                "total_connections_received",
                metrics.connections_total.load(relaxed).to_string(),
            ),
            (
                "total_commands_processed",
                metrics.resp_commands_total().to_string(),
            ),
            (
                "rejected_connections",
                metrics.connections_refused.load(relaxed).to_string(),
            ),
        ],
    );
    let sets = service.sets();
    section(
        "Keyspace",
        &[("db0", format!("keys={},expires=0,avg_ttl=0", sets.len()))],
    );
    ctx.reply().verbatim("txt", text.as_bytes());
    Ok(())
}
