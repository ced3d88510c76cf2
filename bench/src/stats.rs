//! Several runs of one measurement, summed up as a median and a range.

/// The values of one figure over the repetitions of a run.
#[derive(Debug, Clone, Default)]
pub struct Samples(Vec<f64>);

impl Samples {
    pub fn new() -> Self {
        Samples(Vec::new())
    }

    #[cfg(test)]
    pub fn one(value: f64) -> Self {
        Samples(vec![value])
    }

    pub fn push(&mut self, value: f64) {
        self.0.push(value);
    }

    /// How many runs.
    pub fn runs(&self) -> usize {
        self.0.len()
    }

    fn sorted(&self) -> Vec<f64> {
        let mut v = self.0.clone();
        v.sort_by(f64::total_cmp);
        v
    }

    /// The middle value (the mean of the two middle ones for an even count).
    pub fn median(&self) -> f64 {
        let v = self.sorted();
        match v.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        }
    }

    pub fn min(&self) -> f64 {
        self.sorted().first().copied().unwrap_or(f64::NAN)
    }

    pub fn max(&self) -> f64 {
        self.sorted().last().copied().unwrap_or(f64::NAN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_spread() {
        let mut s = Samples::new();
        for v in [3.0, 1.0, 2.0] {
            s.push(v);
        }
        assert_eq!(s.median(), 2.0);
        assert_eq!((s.min(), s.max(), s.runs()), (1.0, 3.0, 3));
        s.push(10.0);
        assert_eq!(s.median(), 2.5);
        assert!(Samples::new().median().is_nan());
    }
}
