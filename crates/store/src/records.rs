//! What the store keeps and answers: accounts, components, grants, tokens, and the outcomes
//! of writes.

use datacube_api::secret::Secret;

/// An Official Account known to datacube. The secret is kept only as a hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRecord {
    /// `wx…`
    pub appid: String,
    /// The secret's hash (`datacube_api::account::hash_secret`; argon2id from older
    /// versions).
    pub secret_hash: String,
    /// Unverified accounts get 48001 from every datacube endpoint.
    pub verified: bool,
    /// Unix seconds (emulated clock).
    pub created_at: i64,
    /// Which incarnation of the appid this is: drawn by the store when the account is added
    /// (what is given is ignored), kept when its secret is replaced. A write begun for one
    /// incarnation is refused once it is gone ([`crate::StoreError::AccountGone`]).
    pub incarnation: i64,
}

/// Which API issued a token; the families are isolated from each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenKind {
    /// `GET /cgi-bin/token`: every call issues a new token.
    Basic,
    /// `POST /cgi-bin/stable_token`: the same token until 5 minutes before expiry.
    Stable,
    /// A third-party platform's `component_access_token` (`appid` is the component's).
    Component,
    /// An `authorizer_access_token`: a component acting for the account `appid`.
    Authorizer,
}

impl TokenKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            TokenKind::Basic => "basic",
            TokenKind::Stable => "stable",
            TokenKind::Component => "component",
            TokenKind::Authorizer => "authorizer",
        }
    }
    pub(crate) fn parse(s: &str) -> TokenKind {
        match s {
            "stable" => TokenKind::Stable,
            "component" => TokenKind::Component,
            "authorizer" => TokenKind::Authorizer,
            _ => TokenKind::Basic,
        }
    }
}

/// A third-party platform (component).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentRecord {
    /// Its appid.
    pub appid: String,
    /// Its AppSecret, hashed.
    pub secret_hash: String,
    /// The Token of its pushes (signatures).
    pub token: Secret,
    /// Its EncodingAESKey (43 characters).
    pub aes_key: Secret,
    /// Where tickets and authorization events are pushed (授权事件接收URL).
    pub event_url: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
}

/// An account's authorization of a component: the permission sets it granted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The component.
    pub component: String,
    /// The account (authorizer).
    pub authorizer: String,
    /// The `funcscope_category` ids granted, in the order given.
    pub sets: Vec<u32>,
    /// The `authorizer_refresh_token`; a new authorization replaces it.
    pub refresh_token: Secret,
    /// Unix seconds.
    pub auth_time: i64,
}

/// A stored access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    /// The token string.
    pub token: Secret,
    /// Whose it is.
    pub appid: String,
    /// Which API issued it.
    pub kind: TokenKind,
    /// Unix seconds.
    pub issued_at: i64,
    /// Unix seconds; from then on the token answers 42001.
    pub expires_at: i64,
    /// Unix seconds; from then on the token answers 40001 (superseded or force-refreshed).
    pub invalid_after: Option<i64>,
    /// For an authorizer token, the component acting for the account.
    pub component: Option<String>,
}

/// What a token is worth at a given moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenStatus {
    /// Usable.
    Valid,
    /// Replaced by a newer token and past the hand-over: 40001.
    Superseded,
    /// Past its lifetime: 42001.
    Expired,
}

impl TokenRecord {
    /// The token's status at `now`.
    pub fn status(&self, now: i64) -> TokenStatus {
        if self.invalid_after.is_some_and(|t| now >= t) {
            TokenStatus::Superseded
        } else if now >= self.expires_at {
            TokenStatus::Expired
        } else {
            TokenStatus::Valid
        }
    }
}

/// The answer of a token API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Issued {
    /// A token and its remaining lifetime in seconds.
    Token {
        /// The token.
        token: Secret,
        /// `expires_in`.
        expires_in: i64,
    },
    /// The daily quota is used up: 45009.
    QuotaExceeded,
}

/// How an import changed the store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpsertReport {
    /// Rows whose key was new.
    pub inserted: usize,
    /// Rows that replaced a different row with the same key.
    pub updated: usize,
    /// Rows identical to the stored ones.
    pub unchanged: usize,
}

/// What ingesting a batch of events did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestOutcome {
    /// For each event of the batch, in order: `true` if accepted, `false` if its id had been
    /// accepted before (a duplicate) or its account is in [`IngestOutcome::gone`].
    pub accepted: Vec<bool>,
    /// Accounts whose events were refused: removed (or removed and added again) before the
    /// batch was stored.
    pub gone: Vec<String>,
}

/// What a bulk load ([`Store::ingest_sorted`]) stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BulkOutcome {
    /// Events stored and counted.
    pub accepted: u64,
    /// Events whose id had been accepted before, or came earlier in the load: ignored.
    pub duplicates: u64,
    /// Events refused because their account was removed during the load.
    pub gone: u64,
}
