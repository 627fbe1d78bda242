//! A concurrent leaderboard with the library alone: several game servers report scores at
//! once, and a reader asks for the top scores and a score's standing while they do.
//!
//! ```sh
//! cargo run --example leaderboard --no-default-features
//! ```

use std::sync::Arc;
use std::thread;

use sortd::SortedMultiset;

fn main() {
    // Scores, duplicates counted: two players with 900 points are two occurrences of 900.
    let scores = Arc::new(SortedMultiset::<u32>::new());

    let reporters: Vec<_> = (0..4u32)
        .map(|server| {
            let scores = Arc::clone(&scores);
            thread::spawn(move || {
                // A deterministic stand-in for games finishing: 10,000 scores per server.
                let mut x = 0x9e37_79b9u32.wrapping_mul(server + 1);
                for _ in 0..10_000 {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    scores.insert(x % 1000);
                }
            })
        })
        .collect();

    // Read while they write: iteration is weakly consistent, always in order.
    let early_best = scores.last();
    println!("best score so far: {early_best:?}");

    for r in reporters {
        r.join().expect("reporter");
    }

    assert_eq!(scores.len(), 40_000);
    let top: Vec<u32> = scores
        .range(990..)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .take(5)
        .collect();
    println!("top five scores: {top:?}");

    // Where does a score of 500 stand? Occurrences above it, by walking the runs above.
    let above: u64 = scores.range_runs(501..).map(|(_, n)| n).sum();
    println!(
        "{} players scored exactly 500; {above} of {} scored more",
        scores.count(&500),
        scores.len()
    );

    // A season reset takes everything out and says what was there.
    let removed = scores.drain_runs();
    println!("reset: {} distinct scores removed", removed.len());
    assert!(scores.is_empty());
}
