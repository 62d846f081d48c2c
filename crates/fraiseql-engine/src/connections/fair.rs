//! Whose turn it is when requests wait for a pool's budget: weighted round-robin across shares
//! (tenants), not first come first served, so a tenant with a hundred requests waiting does not
//! make another's one request wait behind all of them. Stride scheduling: each share has a pass
//! value that grows by `STRIDE / weight` per turn it gets; the share with the lowest pass goes
//! next, ties by who waited first. A share that starts waiting joins at the current pass, so
//! time spent not waiting earns no credit. Pure: the pool keeps it under its lock.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

const STRIDE: u64 = 1 << 20;

struct Share<W> {
    pass: u64,
    stride: u64,
    waiters: VecDeque<(u64, W)>,
}

/// Waiters of type `W`, by share.
pub(crate) struct FairQueue<W> {
    shares: HashMap<Arc<str>, Share<W>, foldhash::fast::RandomState>,
    /// The pass of the last turn given.
    now: u64,
    seq: u64,
    len: usize,
}

impl<W> Default for FairQueue<W> {
    fn default() -> Self {
        Self {
            shares: HashMap::default(),
            now: 0,
            seq: 0,
            len: 0,
        }
    }
}

impl<W> FairQueue<W> {
    /// `w` waits for a turn of `share`, which gets `weight` turns for each turn of a share of
    /// weight 1 while both wait.
    pub(crate) fn push(&mut self, share: &str, weight: u32, w: W) {
        self.seq += 1;
        self.len += 1;
        let now = self.now;
        let stride = STRIDE / u64::from(weight.max(1));
        match self.shares.get_mut(share) {
            Some(s) => {
                s.stride = stride;
                s.waiters.push_back((self.seq, w));
            }
            None => {
                self.shares.insert(
                    Arc::from(share),
                    Share {
                        pass: now,
                        stride,
                        waiters: VecDeque::from([(self.seq, w)]),
                    },
                );
            }
        }
    }

    /// The next waiter whose turn it is and that `alive` accepts (the others are dropped without
    /// costing their share a turn).
    pub(crate) fn pop(&mut self, mut alive: impl FnMut(&W) -> bool) -> Option<W> {
        loop {
            let key = self
                .shares
                .iter()
                .filter_map(|(k, s)| s.waiters.front().map(|(seq, _)| (s.pass, *seq, k)))
                .min()
                .map(|(_, _, k)| k.clone())?;
            let share = self.shares.get_mut(&key)?;
            let (_, w) = share.waiters.pop_front()?;
            self.len -= 1;
            let served = alive(&w);
            if served {
                self.now = share.pass;
                share.pass += share.stride;
            }
            if share.waiters.is_empty() {
                self.shares.remove(&key);
            }
            if served {
                return Some(w);
            }
        }
    }

    /// Waiters queued (some may have given up).
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turns(q: &mut FairQueue<&'static str>, n: usize) -> String {
        (0..n)
            .filter_map(|_| q.pop(|_| true))
            .collect::<Vec<_>>()
            .join("")
    }

    #[test]
    fn a_flood_waits_its_turn_beside_one_request() {
        let mut q = FairQueue::default();
        for _ in 0..6 {
            q.push("a", 1, "a");
        }
        q.push("b", 1, "b");
        q.push("b", 1, "b");
        // First come first served would give b its turn after six of a's.
        assert_eq!(turns(&mut q, 8), "ababaaaa");
        assert_eq!(q.len(), 0);
        assert_eq!(q.pop(|_| true), None);
    }

    #[test]
    fn turns_follow_the_weights_while_both_wait() {
        let mut q = FairQueue::default();
        for _ in 0..20 {
            q.push("free", 1, "f");
            q.push("pro", 3, "P");
        }
        let first = turns(&mut q, 16);
        assert_eq!(first.matches('P').count(), 12, "{first}");
        assert_eq!(first.matches('f').count(), 4, "{first}");
    }

    #[test]
    fn a_share_that_was_away_earns_no_credit_and_the_dead_cost_nothing() {
        let mut q = FairQueue::default();
        for _ in 0..4 {
            q.push("a", 1, "a");
        }
        assert_eq!(turns(&mut q, 4), "aaaa");
        // b arrives late: it joins at a's pass, not at 0 with four turns to catch up.
        for _ in 0..4 {
            q.push("a", 1, "a");
            q.push("b", 1, "b");
        }
        assert_eq!(turns(&mut q, 4), "abab");
        q.push("c", 1, "dead");
        q.push("c", 1, "c");
        assert_eq!(
            q.pop(|w| *w != "dead"),
            Some("c"),
            "c's live waiter still goes first"
        );
    }
}
