//! Frame codec throughput in bytes/s: encode and decode, small (15 values) and large
//! (100k values) frames, requests (INSERT) and replies (RUNS).
//!
//! Run with `cargo bench --bench frame`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sortd::frame::{Decoder, Request, Response, RunsWriter, Values};

fn values(n: usize) -> Vec<i64> {
    (0..n as i64).map(|i| (i * 7919) % 101).collect()
}

fn codec(c: &mut Criterion) {
    let mut group = c.benchmark_group("frame");
    group
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    for n in [15usize, 100_000] {
        let batch = values(n);
        let request = Request::Insert {
            values: Values::Slice(&batch),
            ack_only: false,
        };
        let mut wire = Vec::new();
        request.encode(1, &mut wire);
        group.throughput(Throughput::Bytes(wire.len() as u64));

        let mut out = Vec::with_capacity(wire.len());
        group.bench_with_input(BenchmarkId::new("encode_insert", n), &request, |b, r| {
            b.iter(|| {
                out.clear();
                r.encode(1, &mut out);
                black_box(out.len())
            });
        });

        let mut scratch = Vec::with_capacity(n);
        group.bench_with_input(BenchmarkId::new("decode_insert", n), &wire, |b, wire| {
            b.iter(|| {
                let (_, frame) = Decoder::new(u32::MAX).decode(wire);
                let frame = frame.expect("complete").expect("valid");
                let Ok(Request::Insert { values, .. }) = Request::parse(&frame, u32::MAX) else {
                    unreachable!("an insert was encoded");
                };
                scratch.clear();
                values.copy_into(&mut scratch);
                black_box(scratch.len())
            });
        });

        // A RUNS reply with n runs.
        let runs: Vec<(i64, u64)> = (0..n as i64).map(|v| (v, 3)).collect();
        let mut reply = Vec::new();
        Response::Runs {
            total: 3 * n as u64,
            runs: runs.clone(),
            truncated: false,
        }
        .encode(1, &mut reply);
        group.throughput(Throughput::Bytes(reply.len() as u64));

        group.bench_with_input(BenchmarkId::new("encode_runs", n), &runs, |b, runs| {
            b.iter(|| {
                out.clear();
                let mut w = RunsWriter::begin(&mut out, 1, 3 * n as u64);
                for &(v, c) in runs {
                    w.push(v, c);
                }
                w.finish(false);
                black_box(out.len())
            });
        });

        group.bench_with_input(BenchmarkId::new("decode_runs", n), &reply, |b, reply| {
            b.iter(|| {
                let (_, frame) = Decoder::new(u32::MAX).decode(reply);
                black_box(Response::parse(&frame.expect("complete").expect("valid")))
            });
        });
    }
    group.finish();
}

criterion_group!(frame, codec);
criterion_main!(frame);
