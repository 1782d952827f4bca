//! The distinct strings of a linkage run, each stored once and named by a [`Sym`] (4 bytes).
//!
//! A large batch repeats few values many times — some hundreds of family names, some thousands of
//! given and middle names and their phonetic keys, a few thousand communes, the address words —
//! so a record's comparison features hold numbers into one table instead of a separately
//! allocated string each, and equal strings compare as equal numbers. The table is filled by
//! several threads at once ([`Interner`], sharded by hash), then frozen for reading ([`Strings`]).

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use hashbrown::HashTable;

/// A string of a [`Strings`] table. The empty string is [`Sym::EMPTY`] and is never stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sym(u32);

impl Sym {
    pub const EMPTY: Sym = Sym(u32::MAX);

    pub fn is_empty(self) -> bool {
        self == Sym::EMPTY
    }

    /// The number, for hashing into blocking keys (equal strings, equal numbers; the numbers
    /// themselves depend on the order strings arrived in, so nothing is ordered by them).
    pub fn raw(self) -> u32 {
        self.0
    }
}

const SHARD_BITS: u32 = 4;
const SHARDS: usize = 1 << SHARD_BITS;
/// Strings start at multiples of this many bytes, so that a [`Sym`]'s remaining 28 bits name
/// any start in the first GiB of a shard's text.
const ALIGN: usize = 4;
/// The bytes a shard's text may fill (16 GiB over all shards: far above what the largest run
/// [`crate::intake::blocking::max_records`] allows brings).
const SHARD_CAPACITY: usize = ALIGN << (32 - SHARD_BITS);

/// One shard's strings, back to back: each is its length (ASCII digits of base 64, most
/// significant first, bit 6 set on every digit but the last) followed by its text, starting at a
/// multiple of [`ALIGN`]. A [`Sym`] names the start, so reading a string touches one place in
/// memory (a length and its text side by side), not a table of ends and then the text.
#[derive(Default)]
struct Column {
    bytes: String,
    count: usize,
}

impl Column {
    fn get(&self, local: u32) -> &str {
        let b = self.bytes.as_bytes();
        let mut i = local as usize * ALIGN;
        let mut len = 0usize;
        loop {
            let digit = b[i];
            i += 1;
            len = len << 6 | usize::from(digit & 0x3F);
            if digit & 0x40 == 0 {
                break;
            }
        }
        &self.bytes[i..i + len]
    }

    /// Stores `s` (at the next multiple of [`ALIGN`]), returning its number in this shard, or
    /// `None` when it would end beyond `capacity` bytes (nothing stored then).
    fn push(&mut self, s: &str, capacity: usize) -> Option<u32> {
        let start = self.bytes.len().next_multiple_of(ALIGN);
        if start + s.len() + 8 > capacity {
            return None;
        }
        while self.bytes.len() < start {
            self.bytes.push('\0');
        }
        let mut digits = [0u8; 11];
        let (mut n, mut v) = (0, s.len());
        loop {
            digits[n] = (v & 0x3F) as u8;
            n += 1;
            v >>= 6;
            if v == 0 {
                break;
            }
        }
        for k in (0..n).rev() {
            self.bytes.push(char::from(digits[k] | if k > 0 { 0x40 } else { 0 }));
        }
        self.bytes.push_str(s);
        self.count += 1;
        Some((start / ALIGN) as u32)
    }
}

#[derive(Default)]
struct Shard {
    index: HashTable<u32>,
    column: Column,
}

fn hasher() -> foldhash::fast::FixedState {
    foldhash::fast::FixedState::with_seed(0x6461_6e63_7500)
}

/// The table while it is being filled, from any number of threads.
pub struct Interner {
    shards: Vec<Mutex<Shard>>,
    hasher: foldhash::fast::FixedState,
    /// The bytes each shard's text may fill ([`SHARD_CAPACITY`]; less in tests).
    capacity: usize,
    /// Whether a string found no room: [`Interner::freeze`] then refuses the table.
    full: AtomicBool,
}

/// A run brought more distinct text than a string table holds (16 GiB).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableFull;

impl std::fmt::Display for TableFull {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let gib = (SHARD_CAPACITY * SHARDS) >> 30;
        write!(
            f,
            "the records of one linkage run hold more distinct text than its string table takes ({gib} GiB): \
             split the file / các bản ghi của một lần đối chiếu có quá nhiều chuỗi khác nhau (tối đa {gib} GiB): \
             hãy chia nhỏ tệp"
        )
    }
}

impl std::error::Error for TableFull {}

impl Default for Interner {
    fn default() -> Self {
        Self::new()
    }
}

impl Interner {
    pub fn new() -> Self {
        Self::with_capacity(SHARD_CAPACITY)
    }

    fn with_capacity(capacity: usize) -> Self {
        Interner {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: hasher(),
            capacity: capacity.min(SHARD_CAPACITY),
            full: AtomicBool::new(false),
        }
    }

    /// The string's number, storing the string if it is new. When the table is full, a new
    /// string gets [`Sym::EMPTY`] and the table is marked: [`Interner::freeze`] refuses it, so
    /// no linkage runs on a table that lost strings.
    pub fn intern(&self, s: &str) -> Sym {
        if s.is_empty() {
            return Sym::EMPTY;
        }
        let hash = self.hasher.hash_one(s);
        let shard = (hash >> (64 - SHARD_BITS)) as u32;
        // A poisoned shard (a thread panicked holding it) is still a consistent table: each
        // insertion completes before the lock is released.
        let mut guard = self.shards[shard as usize].lock().unwrap_or_else(PoisonError::into_inner);
        let Shard { index, column } = &mut *guard;
        let local = match index.find(hash, |&l| column.get(l) == s) {
            Some(&l) => l,
            None => {
                let Some(l) = column.push(s, self.capacity) else {
                    self.full.store(true, Ordering::Relaxed);
                    return Sym::EMPTY;
                };
                let hasher = &self.hasher;
                index.insert_unique(hash, l, |&x| hasher.hash_one(column.get(x)));
                l
            }
        };
        Sym(local << SHARD_BITS | shard)
    }

    /// The table for reading (the hash index is dropped), unless a string found no room.
    pub fn freeze(self) -> Result<Strings, TableFull> {
        if self.full.load(Ordering::Relaxed) {
            return Err(TableFull);
        }
        Ok(Strings {
            columns: self
                .shards
                .into_iter()
                .map(|m| m.into_inner().unwrap_or_else(PoisonError::into_inner).column)
                .collect(),
        })
    }
}

/// The strings of a linkage run, read by [`Sym`].
pub struct Strings {
    columns: Vec<Column>,
}

impl std::fmt::Debug for Strings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Strings({} distinct)", self.len())
    }
}

impl Strings {
    /// The string a [`Sym`] of this table stands for.
    pub fn get(&self, s: Sym) -> &str {
        if s.is_empty() {
            return "";
        }
        self.columns[(s.0 & (SHARDS as u32 - 1)) as usize].get(s.0 >> SHARD_BITS)
    }

    /// Distinct strings stored.
    pub fn len(&self) -> usize {
        self.columns.iter().map(|c| c.count).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_strings_get_one_number_from_any_thread() {
        let interner = Interner::new();
        let words: Vec<String> = (0..20_000).map(|i| format!("w{}", i % 5_000)).collect();
        let syms: Vec<Vec<Sym>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|t| {
                    let (interner, words) = (&interner, &words);
                    s.spawn(move || words.iter().skip(t).step_by(4).map(|w| interner.intern(w)).collect::<Vec<_>>())
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(interner.intern(""), Sym::EMPTY);
        let again = interner.intern("w42");
        let strings = interner.freeze().unwrap();
        assert_eq!(strings.len(), 5_000);
        assert_eq!(strings.get(again), "w42");
        assert_eq!(strings.get(Sym::EMPTY), "");
        for (t, syms) in syms.iter().enumerate() {
            for (k, &sym) in syms.iter().enumerate() {
                let word = &words[t + 4 * k];
                assert_eq!(strings.get(sym), word);
            }
        }
        // Vietnamese text and one-byte strings round-trip too.
        let interner = Interner::new();
        let (a, b, c) = (interner.intern("Nguyễn"), interner.intern("a"), interner.intern("Nguyễn"));
        assert_eq!(a, c);
        assert_ne!(a, b);
        let strings = interner.freeze().unwrap();
        assert_eq!((strings.get(a), strings.get(b)), ("Nguyễn", "a"));
    }

    #[test]
    fn strings_of_every_length_class_read_back() {
        // Lengths around each added digit of the length prefix, and text with NUL and non-ASCII.
        let interner = Interner::new();
        let texts: Vec<String> = [1, 2, 3, 62, 63, 64, 65, 4095, 4096, 4097, 262_143, 262_144, 300_001]
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                let mut t: String = std::iter::repeat_n(char::from(b'a' + i as u8), n).collect();
                t.push_str(if i % 2 == 0 { "\0ễ" } else { "đ" });
                t
            })
            .collect();
        let syms: Vec<Sym> = texts.iter().map(|t| interner.intern(t)).collect();
        assert_eq!(texts.iter().map(|t| interner.intern(t)).collect::<Vec<_>>(), syms);
        let strings = interner.freeze().unwrap();
        assert_eq!(strings.len(), texts.len());
        for (t, &s) in texts.iter().zip(&syms) {
            assert_eq!(strings.get(s), t);
        }
    }

    #[test]
    fn a_full_table_is_refused_not_read_with_strings_missing() {
        // Shards of 64 bytes: a few short strings each.
        let interner = Interner::with_capacity(64);
        let words: Vec<String> = (0..200).map(|i| format!("word number {i}")).collect();
        let syms: Vec<Sym> = words.iter().map(|w| interner.intern(w)).collect();
        assert!(syms.iter().any(|s| s.is_empty()), "some strings found no room");
        let stored = syms.iter().position(|s| !s.is_empty()).expect("the first strings of a shard fit");
        assert_eq!(interner.intern(&words[stored]), syms[stored], "strings stored before stay found");
        let refused = interner.freeze().expect_err("a table that lost strings is refused");
        assert!(refused.to_string().contains("split the file"), "{refused}");
        // Room for all: accepted.
        let roomy = Interner::with_capacity(1 << 20);
        let syms: Vec<Sym> = words.iter().map(|w| roomy.intern(w)).collect();
        let strings = roomy.freeze().unwrap();
        assert!(syms.iter().zip(&words).all(|(&s, w)| strings.get(s) == w));
    }
}
