//! Blocking: which pairs of records are compared at all.
//!
//! Several rules each group records by a key; records sharing a key become candidate pairs, and
//! the union of all rules' pairs (each pair once) is compared. Rules rest on different fields, so
//! one wrong field (a typo in the name, a year-only date, a new commune code) does not lose a true
//! pair. A block larger than [`BlockingConfig::max_block`] (a very common name in a big commune)
//! is not compared all-to-all: its records are sorted by folded name and each is paired with the
//! next [`BlockingConfig::window`] ones (sorted neighbourhood), and the block is counted.

use foldhash::{HashMap, HashMapExt};

use super::linkage::{Field, LinkFeatures, Origin};

/// Blocking settings.
#[derive(Debug, Clone)]
pub struct BlockingConfig {
    /// Largest block compared all-to-all (default 100 records).
    pub max_block: usize,
    /// In a larger block, how many following records (sorted by name) each record is paired with (default 20).
    pub window: usize,
    /// Whether to pair two registry records (default false: the registry is already deduplicated).
    pub registry_pairs: bool,
}

impl Default for BlockingConfig {
    fn default() -> Self {
        BlockingConfig { max_block: 100, window: 20, registry_pairs: false }
    }
}

/// A blocking rule: a name and the keys it gives a record (none, one or several).
#[derive(Clone, Copy)]
pub struct BlockingRule {
    pub name: &'static str,
    pub keys: fn(&LinkFeatures, &mut Vec<String>),
}

impl std::fmt::Debug for BlockingRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

/// The full date with day and month in ascending order (so a swapped day/month gives the same key).
fn date_key(r: &LinkFeatures) -> Option<String> {
    let d = r.birth_date?.full()?;
    let (x, y) = (d.day(), d.month() as u8);
    Some(format!("{}-{}-{}", d.year(), x.min(y), x.max(y)))
}

/// The 2025 communes a record's keys use: those its home commune is or went into, or, for a
/// record without a home commune (a file from another system), "-": such records are blocked
/// together as if they lived in one commune, so the commune rules still pair them.
fn communes(r: &LinkFeatures) -> Vec<&str> {
    if r.communes_2025.is_empty() { vec!["-"] } else { r.communes_2025.iter().map(String::as_str).collect() }
}

fn year(r: &LinkFeatures) -> Option<i32> {
    r.birth_date.map(|d| d.year())
}

fn sex(r: &LinkFeatures) -> &'static str {
    r.sex.map_or("?", |s| s.code())
}

/// The default rules:
/// 1. phonetic family + given name + birth year + sex;
/// 2. phonetic given name + full date (day and month unordered);
/// 3. legacy ID number;
/// 4. phone number;
/// 5. 2025 commune + full date (unordered) + sex;
/// 6. phonetic family + given name + 2025 commune (date typos);
/// 7. 2025 commune + birth year + sex + first letter of the given name's key (name typos, year-only dates);
/// 8. 2025 commune + day and month (unordered) + sex (name and year both wrong);
/// 9. phonetic family name + full date (day and month unordered) (given name wrong, also
///    written in the family name's place);
/// 10. home commune (or none) + the numbers of the address (house, street or postcode numbers:
///     both names and the date wrong);
/// 11. home commune (or none) + one of the address's two rarest tokens (see
///     [`LinkFeatures`]'s `address_rare`: a street name or a postcode few records share) + the phonetic
///     family name and the given name's initial, or the phonetic given name and the family name's
///     initial (a name and the date wrong or missing, the address written with a slip);
/// 12. phonetic middle + given name + 2025 commune (family name and date both wrong).
///
/// A legacy commune stands for every 2025 commune it went into; a missing one is a commune of its
/// own ("-").
pub fn default_rules() -> Vec<BlockingRule> {
    vec![
        BlockingRule {
            name: "name+year",
            keys: |r, out| {
                if let Some(y) = year(r)
                    && !r.given_k.is_empty()
                {
                    out.push(format!("{}|{}|{y}|{}", r.family_k, r.given_k, sex(r)));
                }
            },
        },
        BlockingRule {
            name: "given+date",
            keys: |r, out| {
                if let Some(d) = date_key(r)
                    && !r.given_k.is_empty()
                {
                    out.push(format!("{}|{d}", r.given_k));
                }
            },
        },
        BlockingRule { name: "legacy_id", keys: |r, out| out.extend(r.legacy_id.clone()) },
        BlockingRule { name: "phone", keys: |r, out| out.extend(r.phone.clone()) },
        BlockingRule {
            name: "commune+date+sex",
            keys: |r, out| {
                if let Some(d) = date_key(r) {
                    out.extend(communes(r).iter().map(|c| format!("{c}|{d}|{}", sex(r))));
                }
            },
        },
        BlockingRule {
            name: "name+commune",
            keys: |r, out| {
                if !r.given_k.is_empty() {
                    out.extend(communes(r).iter().map(|c| format!("{}|{}|{c}", r.family_k, r.given_k)));
                }
            },
        },
        BlockingRule {
            name: "commune+year+sex+initial",
            keys: |r, out| {
                if let (Some(y), Some(initial)) = (year(r), r.given_k.chars().next()) {
                    out.extend(communes(r).iter().map(|c| format!("{c}|{y}|{}|{initial}", sex(r))));
                }
            },
        },
        BlockingRule {
            name: "commune+day+month+sex",
            keys: |r, out| {
                if let Some(d) = r.birth_date.and_then(|d| d.full()) {
                    let (x, y) = (d.day(), d.month() as u8);
                    out.extend(communes(r).iter().map(|c| format!("{c}|{}-{}|{}", x.min(y), x.max(y), sex(r))));
                }
            },
        },
        BlockingRule {
            name: "family+date",
            keys: |r, out| {
                if let Some(d) = date_key(r)
                    && !r.family_k.is_empty()
                {
                    out.push(format!("{}|{d}", r.family_k));
                }
            },
        },
        BlockingRule {
            name: "address numbers",
            keys: |r, out| {
                let numbers: Vec<&str> = r
                    .address_f
                    .iter()
                    .flat_map(|a| a.split(' '))
                    .filter(|t| t.bytes().all(|b| b.is_ascii_digit()))
                    .collect();
                if numbers.len() >= 2 {
                    let numbers = numbers.join(" ");
                    out.extend(communes(r).iter().map(|c| format!("{c}|{numbers}")));
                }
            },
        },
        BlockingRule {
            name: "name+address word",
            keys: |r, out| {
                let words = &r.address_rare;
                let initial = |k: &str| k.chars().next();
                for c in communes(r) {
                    for w in words {
                        if let Some(i) = initial(&r.given_k).filter(|_| !r.family_k.is_empty()) {
                            out.push(format!("f|{}|{i}|{c}|{w}", r.family_k));
                        }
                        if let Some(i) = initial(&r.family_k).filter(|_| !r.given_k.is_empty()) {
                            out.push(format!("g|{}|{i}|{c}|{w}", r.given_k));
                        }
                    }
                }
            },
        },
        BlockingRule {
            name: "middle+given+commune",
            keys: |r, out| {
                if !r.middle_k.is_empty() && !r.given_k.is_empty() {
                    out.extend(communes(r).iter().map(|c| format!("{}|{}|{c}", r.middle_k, r.given_k)));
                }
            },
        },
    ]
}

/// The rules whose candidates train the model ([`super::em::Model::estimate_in_sessions`]),
/// each with the fields its key makes agree. Between them every field is estimated at least once.
pub const TRAINING: [(&str, &[Field]); 4] = [
    ("legacy_id", &[Field::LegacyId]),
    ("name+year", &[Field::Family, Field::Given, Field::BirthDate]),
    ("commune+date+sex", &[Field::Commune, Field::BirthDate, Field::Sex]),
    ("name+commune", &[Field::Family, Field::Given, Field::Commune]),
];

/// What one rule contributed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleStats {
    pub rule: &'static str,
    /// Blocks of two or more records.
    pub blocks: usize,
    /// Blocks above the size limit, compared by sorted neighbourhood only.
    pub oversized_blocks: usize,
    /// Pairs the rule proposed (before removing those another rule proposed already).
    pub pairs: usize,
    /// Pairs no earlier rule had proposed.
    pub new_pairs: usize,
}

/// The result of blocking.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockingStats {
    pub rules: Vec<RuleStats>,
    /// Distinct candidate pairs.
    pub pairs: usize,
}

/// Candidate pairs (`a < b`, sorted, each once) and how they were found.
#[derive(Debug, Clone)]
pub struct Candidates {
    pub pairs: Vec<(u32, u32)>,
    /// For each pair, the rules that proposed it: bit `i` for `rules[i]`.
    pub rules: Vec<u16>,
    pub stats: BlockingStats,
}

impl Candidates {
    /// Whether rule number `rule` proposed pair number `i`.
    pub fn proposed_by(&self, i: usize, rule: usize) -> bool {
        self.rules[i] & (1 << rule) != 0
    }
}

/// The union of the rules' pair lists (`a << 32 | b`, each sorted, each pair once), sorted, in
/// one pass over all lists at once: each pair with the rules that proposed it (bit `i` for list
/// `i`), and for each list the number of its pairs no earlier list has.
fn union(lists: &[Vec<u64>], capacity: usize) -> (Vec<(u32, u32)>, Vec<u16>, Vec<usize>) {
    // No pair is `u64::MAX` (its `a` would equal its `b`): it marks an exhausted list.
    const DONE: u64 = u64::MAX;
    let mut heads = vec![0usize; lists.len()];
    let head = |heads: &[usize], i: usize| lists[i].get(heads[i]).copied().unwrap_or(DONE);
    let (mut pairs, mut rules) = (Vec::with_capacity(capacity), Vec::with_capacity(capacity));
    let mut first = vec![0usize; lists.len()];
    loop {
        let min = (0..lists.len()).map(|i| head(&heads, i)).min().unwrap_or(DONE);
        if min == DONE {
            break;
        }
        let mut bits = 0u16;
        for i in 0..lists.len() {
            if head(&heads, i) == min {
                bits |= 1 << i;
                heads[i] += 1;
            }
        }
        first[bits.trailing_zeros() as usize] += 1;
        pairs.push(((min >> 32) as u32, min as u32));
        rules.push(bits);
    }
    (pairs, rules, first)
}

/// Applies the rules to the records and returns the distinct candidate pairs.
pub fn candidates(records: &[LinkFeatures], rules: &[BlockingRule], config: &BlockingConfig) -> Candidates {
    assert!(records.len() < u32::MAX as usize, "too many records for one linkage run");
    assert!(rules.len() <= 16, "at most 16 blocking rules");
    // Whether each record is a registry one, compactly (read for every pair proposed).
    let registry: Vec<bool> = records.iter().map(|r| r.origin == Origin::Registry).collect();
    let skip_registry = !config.registry_pairs && registry.iter().any(|&r| r);
    let mut lists: Vec<Vec<u64>> = Vec::with_capacity(rules.len());
    let mut stats = BlockingStats::default();
    let mut keys = Vec::new();
    for rule in rules {
        let mut blocks: HashMap<String, Vec<u32>> = HashMap::new();
        for (i, r) in records.iter().enumerate() {
            keys.clear();
            (rule.keys)(r, &mut keys);
            keys.sort_unstable();
            keys.dedup();
            for k in keys.drain(..) {
                blocks.entry(k).or_default().push(i as u32);
            }
        }
        let mut s = RuleStats { rule: rule.name, blocks: 0, oversized_blocks: 0, pairs: 0, new_pairs: 0 };
        let reach = |n: usize| if n > config.max_block { config.window } else { n };
        // Each pair of a block of n records within reach r of each other, counted to allocate once.
        let most: usize =
            blocks.values().map(|m| (0..m.len()).map(|i| reach(m.len()).min(m.len() - 1 - i)).sum::<usize>()).sum();
        let mut found: Vec<u64> = Vec::with_capacity(most);
        for members in blocks.values_mut().filter(|m| m.len() > 1) {
            s.blocks += 1;
            if members.len() > config.max_block {
                s.oversized_blocks += 1;
                members.sort_by(|&a, &b| records[a as usize].full_f.cmp(&records[b as usize].full_f).then(a.cmp(&b)));
            }
            let reach = reach(members.len());
            for (i, &a) in members.iter().enumerate() {
                for &b in members.iter().skip(i + 1).take(reach) {
                    if skip_registry && registry[a as usize] && registry[b as usize] {
                        continue;
                    }
                    let (lo, hi) = if a < b { (a, b) } else { (b, a) };
                    found.push(u64::from(lo) << 32 | u64::from(hi));
                }
            }
        }
        found.sort_unstable();
        found.dedup();
        s.pairs = found.len();
        lists.push(found);
        stats.rules.push(s);
    }
    // Distinct pairs are at most all the lists' pairs together.
    let capacity = lists.iter().map(Vec::len).sum();
    let (pairs, proposed, first) = union(&lists, capacity);
    drop(lists);
    for (s, new_pairs) in stats.rules.iter_mut().zip(first) {
        s.new_pairs = new_pairs;
    }
    stats.pairs = pairs.len();
    Candidates { pairs, rules: proposed, stats }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_union_of_sorted_lists_is_sorted_and_knows_who_proposed_each_pair() {
        let (pairs, rules, first) = super::union(&[vec![1, 3, 5, 9], vec![2, 3, 9, 10], vec![], vec![3, 11]], 10);
        assert_eq!(pairs, [(0, 1), (0, 2), (0, 3), (0, 5), (0, 9), (0, 10), (0, 11)]);
        assert_eq!(rules, [1, 2, 0b1011, 1, 3, 2, 8]);
        assert_eq!(first, [4, 2, 0, 1]);
        let (pairs, rules, first) = super::union(&[vec![], vec![1 << 32 | 7]], 1);
        assert_eq!((pairs, rules, first), (vec![(1, 7)], vec![2], vec![0, 1]));
        assert!(super::union(&[], 0).0.is_empty());
    }
}
