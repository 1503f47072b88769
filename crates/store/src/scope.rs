//! What a write transaction locks, so that writers of different accounts never wait for each
//! other on PostgreSQL (`docs/postgres.md`, "How writes are ordered").
//!
//! Every write names its [`Scope`] when it begins: the accounts (or components) it writes, a
//! narrow name for what belongs to no account, or the whole store. On PostgreSQL the scope
//! becomes transaction-scoped advisory locks, taken in a fixed order — first [`GLOBAL`]
//! *shared* (the whole store takes it exclusively), then each key in ascending order — so
//! that two writers never wait for each other in a cycle. SQLite has one writer at a time
//! whatever the scope.
//!
//! The change log's numbers are the one thing every account shares: they are drawn at commit,
//! under [`CHANGES`] held to the end of the transaction (`crate::postgres`), so that numbers
//! are committed in the order they are drawn.

/// Every write takes this lock shared (the whole store: exclusively). It is the key of the
/// single write lock of versions before per-account locks ("datacube"): an older instance
/// still writing beside a newer one takes it exclusively, and so still excludes the newer
/// one's writers — a rolling upgrade never lets the two write at once.
pub(crate) const GLOBAL: i64 = 0x6461_7461_6375_6265;
/// Held while migrating at start (a session lock).
pub(crate) const MIGRATE: i64 = GLOBAL + 1;
/// Held from drawing change numbers to the commit.
pub(crate) const CHANGES: i64 = GLOBAL + 2;

/// Accounts a transaction locks one by one at most; a scope of more takes the whole store
/// instead (on PostgreSQL). Each advisory lock takes an entry of PostgreSQL's shared lock table
/// (`max_locks_per_transaction` × connections in all, 6,400 by default), which thousands of
/// accounts in one transaction would exhaust — for every session of the server. A bulk load
/// cuts its transactions at this many accounts ([`crate::bulk`]), so that it never comes to
/// that; a batch of live events of more accounts does.
pub(crate) const MOST_KEYS: usize = 64;

/// The locks of one write transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Scope {
    /// Keys to lock exclusively, ascending, without repeats.
    keys: Vec<i64>,
    /// The whole store: [`GLOBAL`] exclusively, no other key.
    whole: bool,
}

impl Scope {
    /// The writes of one account or component (they share one namespace of appids: an appid
    /// is one or the other).
    pub(crate) fn account(appid: &str) -> Scope {
        Scope::accounts([appid])
    }

    /// The writes of several accounts or components.
    pub(crate) fn accounts<'a>(appids: impl IntoIterator<Item = &'a str>) -> Scope {
        Scope::keyed(appids.into_iter().map(|a| key("appid", a)))
    }

    /// What belongs to no account, under a lock of its own (`view-clock`, `mirror:NAME`).
    pub(crate) fn named(name: &str) -> Scope {
        Scope::keyed([key("name", name)])
    }

    /// Rows no other writer writes (a run of `datacube sync` by its id): no key, only
    /// [`GLOBAL`] shared.
    pub(crate) fn own_rows() -> Scope {
        Scope::keyed([])
    }

    /// The whole store (clearing every account): waits for every other writer, and they for it.
    pub(crate) fn whole() -> Scope {
        Scope {
            keys: Vec::new(),
            whole: true,
        }
    }

    /// The writes of `mirror`'s runs (`datacube sync`, `serve --mirror`): its claims in turn.
    pub(crate) fn mirror(mirror: &str) -> Scope {
        Scope::named(&format!("mirror:{mirror}"))
    }

    /// `keys` locked one by one — or, past [`MOST_KEYS`], the whole store.
    fn keyed(keys: impl IntoIterator<Item = i64>) -> Scope {
        let mut keys: Vec<i64> = keys.into_iter().collect();
        keys.sort_unstable();
        keys.dedup();
        if keys.len() > MOST_KEYS {
            return Scope::whole();
        }
        Scope { keys, whole: false }
    }

    /// The keys locked exclusively, ascending.
    pub(crate) fn keys(&self) -> &[i64] {
        &self.keys
    }

    /// Whether this is the whole store.
    pub(crate) fn is_whole(&self) -> bool {
        self.whole
    }
}

/// The advisory lock key of `name` in `space`: 64 bits of its hash, in a namespace of
/// datacube's own (two names sharing a key only wait for each other, which is safe).
fn key(space: &str, name: &str) -> i64 {
    let mut h = xxhash_rust::xxh3::Xxh3::with_seed(GLOBAL as u64);
    h.update(space.as_bytes());
    h.update(&[0]);
    h.update(name.as_bytes());
    let k = h.digest() as i64;
    // Never one of the fixed keys.
    if (GLOBAL..=CHANGES).contains(&k) {
        k.wrapping_add(16)
    } else {
        k
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_sorted_once_each() {
        let s = Scope::accounts(["wxb", "wxa", "wxb"]);
        assert_eq!(s.keys().len(), 2);
        assert!(s.keys()[0] < s.keys()[1]);
        assert_eq!(Scope::accounts(["wxa", "wxb"]), s);
        assert_eq!(Scope::account("wxa").keys(), Scope::account("wxa").keys());
    }

    #[test]
    fn spaces_do_not_share_keys() {
        assert_ne!(Scope::account("x").keys(), Scope::named("x").keys());
        assert!(Scope::own_rows().keys().is_empty() && !Scope::own_rows().is_whole());
        assert!(Scope::whole().is_whole());
    }

    #[test]
    fn too_many_accounts_take_the_whole_store() {
        let names: Vec<String> = (0..=MOST_KEYS).map(|i| format!("wx{i}")).collect();
        assert!(Scope::accounts(names.iter().map(String::as_str)).is_whole());
        let fewer = Scope::accounts(names[..MOST_KEYS].iter().map(String::as_str));
        assert_eq!(fewer.keys().len(), MOST_KEYS);
        assert!(!fewer.is_whole());
    }
}
