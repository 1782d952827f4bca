//! Clustering of linked pairs into people: union–find over `Link` pairs, strongest first, with
//! a guard against chaining (A~B, B~C, C~D… joining records that are not the same person).
//!
//! A union is refused, and the pair sent to review, when the merged cluster would exceed the
//! size limit, or when any record of one side compared directly with any record of the other
//! scores `Distinct`.

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
    /// Some record of one side is `Distinct` from some record of the other.
    DistinctMembers,
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
/// `distinct(a, b)` tells whether two records compared directly are `Distinct`.
pub fn cluster(
    n: usize,
    links: &[(usize, usize, f64)],
    max_cluster: usize,
    mut distinct: impl FnMut(usize, usize) -> bool,
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
        let clash = members[ra].iter().any(|&x| members[rb].iter().any(|&y| (x, y) != (a, b) && distinct(x, y)));
        if clash {
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

    #[test]
    fn chains_are_cut_by_size_and_by_distinct_members() {
        // 0-1-2-3-4 chained by links; 0 and 3 are distinct.
        let links = [(0, 1, 9.0), (1, 2, 8.0), (2, 3, 7.0), (3, 4, 6.0), (5, 6, 5.0)];
        let c = cluster(7, &links, 10, |a, b| (a.min(b), a.max(b)) == (0, 3));
        assert_eq!(c.clusters, vec![vec![0, 1, 2], vec![3, 4], vec![5, 6]]);
        assert_eq!(c.refused, vec![(2, Refusal::DistinctMembers)]);
        let c = cluster(7, &links, 2, |_, _| false);
        assert_eq!(c.clusters, vec![vec![0, 1], vec![2, 3], vec![5, 6]]);
        assert_eq!(c.refused, vec![(1, Refusal::TooLarge), (3, Refusal::TooLarge)]);
    }
}
