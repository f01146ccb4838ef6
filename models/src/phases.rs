//! Install phases and their timings.

use std::time::{Duration, Instant};

/// Time spent in each named phase of one install, in first-seen order. A phase that is
/// entered many times (once per package) accumulates.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PhaseTimes {
    pub phases: Vec<(String, Duration)>,
}

impl PhaseTimes {
    pub fn add(&mut self, phase: &str, elapsed: Duration) {
        match self.phases.iter_mut().find(|(name, _)| name == phase) {
            Some((_, total)) => *total += elapsed,
            None => self.phases.push((phase.to_string(), elapsed)),
        }
    }

    /// Runs `f`, adding its wall time to `phase`.
    pub fn time<T>(&mut self, phase: &str, f: impl FnOnce() -> T) -> T {
        let start = Instant::now();
        let out = f();
        self.add(phase, start.elapsed());
        out
    }

    pub fn get(&self, phase: &str) -> Option<Duration> {
        self.phases
            .iter()
            .find(|(n, _)| n == phase)
            .map(|(_, d)| *d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_accumulate_in_first_seen_order() {
        let mut t = PhaseTimes::default();
        t.add("unpack", Duration::from_millis(3));
        t.add("hooks", Duration::from_millis(1));
        t.add("unpack", Duration::from_millis(2));
        assert_eq!(t.get("unpack"), Some(Duration::from_millis(5)));
        assert_eq!(t.phases[1].0, "hooks");
        assert_eq!(t.get("verify"), None);
    }
}
