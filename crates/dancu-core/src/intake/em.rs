//! Fellegi–Sunter scoring: m and u probabilities per field level, estimated by
//! expectation–maximization over the comparison vectors of the candidate pairs.
//!
//! Fields are taken as conditionally independent given the pair's class (match or not). A
//! missing field weighs nothing. The E step gives each distinct comparison vector its match
//! probability; the M step re-estimates the match share λ and each field's m (level shares among
//! matches) and u (among non-matches). Starting values and a small pseudo-count prior keep unseen
//! levels finite and hold the first class on the side of matches; probabilities are clamped to
//! [`MIN_PROBABILITY`], 1.
//!
//! A pair's match weight is `log2(λ/(1-λ)) + Σ log2(m/u)` (bits); its match probability is
//! `1 / (1 + 2^-weight)`.

use std::collections::HashMap;

use super::linkage::{Comparison, Field};

/// The smallest m or u probability a level may take (caps one field's weight at about ±13 bits).
pub const MIN_PROBABILITY: f64 = 1e-4;

/// EM settings.
#[derive(Debug, Clone)]
pub struct EmConfig {
    /// Iteration limit (default 100).
    pub max_iterations: usize,
    /// Stop when no parameter moves by more than this (default 1e-6).
    pub tolerance: f64,
    /// Weight of the starting values as pseudo-counts, in pairs per field (default 10).
    pub prior_strength: f64,
}

impl Default for EmConfig {
    fn default() -> Self {
        EmConfig { max_iterations: 100, tolerance: 1e-6, prior_strength: 10.0 }
    }
}

/// Review and link thresholds on the match probability.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// At or above: the same person, linked automatically (default 0.99).
    pub link: f64,
    /// At or above (and below `link`): an officer decides (default 0.50).
    pub review: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds { link: 0.99, review: 0.5 }
    }
}

impl Thresholds {
    pub fn band(&self, probability: f64) -> Band {
        if probability >= self.link {
            Band::Link
        } else if probability >= self.review {
            Band::Review
        } else {
            Band::Distinct
        }
    }
}

/// The decision for a pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Band {
    /// The same person: linked without review.
    Link,
    /// Possibly the same person: the clerical review queue.
    Review,
    /// Different people.
    Distinct,
}

impl Band {
    pub fn code(self) -> &'static str {
        match self {
            Band::Link => "link",
            Band::Review => "review",
            Band::Distinct => "distinct",
        }
    }
}

/// A Fellegi–Sunter model: the match share and per-field level probabilities.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    /// Share of matches among the candidate pairs.
    pub lambda: f64,
    /// `m[field][level]`: probability of the level among matches (fields in [`Field::ALL`] order).
    pub m: Vec<Vec<f64>>,
    /// `u[field][level]`: probability of the level among non-matches.
    pub u: Vec<Vec<f64>>,
    /// EM iterations run.
    pub iterations: usize,
    pub converged: bool,
}

fn starting(field: Field) -> (&'static [f64], &'static [f64]) {
    match field {
        Field::Name => (&[0.70, 0.08, 0.10, 0.09, 0.03], &[0.10, 0.02, 0.08, 0.10, 0.70]),
        Field::BirthDate => {
            (&[0.75, 0.04, 0.05, 0.04, 0.06, 0.03, 0.03], &[0.02, 0.002, 0.05, 0.02, 0.02, 0.04, 0.848])
        }
        Field::Sex => (&[0.97, 0.03], &[0.5, 0.5]),
        Field::Commune => (&[0.70, 0.15, 0.10, 0.05], &[0.10, 0.02, 0.10, 0.78]),
        Field::LegacyId | Field::Phone => (&[0.88, 0.07, 0.05], &[0.01, 0.005, 0.985]),
        Field::Parents => (&[0.90, 0.06, 0.04], &[0.30, 0.10, 0.60]),
    }
}

fn clamp_normalize(p: &mut [f64]) {
    for x in p.iter_mut() {
        *x = x.max(MIN_PROBABILITY);
    }
    let total: f64 = p.iter().sum();
    for x in p.iter_mut() {
        *x /= total;
    }
}

impl Model {
    /// The starting values of estimation (also a usable model when there is too little data).
    pub fn starting() -> Model {
        let (m, u) = Field::ALL.iter().map(|&f| starting(f)).map(|(m, u)| (m.to_vec(), u.to_vec())).unzip();
        Model { lambda: 0.05, m, u, iterations: 0, converged: false }
    }

    /// Estimates the model from comparison vectors by EM.
    pub fn estimate(comparisons: &[Comparison], config: &EmConfig) -> Model {
        let mut patterns: HashMap<Comparison, f64> = HashMap::new();
        for c in comparisons {
            *patterns.entry(*c).or_default() += 1.0;
        }
        let mut patterns: Vec<(Comparison, f64)> = patterns.into_iter().collect();
        // A fixed order keeps the floating-point sums (and so the result) reproducible.
        patterns.sort_by_key(|a| a.0.0);
        let mut model = Model::starting();
        if patterns.is_empty() {
            return model;
        }
        let prior = Model::starting();
        let total: f64 = patterns.iter().map(|p| p.1).sum();
        for iteration in 1..=config.max_iterations {
            let mut m_counts: Vec<Vec<f64>> = prior.m.iter().map(|l| vec![0.0; l.len()]).collect();
            let mut u_counts = m_counts.clone();
            let mut matches = 0.0;
            for (c, count) in &patterns {
                let g = Model::probability_of(model.match_weight(c));
                matches += g * count;
                for (f, level) in c.0.iter().enumerate() {
                    if let Some(l) = level {
                        m_counts[f][*l as usize] += g * count;
                        u_counts[f][*l as usize] += (1.0 - g) * count;
                    }
                }
            }
            let mut next = Model {
                lambda: (matches / total).clamp(MIN_PROBABILITY, 0.5),
                m: Vec::with_capacity(Field::COUNT),
                u: Vec::with_capacity(Field::COUNT),
                iterations: iteration,
                converged: false,
            };
            for f in 0..Field::COUNT {
                for (counts, start, out) in
                    [(&m_counts[f], &prior.m[f], &mut next.m), (&u_counts[f], &prior.u[f], &mut next.u)]
                {
                    let mut p: Vec<f64> =
                        counts.iter().zip(start.iter()).map(|(c, s)| c + config.prior_strength * s).collect();
                    clamp_normalize(&mut p);
                    out.push(p);
                }
            }
            let moved = next.max_difference(&model);
            model = next;
            if moved < config.tolerance {
                model.converged = true;
                break;
            }
        }
        model
    }

    fn max_difference(&self, other: &Model) -> f64 {
        let mut d = (self.lambda - other.lambda).abs();
        for (a, b) in self.m.iter().flatten().zip(other.m.iter().flatten()) {
            d = d.max((a - b).abs());
        }
        for (a, b) in self.u.iter().flatten().zip(other.u.iter().flatten()) {
            d = d.max((a - b).abs());
        }
        d
    }

    /// The weight of one field level: `log2(m/u)` bits.
    pub fn level_weight(&self, field: Field, level: u8) -> f64 {
        let f = Field::ALL.iter().position(|x| *x == field).expect("field");
        (self.m[f][level as usize] / self.u[f][level as usize]).log2()
    }

    /// The prior odds in bits: `log2(λ/(1-λ))`.
    pub fn prior_weight(&self) -> f64 {
        (self.lambda / (1.0 - self.lambda)).log2()
    }

    /// The match weight of a comparison: prior plus every present field's level weight.
    pub fn match_weight(&self, c: &Comparison) -> f64 {
        let mut w = self.prior_weight();
        for (f, level) in c.0.iter().enumerate() {
            if let Some(l) = level {
                w += (self.m[f][*l as usize] / self.u[f][*l as usize]).log2();
            }
        }
        w
    }

    /// The match probability of a match weight.
    pub fn probability_of(weight: f64) -> f64 {
        1.0 / (1.0 + (-weight).exp2())
    }

    /// Field-by-field account of a pair's score, for the review screen.
    pub fn explain(&self, c: &Comparison, thresholds: &Thresholds) -> Explanation {
        let fields = Field::ALL
            .iter()
            .map(|&field| {
                let level = c.level(field);
                FieldExplanation {
                    field,
                    level: level.map(|l| field.levels()[l as usize]),
                    weight: level.map_or(0.0, |l| self.level_weight(field, l)),
                }
            })
            .collect();
        let weight = self.match_weight(c);
        let probability = Model::probability_of(weight);
        Explanation {
            fields,
            prior_weight: self.prior_weight(),
            weight,
            probability,
            band: thresholds.band(probability),
        }
    }
}

/// One field of an [`Explanation`].
#[derive(Debug, Clone, PartialEq)]
pub struct FieldExplanation {
    pub field: Field,
    /// The level code (see [`Field::levels`]); `None` when missing on either side.
    pub level: Option<&'static str>,
    /// Its weight in bits (0 when missing): positive speaks for the same person.
    pub weight: f64,
}

/// Why a pair scored what it did.
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    pub fields: Vec<FieldExplanation>,
    /// The prior odds in bits.
    pub prior_weight: f64,
    /// Total match weight in bits (prior plus fields).
    pub weight: f64,
    pub probability: f64,
    pub band: Band,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vector(levels: [Option<u8>; Field::COUNT]) -> Comparison {
        Comparison(levels)
    }

    #[test]
    fn em_separates_matches_from_non_matches() {
        // 100 near-perfect agreements among 2,000 pairs that mostly disagree.
        let mut data = Vec::new();
        for i in 0..100u8 {
            data.push(vector([Some(0), Some(i % 3 / 2), Some(0), Some(0), None, Some(i % 5 / 4 * 2), None]));
        }
        for i in 0..1900u32 {
            let name = if i % 10 == 0 { 0 } else { 4 };
            data.push(vector([Some(name), Some(6), Some((i % 2) as u8), Some(3), None, Some(2), None]));
        }
        let model = Model::estimate(&data, &EmConfig::default());
        assert!(model.converged, "{model:?}");
        assert!((model.lambda - 0.05).abs() < 0.01, "lambda {}", model.lambda);
        assert!(model.level_weight(Field::Name, 0) > 2.0);
        assert!(model.level_weight(Field::BirthDate, 0) > 8.0);
        assert!(model.level_weight(Field::Commune, 3) < -5.0);
        let t = Thresholds::default();
        assert_eq!(model.explain(&data[0], &t).band, Band::Link);
        assert_eq!(model.explain(&data[150], &t).band, Band::Distinct);
        let e = model.explain(&data[0], &t);
        assert_eq!(e.fields.len(), Field::COUNT);
        assert_eq!(e.fields[1].level, Some("exact"));
        assert_eq!(e.fields[4].level, None);
        assert_eq!(e.fields[4].weight, 0.0);
        let sum: f64 = e.prior_weight + e.fields.iter().map(|f| f.weight).sum::<f64>();
        assert!((sum - e.weight).abs() < 1e-9);
    }

    #[test]
    fn no_data_gives_the_starting_model() {
        assert_eq!(Model::estimate(&[], &EmConfig::default()), Model::starting());
    }

    #[test]
    fn bands() {
        let t = Thresholds::default();
        assert_eq!(t.band(0.995), Band::Link);
        assert_eq!(t.band(0.7), Band::Review);
        assert_eq!(t.band(0.1), Band::Distinct);
    }
}
