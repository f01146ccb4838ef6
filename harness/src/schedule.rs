//! The order models are measured in. By default interleaved: one iteration of every
//! model, then the next round (A B C A B C ...), so a machine that drifts (a neighbour
//! starts a build, the host's cache fills) hits every model alike instead of favouring
//! whichever ran first. `sequential` runs each model's iterations in a row; `shuffled`
//! shuffles each round's order with a seeded generator, so it can be repeated.

use anyhow::{bail, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Interleaved,
    Sequential,
    Shuffled(u64),
}

/// The seed of `shuffled` without one.
pub const DEFAULT_SEED: u64 = 1;

impl Order {
    /// Parses `--order interleaved|sequential|shuffled[:SEED]`.
    pub fn parse(s: &str) -> Result<Order> {
        match s {
            "interleaved" => Ok(Order::Interleaved),
            "sequential" => Ok(Order::Sequential),
            "shuffled" => Ok(Order::Shuffled(DEFAULT_SEED)),
            _ => match s.strip_prefix("shuffled:").map(str::parse::<u64>) {
                Some(Ok(seed)) => Ok(Order::Shuffled(seed)),
                _ => bail!(
                    "unknown order {s:?}: use interleaved, sequential or shuffled[:SEED] (a number)"
                ),
            },
        }
    }

    /// As results.json records it.
    pub fn name(self) -> String {
        match self {
            Order::Interleaved => "interleaved".into(),
            Order::Sequential => "sequential".into(),
            Order::Shuffled(seed) => format!("shuffled:{seed}"),
        }
    }

    /// The rounds of a run of `models` models with `iterations` iterations each: each
    /// round lists the models (by index) that run one iteration, in order. Results are
    /// written after every round. Sequential has one round per model, holding all of its
    /// iterations.
    pub fn rounds(self, models: usize, iterations: usize) -> Vec<Vec<usize>> {
        match self {
            Order::Sequential => (0..models).map(|m| vec![m; iterations]).collect(),
            Order::Interleaved => (0..iterations).map(|_| (0..models).collect()).collect(),
            Order::Shuffled(seed) => {
                let mut rng = SplitMix(seed);
                (0..iterations)
                    .map(|_| {
                        let mut round: Vec<usize> = (0..models).collect();
                        // Fisher-Yates.
                        for i in (1..round.len()).rev() {
                            let j = (rng.next() % (i as u64 + 1)) as usize;
                            round.swap(i, j);
                        }
                        round
                    })
                    .collect()
            }
        }
    }
}

/// splitmix64: a tiny, well-known generator, here only to shuffle.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_interleave_run_in_a_row_or_shuffle_repeatably() {
        assert_eq!(
            Order::Interleaved.rounds(3, 2),
            vec![vec![0, 1, 2], vec![0, 1, 2]]
        );
        assert_eq!(
            Order::Sequential.rounds(2, 3),
            vec![vec![0, 0, 0], vec![1, 1, 1]]
        );
        let a = Order::Shuffled(7).rounds(5, 4);
        assert_eq!(a, Order::Shuffled(7).rounds(5, 4));
        assert_ne!(a, Order::Shuffled(8).rounds(5, 4));
        for round in &a {
            let mut sorted = round.clone();
            sorted.sort();
            assert_eq!(sorted, vec![0, 1, 2, 3, 4]);
        }
        assert!(a.iter().any(|r| r != &vec![0, 1, 2, 3, 4]));
    }

    #[test]
    fn orders_parse_and_name_themselves() {
        for s in ["interleaved", "sequential", "shuffled:42"] {
            assert_eq!(Order::parse(s).unwrap().name(), s);
        }
        assert_eq!(
            Order::parse("shuffled").unwrap(),
            Order::Shuffled(DEFAULT_SEED)
        );
        assert!(Order::parse("shuffled:x").is_err());
        assert!(Order::parse("random").is_err());
    }
}
