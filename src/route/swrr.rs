//! Smooth weighted round-robin (nginx's `ngx_http_upstream_get_peer`).
//!
//! Each pick adds every eligible target's weight to its running `current`,
//! picks the largest `current` (the first on ties) and subtracts the round's
//! total weight from it. Over any window the picks follow the weights, and
//! they are spread out: weights 5:1:1 give `a a b a c a a`.

/// Per-worker state for one weighted target list.
#[derive(Clone, Debug)]
pub struct Swrr {
    weights: Vec<i64>,
    current: Vec<i64>,
    total: i64,
}

impl Swrr {
    /// Targets with weight 0 are never picked, unless every weight is 0:
    /// then all are picked in turn.
    ///
    /// # Panics
    /// If `weights` is empty.
    pub fn new(weights: &[u32]) -> Self {
        assert!(!weights.is_empty(), "Swrr needs at least one target");
        let all_zero = weights.iter().all(|&w| w == 0);
        let weights: Vec<i64> = weights
            .iter()
            .map(|&w| if all_zero { 1 } else { w as i64 })
            .collect();
        Swrr {
            total: weights.iter().sum(),
            current: vec![0; weights.len()],
            weights,
        }
    }

    pub fn len(&self) -> usize {
        self.weights.len()
    }

    pub fn is_empty(&self) -> bool {
        self.weights.is_empty()
    }

    /// The next target's index. (Not an `Iterator`: it never ends, and
    /// callers pick one target per attempt.)
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> usize {
        let mut best = 0;
        for i in 0..self.weights.len() {
            self.current[i] += self.weights[i];
            if self.current[i] > self.current[best] {
                best = i;
            }
        }
        self.current[best] -= self.total;
        best
    }

    /// The next target among those `skip` does not exclude (ejected or
    /// already tried ones); `None` when it excludes every target with a
    /// positive weight. Excluded targets' state is left as it is.
    pub fn next_excluding(&mut self, skip: impl Fn(usize) -> bool) -> Option<usize> {
        let mut best: Option<usize> = None;
        let mut total = 0;
        for i in 0..self.weights.len() {
            if self.weights[i] == 0 || skip(i) {
                continue;
            }
            self.current[i] += self.weights[i];
            total += self.weights[i];
            if best.is_none_or(|b| self.current[i] > self.current[b]) {
                best = Some(i);
            }
        }
        let b = best?;
        self.current[b] -= total;
        Some(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(w: &[u32], n: usize) -> Vec<usize> {
        let mut s = Swrr::new(w);
        (0..n).map(|_| s.next()).collect()
    }

    #[test]
    fn nginx_sequence() {
        // nginx's own example: weights a=5, b=1, c=1.
        assert_eq!(seq(&[5, 1, 1], 7), [0, 0, 1, 0, 2, 0, 0]);
        assert_eq!(seq(&[5, 1, 1], 14)[7..], [0, 0, 1, 0, 2, 0, 0]);
        assert_eq!(seq(&[1, 1], 4), [0, 1, 0, 1]);
        assert_eq!(seq(&[2, 1], 6), [0, 1, 0, 0, 1, 0]);
    }

    #[test]
    fn proportions_1_2_7() {
        let n = 10_000;
        let mut counts = [0usize; 3];
        for i in seq(&[1, 2, 7], n) {
            counts[i] += 1;
        }
        for (c, w) in counts.iter().zip([1.0, 2.0, 7.0]) {
            let share = *c as f64 / n as f64;
            assert!((share - w / 10.0).abs() < 0.01, "{counts:?}");
        }
        // Exact, in fact, over whole periods; and smooth: the weight-1
        // target never comes twice within a period.
        assert_eq!(counts, [1000, 2000, 7000]);
        let s = seq(&[1, 2, 7], 10);
        assert_eq!(s.iter().filter(|&&i| i == 0).count(), 1);
    }

    #[test]
    fn smooth_max_run() {
        // With 7:3 the heavy target never runs more than ceil(7/3)+1 times.
        let s = seq(&[7, 3], 1000);
        let mut run = 0;
        let mut max = 0;
        for w in s.windows(2) {
            run = if w[0] == w[1] { run + 1 } else { 0 };
            max = max.max(run + 1);
        }
        assert!(max <= 3, "{max}");
    }

    #[test]
    fn single_and_zero() {
        assert!(seq(&[9], 100).iter().all(|&i| i == 0));
        assert!(seq(&[0, 3, 0], 50).iter().all(|&i| i == 1));
        assert_eq!(seq(&[0, 0], 4), [0, 1, 0, 1]);
    }

    #[test]
    fn large_weights() {
        let w = [u32::MAX, u32::MAX / 2, 1, u32::MAX];
        let mut s = Swrr::new(&w);
        let mut counts = [0u64; 4];
        for _ in 0..100_000 {
            counts[s.next()] += 1;
        }
        // No overflow, and the proportions hold.
        let total: f64 = w.iter().map(|&x| x as f64).sum();
        for i in 0..4 {
            let share = counts[i] as f64 / 100_000.0;
            assert!((share - w[i] as f64 / total).abs() < 0.001, "{counts:?}");
        }
        let many = vec![u32::MAX; 1000];
        let mut s = Swrr::new(&many);
        for i in 0..3000 {
            assert_eq!(s.next(), i % 1000);
        }
    }

    #[test]
    fn excluding() {
        let mut s = Swrr::new(&[5, 1, 1]);
        // Skipping the heavy one splits between the others evenly.
        let picks: Vec<_> = (0..6)
            .map(|_| s.next_excluding(|i| i == 0).unwrap())
            .collect();
        assert_eq!(picks.iter().filter(|&&i| i == 1).count(), 3);
        assert_eq!(s.next_excluding(|_| true), None);
        let mut z = Swrr::new(&[0, 2]);
        assert_eq!(z.next_excluding(|i| i == 1), None);
        // With nothing skipped it is exactly `next`.
        let mut a = Swrr::new(&[3, 2, 4]);
        let mut b = Swrr::new(&[3, 2, 4]);
        for _ in 0..50 {
            assert_eq!(a.next_excluding(|_| false), Some(b.next()));
        }
        // Proportions among the rest hold: 2:4 → 1/3, 2/3.
        let mut c = Swrr::new(&[3, 2, 4]);
        let mut counts = [0; 3];
        for _ in 0..600 {
            counts[c.next_excluding(|i| i == 0).unwrap()] += 1;
        }
        assert_eq!(counts, [0, 200, 400]);
    }
}
