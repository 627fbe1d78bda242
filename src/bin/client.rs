//! `client`: talks to a sortd server over the frame protocol.
//!
//! With no subcommand it does what the original client did: send a random batch of 10–20
//! values in 0..=100 and print the sorted array the server returns.

use std::io::{self, BufRead, IsTerminal, Write};
use std::ops::RangeInclusive;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use rand::RngExt;
use serde_json::json;
use sortd::bench::{self, Distribution, Mix};
use sortd::client::{Client, Error};

/// `println!`, but a closed stdout (a reader that stopped early: `client get | head`) ends
/// the program quietly instead of panicking; any other write error is returned.
macro_rules! out {
    ($($arg:tt)*) => {
        match writeln!(io::stdout().lock(), $($arg)*) {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => std::process::exit(0),
            written => written.map_err(Error::Io)?,
        }
    };
}

/// Buffered stdout for commands that print page after page. A closed stdout (`client scan
/// | head`) is the reader saying it has seen enough: the program ends quietly with success,
/// as [`out!`] does, while a broken connection to the server stays an error.
struct PagedOut(io::BufWriter<io::StdoutLock<'static>>);

impl PagedOut {
    fn new() -> Self {
        PagedOut(io::BufWriter::new(io::stdout().lock()))
    }

    fn quiet<T>(result: io::Result<T>) -> io::Result<T> {
        match result {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => std::process::exit(0),
            other => other,
        }
    }
}

impl Write for PagedOut {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Self::quiet(self.0.write(buf))
    }

    fn flush(&mut self) -> io::Result<()> {
        Self::quiet(self.0.flush())
    }
}

/// Client for the sortd sorted-multiset server.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Server address (frame protocol).
    #[arg(long, global = true, default_value = "127.0.0.1:6000")]
    addr: String,

    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,

    /// The set to work on (created by its first insert) [default: default].
    #[arg(long, global = true, value_name = "NAME")]
    set: Option<String>,

    /// Without a subcommand: send this many random batches, without asking.
    #[arg(long)]
    repeat: Option<u32>,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Insert values; print the server's sorted contents.
    Insert {
        /// The values to insert.
        #[arg(required = true, allow_negative_numbers = true)]
        values: Vec<i64>,
    },
    /// Print the contents, or a value range, as sorted values or runs.
    Get {
        /// Smallest value included.
        #[arg(long, allow_negative_numbers = true, default_value_t = i64::MIN)]
        min: i64,
        /// Largest value included.
        #[arg(long, allow_negative_numbers = true, default_value_t = i64::MAX)]
        max: i64,
        /// Most distinct values returned (0: the server's maximum).
        #[arg(long, default_value_t = 0)]
        limit: u32,
        /// Print (value, count) runs instead of every occurrence.
        #[arg(long)]
        runs: bool,
    },
    /// Add one random value in 1000..=10000 (the original's add_value).
    Add,
    /// Remove occurrences of a value.
    Remove {
        /// The value.
        #[arg(allow_negative_numbers = true)]
        value: i64,
        /// How many occurrences to remove at most.
        #[arg(short, default_value_t = 1)]
        n: u64,
    },
    /// Count the occurrences of a value.
    Count {
        /// The value.
        #[arg(allow_negative_numbers = true)]
        value: i64,
    },
    /// Print how many occurrences are strictly below a value.
    Rank {
        /// The value.
        #[arg(allow_negative_numbers = true)]
        value: i64,
    },
    /// Print the value of the k-th occurrence in sorted order (0-based).
    Select {
        /// The position.
        k: u64,
    },
    /// Print how many occurrences fall within MIN..=MAX.
    CountRange {
        /// Smallest value counted.
        #[arg(allow_negative_numbers = true)]
        min: i64,
        /// Largest value counted.
        #[arg(allow_negative_numbers = true)]
        max: i64,
    },
    /// Print nearest-rank quantiles, e.g. `quantiles 0.5 0.9 0.99`.
    Quantiles {
        /// Each within 0..=1.
        #[arg(required = true)]
        q: Vec<f64>,
    },
    /// Print a value range page by page through the server's cursor: every occurrence
    /// present for the whole scan exactly once, whatever others write meanwhile.
    Scan {
        /// Smallest value included.
        #[arg(long, allow_negative_numbers = true, default_value_t = i64::MIN)]
        min: i64,
        /// Largest value included.
        #[arg(long, allow_negative_numbers = true, default_value_t = i64::MAX)]
        max: i64,
        /// Occurrences per page.
        #[arg(long, default_value_t = 1000)]
        page: u32,
        /// Print (value, count) runs instead of every occurrence (a value split across
        /// pages prints as several runs).
        #[arg(long)]
        runs: bool,
    },
    /// Remove everything.
    Clear,
    /// Print total, distinct, min and max.
    Stats,
    /// Check the server answers.
    Ping,
    /// List the sets with their sizes, in name order.
    Sets {
        /// Start after this name.
        #[arg(long)]
        after: Option<String>,
        /// Sets per request (the listing goes on to the end).
        #[arg(long, default_value_t = 1000)]
        page: u32,
    },
    /// Drop a set with everything in it (not `default`: clear that).
    Drop {
        /// The set's name.
        name: String,
    },
    /// Load-test the server and report throughput and latency percentiles.
    Bench {
        /// Concurrent connections.
        #[arg(short = 'c', long, default_value_t = 8)]
        connections: usize,
        /// Load threads, each multiplexing its share of the connections with mio; 0 runs one
        /// blocking thread per connection. Use a few for many connections.
        #[arg(short = 't', long, default_value_t = 0)]
        threads: usize,
        /// Run for this many seconds (default 10 unless -n is given).
        #[arg(short = 'd', long)]
        duration: Option<f64>,
        /// Stop after this many requests in total.
        #[arg(short = 'n', long)]
        requests: Option<u64>,
        /// Requests in flight per connection.
        #[arg(short = 'p', long, default_value_t = 1)]
        pipeline: usize,
        /// Values per INSERT: N or MIN-MAX.
        #[arg(long, default_value = "10-20", value_parser = parse_batch)]
        batch: RangeInclusive<usize>,
        /// Value distribution: original (0..=100), uniform, skewed.
        #[arg(long, default_value = "original")]
        dist: Distribution,
        /// Operation weights, e.g. insert=70,ack=20,get=10 (insert: full sorted reply;
        /// ack: ack-only insert; get: read everything; rank, select, count (a range a tenth
        /// of the distribution wide), quantiles (0.5, 0.9, 0.99), page (100 occurrences)).
        #[arg(long, default_value = "insert=1")]
        mix: Mix,
        /// Random seed, for reproducible runs.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Require an empty server, then check it holds exactly what was inserted.
        #[arg(long)]
        verify: bool,
        /// Spread the load over this many sets, bench:0 .. bench:{K-1} (0: the set --set
        /// names, or default).
        #[arg(long, default_value_t = 0)]
        sets: usize,
    },
}

fn parse_batch(s: &str) -> Result<RangeInclusive<usize>, String> {
    let (lo, hi) = s.split_once('-').unwrap_or((s, s));
    let lo: usize = lo
        .parse()
        .map_err(|_| format!("{s:?}: expected N or MIN-MAX"))?;
    let hi: usize = hi
        .parse()
        .map_err(|_| format!("{s:?}: expected N or MIN-MAX"))?;
    if lo > hi {
        return Err(format!("{s:?}: MIN is above MAX"));
    }
    Ok(lo..=hi)
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(Command::Bench { .. }) = &args.command {
        return exit_code(run_bench(&args));
    }
    let mut client = match Client::connect(&args.addr) {
        Ok(client) => client,
        Err(e) => {
            eprintln!(
                "client: cannot connect to {}: {e}\n(is the server running? start it with `cargo run --release --bin server`)",
                args.addr
            );
            return ExitCode::FAILURE;
        }
    };
    exit_code(run(&args, &mut client))
}

/// Success, or the error said on stderr.
fn exit_code(result: Result<(), Error>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("client: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args, client: &mut Client) -> Result<(), Error> {
    client.use_set(args.set.as_deref())?;
    let Some(command) = &args.command else {
        return original(args, client);
    };
    match command {
        Command::Insert { values } => print_values(args, &client.insert(values)?)?,
        Command::Get {
            min,
            max,
            limit,
            runs,
        } => {
            let (got, truncated) = client.get(*min, *max, *limit)?;
            if *runs {
                if args.json {
                    out!("{}", json!({ "runs": got, "truncated": truncated }));
                } else {
                    for (v, n) in &got {
                        out!("{v}\t{n}");
                    }
                }
            } else {
                print_values(args, &sortd::client::expand(&got)?)?;
            }
            if truncated && !args.json {
                eprintln!("(truncated: more values matched; raise --limit or page with --min)");
            }
        }
        Command::Add => {
            let (value, len) = client.add_random()?;
            if args.json {
                out!("{}", json!({ "value": value, "len": len }));
            } else {
                out!("{value}");
            }
        }
        Command::Remove { value, n } => print_count(args, "removed", client.remove(*value, *n)?)?,
        Command::Count { value } => print_count(args, "count", client.count(*value)?)?,
        Command::Clear => print_count(args, "removed", client.clear()?)?,
        Command::Rank { value } => print_count(args, "rank", client.rank(*value)?)?,
        Command::CountRange { min, max } => {
            print_count(args, "count", client.count_range(*min, *max)?)?;
        }
        Command::Select { k } => {
            let value = client.select(*k)?;
            if args.json {
                out!("{}", json!({ "k": k, "value": value }));
            } else {
                match value {
                    Some(v) => out!("{v}"),
                    None => out!("-"),
                }
            }
        }
        Command::Quantiles { q } => {
            let values = client.quantiles(q)?;
            if args.json {
                let rows: Vec<_> = q
                    .iter()
                    .enumerate()
                    .map(|(i, q)| json!({ "q": q, "value": values.get(i) }))
                    .collect();
                out!("{}", json!(rows));
            } else {
                for (i, q) in q.iter().enumerate() {
                    let v = values
                        .get(i)
                        .map_or_else(|| "-".to_string(), i64::to_string);
                    out!("{q:?}\t{v}");
                }
            }
        }
        Command::Scan {
            min,
            max,
            page,
            runs,
        } => scan(args, client, (*min, *max), *page, *runs)?,
        Command::Stats => {
            let s = client.stats()?;
            let (min, max) = s.min_max.map_or((None, None), |(a, b)| (Some(a), Some(b)));
            let log = s.log.map(|l| {
                let mut figures = l.figures_json();
                figures["failed"] = json!(l.failed);
                figures
            });
            if args.json {
                let mut out =
                    json!({ "len": s.len, "distinct": s.distinct, "min": min, "max": max });
                if let Some(log) = log {
                    out["persistence"] = log;
                }
                out!("{out}");
            } else {
                let show = |v: Option<i64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
                out!(
                    "len {}\ndistinct {}\nmin {}\nmax {}",
                    s.len,
                    s.distinct,
                    show(min),
                    show(max)
                );
                if let Some(serde_json::Value::Object(fields)) = log {
                    for (name, value) in fields {
                        out!("{name} {value}");
                    }
                }
            }
        }
        Command::Bench { .. } => unreachable!("handled before connecting"),
        Command::Sets { after, page } => list_sets(args, client, after.clone(), *page)?,
        Command::Drop { name } => {
            let dropped = client.drop_set(name)?;
            if args.json {
                out!("{}", json!({ "dropped": dropped }));
            } else if dropped {
                out!("dropped {name}");
            } else {
                out!("no set named {name}");
            }
        }
        Command::Ping => {
            let started = std::time::Instant::now();
            client.ping(b"sortd")?;
            let micros = started.elapsed().as_micros();
            if args.json {
                out!("{}", json!({ "pong": true, "micros": micros }));
            } else {
                out!("PONG in {micros} µs");
            }
        }
    }
    Ok(())
}

/// `client sets`: every set after `after`, page by page, one `name<TAB>size` line each
/// (with `--json`, one JSON object per set per line).
fn list_sets(
    args: &Args,
    client: &mut Client,
    mut after: Option<String>,
    page: u32,
) -> Result<(), Error> {
    let mut out = PagedOut::new();
    loop {
        let list = client.list_sets(after.as_deref(), page)?;
        for (name, len) in &list.sets {
            if args.json {
                writeln!(out, "{}", json!({ "name": name, "len": len }))?;
            } else {
                writeln!(out, "{name}\t{len}")?;
            }
        }
        match list.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    out.flush()?;
    Ok(())
}

/// `client scan`: pages through `min..=max`, printing as it goes (one line per value or
/// run; with `--json`, one JSON array per page).
fn scan(
    args: &Args,
    client: &mut Client,
    (min, max): (i64, i64),
    page_size: u32,
    runs: bool,
) -> Result<(), Error> {
    let mut out = PagedOut::new();
    let (mut from, mut skip) = (min, 0);
    loop {
        let page = client.page(from, skip, max, page_size)?;
        if args.json {
            if runs {
                writeln!(out, "{}", json!(page.runs))?;
            } else {
                writeln!(out, "{}", json!(sortd::client::expand(&page.runs)?))?;
            }
        } else {
            for &(v, n) in &page.runs {
                if runs {
                    writeln!(out, "{v}\t{n}")?;
                } else {
                    for _ in 0..n {
                        writeln!(out, "{v}")?;
                    }
                }
            }
        }
        match page.next {
            Some(next) => (from, skip) = (next.value, next.skip),
            None => break,
        }
    }
    out.flush()?;
    Ok(())
}

/// The original client: one random batch, the sorted array printed; asks to go again when
/// stdin is a terminal, or repeats `--repeat` times.
fn original(args: &Args, client: &mut Client) -> Result<(), Error> {
    let mut rng = rand::rng();
    let interactive = args.repeat.is_none() && io::stdin().is_terminal();
    let mut left = args.repeat.unwrap_or(1);
    while left > 0 {
        let batch: Vec<i64> = (0..rng.random_range(10..=20))
            .map(|_| rng.random_range(0..=100))
            .collect();
        print_values(args, &client.insert(&batch)?)?;
        left -= 1;
        if interactive && left == 0 {
            let mut stdout = io::stdout().lock();
            write!(stdout, "Send more? [y/N] ")?;
            stdout.flush()?;
            let mut answer = String::new();
            io::stdin().lock().read_line(&mut answer)?;
            if answer.trim().eq_ignore_ascii_case("y") {
                left = 1;
            }
        }
    }
    Ok(())
}

fn print_values(args: &Args, values: &[i64]) -> Result<(), Error> {
    if args.json {
        out!("{}", json!(values));
    } else {
        let text: Vec<String> = values.iter().map(i64::to_string).collect();
        out!("[{}]", text.join(", "));
    }
    Ok(())
}

fn print_count(args: &Args, key: &str, n: u64) -> Result<(), Error> {
    if args.json {
        out!("{}", json!({ key: n }));
    } else {
        out!("{n}");
    }
    Ok(())
}

fn run_bench(args: &Args) -> Result<(), Error> {
    let Some(Command::Bench {
        connections,
        threads,
        duration,
        requests,
        pipeline,
        batch,
        dist,
        mix,
        seed,
        verify,
        sets,
    }) = &args.command
    else {
        unreachable!("called for bench only");
    };
    let duration = match (duration, requests) {
        (Some(secs), _) => Some(
            Duration::try_from_secs_f64(*secs)
                .map_err(|e| Error::Protocol(format!("bad duration {secs}: {e}")))?,
        ),
        (None, Some(_)) => None,
        (None, None) => Some(Duration::from_secs(10)),
    };
    let config = bench::Config {
        addr: args.addr.clone(),
        connections: *connections,
        threads: *threads,
        duration,
        requests: *requests,
        pipeline: *pipeline,
        batch: batch.clone(),
        distribution: *dist,
        mix: *mix,
        seed: *seed,
        verify: *verify,
        sets: *sets,
        set: args.set.clone(),
        progress: !args.json && io::stdout().is_terminal(),
    };
    let report = bench::run(&config).map_err(|e| match e {
        Error::Io(io) => Error::Protocol(format!(
            "cannot reach {}: {io} (is the server running? start it with `cargo run --release --bin server`)",
            args.addr
        )),
        other => other,
    })?;
    if args.json {
        out!("{}", report.to_json());
    } else {
        out!("{report}");
    }
    if report.verified == Some(false) {
        return Err(Error::Protocol("verification failed".into()));
    }
    Ok(())
}
