//! Clustering of linked pairs into people: union–find over `Link` pairs, strongest first, with
//! a guard against chaining (A~B, B~C, C~D… joining records that are not the same person).
//!
//! A union is refused, and the pair sent to review, when the merged cluster would exceed the
//! size limit, or when the records of the two sides, compared directly across, contradict each
//! other: one pair so clearly two people that nothing else can outweigh it (below the veto), or a
//! pair more likely two people than one (below the contradiction threshold) that the other pairs
//! across do not outweigh on average (see [`Guard`]). One corrupted copy among several agreeing
//! ones does not keep a record out of its person; a look-alike bridged to a household member by
//! one corrupted record is kept apart.

/// Disjoint sets with union by size and path halving.
#[derive(Debug, Clone)]
pub struct UnionFind {
    parent: Vec<usize>,
    size: Vec<usize>,
}

impl UnionFind {
    pub fn new(n: usize) -> Self {
        UnionFind { parent: (0..n).collect(), size: vec![1; n] }
    }

    /// The representative of `x`'s set.
    pub fn find(&mut self, mut x: usize) -> usize {
        while self.parent[x] != x {
            self.parent[x] = self.parent[self.parent[x]];
            x = self.parent[x];
        }
        x
    }

    /// Number of elements in `x`'s set.
    pub fn size(&mut self, x: usize) -> usize {
        let r = self.find(x);
        self.size[r]
    }

    /// Joins the sets of `a` and `b`; returns the new representative.
    pub fn union(&mut self, a: usize, b: usize) -> usize {
        let (mut ra, mut rb) = (self.find(a), self.find(b));
        if ra == rb {
            return ra;
        }
        if self.size[ra] < self.size[rb] {
            std::mem::swap(&mut ra, &mut rb);
        }
        self.parent[rb] = ra;
        self.size[ra] += self.size[rb];
        ra
    }
}

/// Why a `Link` pair was not merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The merged cluster would exceed the size limit.
    TooLarge,
    /// The records of the two sides contradict each other (see [`Guard`]).
    DistinctMembers,
}

/// When the records of two groups contradict each other, in bits of match weight.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Guard {
    /// A pair across below this weight is more likely two people than one.
    pub contradiction: f64,
    /// A union with a contradicting pair across goes ahead only if the other pairs across (the
    /// link itself left out) weigh at least this much on average: one corrupted copy among copies
    /// that agree with the record does not keep it out of its person.
    pub support: f64,
    /// A single pair across below this weight refuses the union whatever the others say.
    pub veto: f64,
}

impl Guard {
    /// Whether joining groups `xs` and `ys` through the link `(a, b)` is refused; `weight`
    /// scores a pair compared directly.
    fn refuses(
        &self,
        xs: &[usize],
        ys: &[usize],
        link: (usize, usize),
        weight: &mut impl FnMut(usize, usize) -> f64,
    ) -> bool {
        let (mut sum, mut count, mut contradicted) = (0.0, 0usize, false);
        for &x in xs {
            for &y in ys {
                if (x, y) == link || (y, x) == link {
                    continue;
                }
                let w = weight(x, y);
                if w < self.veto {
                    return true;
                }
                contradicted |= w < self.contradiction;
                sum += w;
                count += 1;
            }
        }
        contradicted && sum < self.support * count as f64
    }
}

/// Clusters and the refused links.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clustering {
    /// Groups of two or more records, each sorted, ordered by their first record.
    pub clusters: Vec<Vec<usize>>,
    /// `(index into the links given, reason)` of every refused union.
    pub refused: Vec<(usize, Refusal)>,
}

/// Clusters `n` records over `links` (`(a, b, weight)`), strongest weight first.
/// `weight(a, b)` scores two records compared directly (match weight in bits).
pub fn cluster(
    n: usize,
    links: &[(usize, usize, f64)],
    max_cluster: usize,
    guard: Guard,
    mut weight: impl FnMut(usize, usize) -> f64,
) -> Clustering {
    let mut order: Vec<usize> = (0..links.len()).collect();
    order.sort_by(|&x, &y| links[y].2.total_cmp(&links[x].2).then(x.cmp(&y)));
    let mut sets = UnionFind::new(n);
    let mut members: Vec<Vec<usize>> = (0..n).map(|i| vec![i]).collect();
    let mut refused = Vec::new();
    for i in order {
        let (a, b, _) = links[i];
        let (ra, rb) = (sets.find(a), sets.find(b));
        if ra == rb {
            continue;
        }
        if members[ra].len() + members[rb].len() > max_cluster {
            refused.push((i, Refusal::TooLarge));
            continue;
        }
        if guard.refuses(&members[ra], &members[rb], (a, b), &mut weight) {
            refused.push((i, Refusal::DistinctMembers));
            continue;
        }
        let root = sets.union(ra, rb);
        let other = if root == ra { rb } else { ra };
        let moved = std::mem::take(&mut members[other]);
        members[root].extend(moved);
    }
    let mut clusters: Vec<Vec<usize>> = members
        .into_iter()
        .filter(|m| m.len() > 1)
        .map(|mut m| {
            m.sort_unstable();
            m
        })
        .collect();
    clusters.sort_unstable();
    refused.sort_unstable_by_key(|r| r.0);
    Clustering { clusters, refused }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn union_find() {
        let mut u = UnionFind::new(5);
        u.union(0, 1);
        u.union(3, 4);
        u.union(1, 4);
        assert_eq!(u.find(0), u.find(3));
        assert_eq!(u.size(4), 4);
        assert_ne!(u.find(2), u.find(0));
    }

    const GUARD: Guard = Guard { contradiction: 0.0, support: 5.0, veto: -10.0 };

    #[test]
    fn chains_are_cut_by_size_and_by_contradicting_members() {
        // 0-1-2-3-4 chained by links; 0 and 3 are more likely two people (-2 bits), and 1-3
        // (1 bit) does not outweigh it: {0, 1, 2} + {3} is refused.
        let links = [(0, 1, 9.0), (1, 2, 8.0), (2, 3, 7.0), (3, 4, 6.0), (5, 6, 5.0)];
        let weight = |a: usize, b: usize| if (a.min(b), a.max(b)) == (0, 3) { -2.0 } else { 1.0 };
        let c = cluster(7, &links, 10, GUARD, weight);
        assert_eq!(c.clusters, vec![vec![0, 1, 2], vec![3, 4], vec![5, 6]]);
        assert_eq!(c.refused, vec![(2, Refusal::DistinctMembers)]);
        let c = cluster(7, &links, 2, GUARD, |_, _| 1.0);
        assert_eq!(c.clusters, vec![vec![0, 1], vec![2, 3], vec![5, 6]]);
        assert_eq!(c.refused, vec![(1, Refusal::TooLarge), (3, Refusal::TooLarge)]);
    }

    #[test]
    fn one_corrupted_copy_does_not_keep_a_record_out_when_the_others_agree() {
        // {0, 1, 2} + {3} through 2-3: 0-3 contradicts (-3.5 bits), 1-3 agrees strongly (18).
        let links = [(0, 1, 20.0), (1, 2, 19.0), (2, 3, 18.0)];
        let weight = |a: usize, b: usize| if (a.min(b), a.max(b)) == (0, 3) { -3.5 } else { 18.0 };
        let c = cluster(4, &links, 10, GUARD, weight);
        assert_eq!(c.clusters, vec![vec![0, 1, 2, 3]]);
        assert!(c.refused.is_empty());
        // ... unless the contradiction is clear: 0-3 at -12 bits vetoes the union alone.
        let weight = |a: usize, b: usize| if (a.min(b), a.max(b)) == (0, 3) { -12.0 } else { 18.0 };
        let c = cluster(4, &links, 10, GUARD, weight);
        assert_eq!(c.clusters, vec![vec![0, 1, 2]]);
        assert_eq!(c.refused, vec![(2, Refusal::DistinctMembers)]);
    }
}
