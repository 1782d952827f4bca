//! Blocking: which pairs of records are compared at all.
//!
//! Several rules each group records by a key; records sharing a key become candidate pairs, and
//! the union of all rules' pairs (each pair once) is compared. Rules rest on different fields, so
//! one wrong field (a typo in the name, a year-only date, a new commune code) does not lose a true
//! pair. A block larger than [`BlockingConfig::max_block`] (a very common name in a big commune)
//! is not compared all-to-all: its records are sorted by what the rule's key leaves free
//! ([`Order`]: the name, or the birth date) and each is paired with the next
//! [`BlockingConfig::window`] ones (sorted neighbourhood), and the block is counted. So a record
//! takes part in a bounded number of pairs per rule at any population size; the rules' different
//! keys and orders together find what one window misses.

use std::hash::{BuildHasher, Hasher};

use super::interner::{Strings, Sym};
use super::linkage::{Field, LinkFeatures, Origin, Prepared};

/// Blocking settings.
#[derive(Debug, Clone)]
pub struct BlockingConfig {
    /// Largest block compared all-to-all (default 10 records).
    pub max_block: usize,
    /// In a larger block, how many following records (sorted by the rule's [`Order`]) each
    /// record is paired with (default 3). Together the two bound the pairs a record takes part
    /// in, rule by rule, whatever the size of the population: a block of a population ten times
    /// larger is ten times larger, and compared all-to-all its pairs would grow a hundredfold.
    pub window: usize,
    /// Whether to pair two registry records (default false: the registry is already deduplicated).
    pub registry_pairs: bool,
}

impl Default for BlockingConfig {
    fn default() -> Self {
        BlockingConfig { max_block: 10, window: 3, registry_pairs: false }
    }
}

/// A blocking rule: a name and the keys it gives a record (none, one or several). A key is a
/// 64-bit hash of the values the rule groups by ([`key`]): two records share a block when their
/// values are equal (two different values colliding would only add candidate pairs).
#[derive(Clone, Copy)]
pub struct BlockingRule {
    pub name: &'static str,
    pub keys: fn(&Strings, &LinkFeatures, &mut Vec<u64>),
    /// How the records of an oversized block are sorted before each is paired with its
    /// neighbours: by what the key leaves free to differ between one person's records.
    pub order: Order,
}

/// The sort of an oversized block (see [`BlockingConfig::window`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// By folded full name, then birth date: for keys that fix the date or only part of the name.
    Name,
    /// By birth date (year, month, day; missing parts first), then folded full name: for keys
    /// that fix the name, whose blocks hold namesakes that their dates tell apart.
    Date,
}

/// A record's birth date as sortable numbers (missing parts 0).
fn date_order(r: &LinkFeatures) -> (i32, u8, u8) {
    match r.birth_date {
        None => (0, 0, 0),
        Some(d) => (d.year(), d.month().map_or(0, |m| m as u8), d.full().map_or(0, |f| f.day())),
    }
}

impl std::fmt::Debug for BlockingRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

/// The blocking key of a rule's values.
pub fn key(parts: &[u64]) -> u64 {
    let mut h = foldhash::fast::FixedState::with_seed(0x626c_6f63_6b00).build_hasher();
    h.write_usize(parts.len());
    for p in parts {
        h.write_u64(*p);
    }
    h.finish()
}

fn sym(s: Sym) -> u64 {
    u64::from(s.raw())
}

/// The full date with day and month in ascending order (so a swapped day/month gives the same key).
fn date_key(r: &LinkFeatures) -> Option<[u64; 3]> {
    let d = r.birth_date?.full()?;
    let (x, y) = (d.day(), d.month() as u8);
    Some([d.year() as u64, u64::from(x.min(y)), u64::from(x.max(y))])
}

/// The commune of a record without a home commune (no [`Sym`] is this large).
const NO_COMMUNE: u64 = u64::MAX;

/// The 2025 communes a record's keys use: those its home commune is or went into, or, for a
/// record without a home commune (a file from another system), a commune of its own: such
/// records are blocked together as if they lived in one commune, so the commune rules still pair them.
fn communes(r: &LinkFeatures) -> impl Iterator<Item = u64> + '_ {
    let none = r.communes_2025.is_empty().then_some(NO_COMMUNE);
    r.communes_2025.iter().map(|&c| sym(c)).chain(none)
}

fn year(r: &LinkFeatures) -> Option<u64> {
    r.birth_date.map(|d| d.year() as u64)
}

fn sex(r: &LinkFeatures) -> u64 {
    r.sex.map_or(0, |s| 1 + s as u64)
}

/// The first letter of a name's phonetic key.
fn initial(t: &Strings, k: Sym) -> Option<u64> {
    t.get(k).chars().next().map(u64::from)
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
/// own.
pub fn default_rules() -> Vec<BlockingRule> {
    vec![
        BlockingRule {
            name: "name+year",
            order: Order::Date,
            keys: |_, r, out| {
                if let Some(y) = year(r)
                    && !r.given_k.is_empty()
                {
                    out.push(key(&[sym(r.family_k), sym(r.given_k), y, sex(r)]));
                }
            },
        },
        BlockingRule {
            name: "given+date",
            order: Order::Name,
            keys: |_, r, out| {
                if let Some([y, lo, hi]) = date_key(r)
                    && !r.given_k.is_empty()
                {
                    out.push(key(&[sym(r.given_k), y, lo, hi]));
                }
            },
        },
        BlockingRule {
            name: "legacy_id",
            order: Order::Name,
            keys: |_, r, out| {
                if !r.legacy_id.is_empty() {
                    out.push(key(&[sym(r.legacy_id)]));
                }
            },
        },
        BlockingRule {
            name: "phone",
            order: Order::Name,
            keys: |_, r, out| {
                if !r.phone.is_empty() {
                    out.push(key(&[sym(r.phone)]));
                }
            },
        },
        BlockingRule {
            name: "commune+date+sex",
            order: Order::Name,
            keys: |_, r, out| {
                if let Some([y, lo, hi]) = date_key(r) {
                    out.extend(communes(r).map(|c| key(&[c, y, lo, hi, sex(r)])));
                }
            },
        },
        BlockingRule {
            name: "name+commune",
            order: Order::Date,
            keys: |_, r, out| {
                if !r.given_k.is_empty() {
                    out.extend(communes(r).map(|c| key(&[sym(r.family_k), sym(r.given_k), c])));
                }
            },
        },
        BlockingRule {
            name: "commune+year+sex+initial",
            order: Order::Name,
            keys: |t, r, out| {
                if let (Some(y), Some(i)) = (year(r), initial(t, r.given_k)) {
                    out.extend(communes(r).map(|c| key(&[c, y, sex(r), i])));
                }
            },
        },
        BlockingRule {
            name: "commune+day+month+sex",
            order: Order::Name,
            keys: |_, r, out| {
                if let Some(d) = r.birth_date.and_then(|d| d.full()) {
                    let (x, y) = (d.day(), d.month() as u8);
                    let (lo, hi) = (u64::from(x.min(y)), u64::from(x.max(y)));
                    out.extend(communes(r).map(|c| key(&[c, lo, hi, sex(r)])));
                }
            },
        },
        BlockingRule {
            name: "family+date",
            order: Order::Name,
            keys: |_, r, out| {
                if let Some([y, lo, hi]) = date_key(r)
                    && !r.family_k.is_empty()
                {
                    out.push(key(&[sym(r.family_k), y, lo, hi]));
                }
            },
        },
        BlockingRule {
            name: "address numbers",
            order: Order::Name,
            keys: |t, r, out| {
                let mut parts: Vec<u64> = vec![0];
                parts.extend(
                    r.address_tokens
                        .iter()
                        .filter(|(s, _)| t.get(*s).bytes().all(|b| b.is_ascii_digit()))
                        .map(|(s, _)| sym(*s)),
                );
                if parts.len() >= 3 {
                    for c in communes(r) {
                        parts[0] = c;
                        out.push(key(&parts));
                    }
                }
            },
        },
        BlockingRule {
            name: "name+address word",
            order: Order::Name,
            keys: |t, r, out| {
                for c in communes(r) {
                    for w in r.address_rare.iter().filter(|w| !w.is_empty()) {
                        if let Some(i) = initial(t, r.given_k).filter(|_| !r.family_k.is_empty()) {
                            out.push(key(&[0, sym(r.family_k), i, c, sym(*w)]));
                        }
                        if let Some(i) = initial(t, r.family_k).filter(|_| !r.given_k.is_empty()) {
                            out.push(key(&[1, sym(r.given_k), i, c, sym(*w)]));
                        }
                    }
                }
            },
        },
        BlockingRule {
            name: "middle+given+commune",
            order: Order::Date,
            keys: |_, r, out| {
                if !r.middle_k.is_empty() && !r.given_k.is_empty() {
                    out.extend(communes(r).map(|c| key(&[sym(r.middle_k), sym(r.given_k), c])));
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
    /// Pairs of the oversized blocks beyond each record's window: held by the blocks, not compared.
    pub uncompared: usize,
}

/// The result of blocking.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockingStats {
    pub rules: Vec<RuleStats>,
    /// Distinct candidate pairs.
    pub pairs: usize,
    /// All rules' pairs of oversized blocks left uncompared (see [`RuleStats::uncompared`]).
    pub uncompared: usize,
}

/// Candidate pairs (`a < b`, sorted, each once) and how they were found, packed one to a 64-bit
/// word: `a`, `b` and the bits of the rules that proposed the pair (bit `i` for `rules[i]`). One
/// word a pair is what the largest runs need: the pairs are the largest structure of a linkage.
#[derive(Debug, Clone)]
pub struct Candidates {
    packed: Vec<u64>,
    /// Bits of a record number in a packed pair.
    width: u32,
    /// Bits of the rules, the lowest of the word.
    rule_bits: u32,
    pub stats: BlockingStats,
}

impl Candidates {
    /// Number of distinct candidate pairs.
    pub fn len(&self) -> usize {
        self.packed.len()
    }

    pub fn is_empty(&self) -> bool {
        self.packed.is_empty()
    }

    /// Pair number `i`.
    pub fn pair(&self, i: usize) -> (u32, u32) {
        self.unpack(self.packed[i])
    }

    /// The pairs in order.
    pub fn pairs(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.packed.iter().map(|&x| self.unpack(x))
    }

    /// The packed pairs, to be shared out in parts and read with [`Candidates::unpack`].
    pub fn packed(&self) -> &[u64] {
        &self.packed
    }

    /// The pair of a packed word.
    pub fn unpack(&self, x: u64) -> (u32, u32) {
        let pair = x >> self.rule_bits;
        ((pair >> self.width) as u32, (pair & ((1 << self.width) - 1)) as u32)
    }

    /// Whether rule number `rule` proposed pair number `i`.
    pub fn proposed_by(&self, i: usize, rule: usize) -> bool {
        self.packed[i] & (1 << rule) != 0
    }
}

/// Bits that hold a record number below `n`.
fn index_bits(n: usize) -> u32 {
    (usize::BITS - n.saturating_sub(1).leading_zeros()).max(1)
}

/// The largest linkage run [`candidates`] packs with `rules` rules: two record numbers and the
/// rules' bits in 64 bits (with the 12 default rules, 67,108,864 records).
pub fn max_records(rules: usize) -> usize {
    1 << ((64 - rules as u32) / 2).min(32)
}

/// The union of the rules' pair lists (each `a << width | b`, sorted, each pair once), sorted:
/// the lists are moved into one (each pair shifted up and given its rule's bit), sorted in place on
/// all cores, and each run of one pair folded into one word with its rules' bits. Returns the
/// packed pairs and, for each list, the number of its pairs no earlier list has. At its largest
/// it holds the lists' pairs once (and one list twice, while it is moved).
fn union(lists: Vec<Vec<u64>>, rule_bits: u32) -> (Vec<u64>, Vec<usize>) {
    let mut first = vec![0usize; lists.len()];
    let mut all = Vec::with_capacity(lists.iter().map(Vec::len).sum());
    for (i, list) in lists.into_iter().enumerate() {
        all.extend(list.into_iter().map(|p| p << rule_bits | 1 << i));
    }
    super::par::sort_unstable(&mut all);
    // A pair's later words fold their rule bits into its first one.
    all.dedup_by(|later, first| {
        *later >> rule_bits == *first >> rule_bits && {
            *first |= *later;
            true
        }
    });
    let mask = (1u64 << rule_bits) - 1;
    for x in &all {
        first[(x & mask).trailing_zeros() as usize] += 1;
    }
    (all, first)
}

/// Applies the rules to the records and returns the distinct candidate pairs.
pub fn candidates(prepared: &Prepared, rules: &[BlockingRule], config: &BlockingConfig) -> Candidates {
    let (strings, records) = (&prepared.strings, &prepared.records);
    assert!(rules.len() <= 16, "at most 16 blocking rules");
    assert!(
        records.len() <= max_records(rules.len()),
        "too many records for one linkage run: {} (at most {})",
        records.len(),
        max_records(rules.len())
    );
    let width = index_bits(records.len());
    // Whether each record is a registry one, compactly (read for every pair proposed).
    let registry: Vec<bool> = records.iter().map(|r| r.origin == Origin::Registry).collect();
    let skip_registry = !config.registry_pairs && registry.iter().any(|&r| r);
    let mut lists: Vec<Vec<u64>> = Vec::with_capacity(rules.len());
    let mut stats = BlockingStats::default();
    let mut keys = Vec::new();
    let mut members: Vec<u32> = Vec::new();
    for rule in rules {
        // Each record under each of its keys, sorted by key: a block is a run of one key, its
        // records in input order.
        let mut keyed: Vec<(u64, u32)> = Vec::with_capacity(records.len());
        for (i, r) in records.iter().enumerate() {
            keys.clear();
            (rule.keys)(strings, r, &mut keys);
            keys.sort_unstable();
            keys.dedup();
            keyed.extend(keys.iter().map(|&k| (k, i as u32)));
        }
        keyed.sort_unstable();
        let blocks = || keyed.chunk_by(|x, y| x.0 == y.0).filter(|b| b.len() > 1);
        let mut s =
            RuleStats { rule: rule.name, blocks: 0, oversized_blocks: 0, pairs: 0, new_pairs: 0, uncompared: 0 };
        let reach = |n: usize| if n > config.max_block { config.window } else { n };
        // Each pair of a block of n records within reach r of each other, counted to allocate once.
        let most: usize =
            blocks().map(|m| (0..m.len()).map(|i| reach(m.len()).min(m.len() - 1 - i)).sum::<usize>()).sum();
        let mut found: Vec<u64> = Vec::with_capacity(most);
        for block in blocks() {
            s.blocks += 1;
            members.clear();
            members.extend(block.iter().map(|&(_, i)| i));
            if members.len() > config.max_block {
                s.oversized_blocks += 1;
                let name = |i: u32| strings.get(records[i as usize].full_f);
                let date = |i: u32| date_order(&records[i as usize]);
                match rule.order {
                    Order::Name => {
                        members.sort_by(|&a, &b| name(a).cmp(name(b)).then(date(a).cmp(&date(b))).then(a.cmp(&b)))
                    }
                    Order::Date => {
                        members.sort_by(|&a, &b| date(a).cmp(&date(b)).then(name(a).cmp(name(b))).then(a.cmp(&b)))
                    }
                }
            }
            let (n, reach) = (members.len(), reach(members.len()));
            if n > config.max_block {
                let compared: usize = (0..n).map(|i| reach.min(n - 1 - i)).sum();
                s.uncompared += n * (n - 1) / 2 - compared;
            }
            for (i, &a) in members.iter().enumerate() {
                for &b in members.iter().skip(i + 1).take(reach) {
                    if skip_registry && registry[a as usize] && registry[b as usize] {
                        continue;
                    }
                    let (lo, hi) = if a < b { (a, b) } else { (b, a) };
                    found.push(u64::from(lo) << width | u64::from(hi));
                }
            }
        }
        drop(keyed);
        found.sort_unstable();
        found.dedup();
        s.pairs = found.len();
        lists.push(found);
        stats.rules.push(s);
    }
    let rule_bits = rules.len() as u32;
    let (packed, first) = union(lists, rule_bits);
    for (s, new_pairs) in stats.rules.iter_mut().zip(first) {
        s.new_pairs = new_pairs;
    }
    stats.pairs = packed.len();
    stats.uncompared = stats.rules.iter().map(|r| r.uncompared).sum();
    Candidates { packed, width, rule_bits, stats }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::date::PartialDate;
    use crate::intake::linkage::LinkRecord;

    /// 300 namesakes born the same year in one commune, one of them recorded twice: the
    /// name + year block is sorted by date, so the two records of one person are neighbours and
    /// paired, while each record takes part in at most `2 × window` of the rule's pairs.
    #[test]
    fn an_oversized_block_pairs_each_record_with_its_neighbours_only() {
        let person = |day: usize| LinkRecord {
            origin: Origin::Batch,
            family: "Nguyễn".into(),
            middle: ["Văn", "Thị", "Đức"][day % 3].into(),
            given: "An".into(),
            birth_date: PartialDate::parse(&format!("1990-{:02}-{:02}", day % 12 + 1, day % 28 + 1)).ok(),
            sex: Some(crate::id::Sex::Male),
            commune_key: Some(format!("2025:{}", ["00004", "00008"][day % 2])),
            ..LinkRecord::blank(Origin::Batch)
        };
        let mut records: Vec<LinkRecord> = (0..300).map(person).collect();
        let mut copy = records[137].clone();
        copy.middle.clear();
        records.push(copy);
        let prepared = Prepared::new(&records);
        let config = BlockingConfig::default();
        let rule = default_rules().into_iter().find(|r| r.name == "name+year").unwrap();
        let found = candidates(&prepared, &[rule], &config);
        assert!(found.pairs().any(|p| p == (137, 300)), "the two records of one person are paired");
        let n = records.len();
        assert_eq!(found.stats.rules[0].oversized_blocks, 1);
        assert!(found.len() <= n * config.window, "{} pairs", found.len());
        let mut per_record = vec![0usize; n];
        for (a, b) in found.pairs() {
            per_record[a as usize] += 1;
            per_record[b as usize] += 1;
        }
        assert!(per_record.iter().all(|&k| k <= 2 * config.window), "{per_record:?}");
        // The block's other pairs are counted for the prior, not compared.
        assert_eq!(found.stats.uncompared + found.len(), n * (n - 1) / 2);
        // All-to-all, as a block within the cap is compared.
        let wide = BlockingConfig { max_block: 1000, ..config };
        let all = candidates(&prepared, &[rule], &wide);
        assert_eq!((all.len(), all.stats.uncompared), (n * (n - 1) / 2, 0));
    }

    #[test]
    fn the_union_of_sorted_lists_is_sorted_and_knows_who_proposed_each_pair() {
        let (packed, first) = super::union(vec![vec![1, 3, 5, 9], vec![2, 3, 9, 10], vec![], vec![3, 11]], 4);
        let unpacked: Vec<(u64, u64)> = packed.iter().map(|x| (x >> 4, x & 15)).collect();
        assert_eq!(unpacked, [(1, 1), (2, 2), (3, 0b1011), (5, 1), (9, 3), (10, 2), (11, 8)]);
        assert_eq!(first, [4, 2, 0, 1]);
        assert_eq!(super::union(vec![vec![], vec![7 << 20 | 9]], 2), (vec![(7 << 20 | 9) << 2 | 2], vec![0, 1]));
        assert!(super::union(vec![], 0).0.is_empty());
        // Enough pairs to be sorted on several threads, in lists that overlap.
        let lists: Vec<Vec<u64>> = (1..4u64).map(|k| (0..200_000u64).map(|x| x * k).collect()).collect();
        let (packed, first) = super::union(lists, 3);
        let mut expected: Vec<u64> = (0..200_000u64).flat_map(|x| [x, x * 2, x * 3]).collect();
        expected.sort_unstable();
        expected.dedup();
        assert_eq!(packed.iter().map(|x| x >> 3).collect::<Vec<_>>(), expected);
        assert_eq!(first.iter().sum::<usize>(), expected.len());
        assert_eq!(packed[1], 1 << 3 | 0b001, "1 is in the first list only");
        assert_eq!(packed[6], 6 << 3 | 0b111, "6 = 6 × 1 = 3 × 2 = 2 × 3");
    }

    #[test]
    fn pairs_pack_two_record_numbers_and_the_rules_into_one_word() {
        assert_eq!((index_bits(0), index_bits(1), index_bits(2), index_bits(3), index_bits(1 << 20)), (1, 1, 1, 2, 20));
        assert_eq!(max_records(12), 1 << 26);
        assert_eq!(max_records(16), 1 << 24);
        let c = Candidates {
            packed: vec![((5 << 20 | 1_000_000) << 12) | 0b1000_0000_0001],
            width: 20,
            rule_bits: 12,
            stats: BlockingStats::default(),
        };
        assert_eq!(c.pair(0), (5, 1_000_000));
        assert!(c.proposed_by(0, 0) && c.proposed_by(0, 11) && !c.proposed_by(0, 1));
    }
}
