//! Importing WeChat answers (`{"list":[…]}`) into the statistics store.

use crate::{Store, StoreError, UpsertReport};
use datacube_api::row::{parse_list, ListError, NewFields};
use datacube_api::Endpoint;

/// Why an import stored nothing.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The body does not fit the endpoint; nothing was stored.
    #[error("{endpoint} body refused, nothing stored: {error}")]
    Invalid {
        /// The endpoint it was meant for.
        endpoint: Endpoint,
        /// Which row and field are wrong.
        error: ListError,
    },
    /// The store failed; nothing was stored (the write is one transaction).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What an import stored, and the fields it kept that no shape lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Imported {
    /// Rows inserted, updated, unchanged.
    pub report: UpsertReport,
    /// Fields the endpoint's shape does not list, kept as sent (`url`, `details[].url`).
    pub new_fields: Vec<String>,
}

/// Validates every row of `body` and upserts them in one transaction: all rows or none.
/// Importing the same body twice changes nothing. A field no shape lists is kept where it
/// came, or refused with the whole body, as `new` says. Rows for an appid with no account are
/// kept for the account to come; rows for an account that is removed while they are
/// imported are refused ([`StoreError::AccountGone`]).
pub async fn import_body(
    store: &Store,
    appid: &str,
    endpoint: Endpoint,
    body: &[u8],
    new: NewFields,
) -> Result<Imported, ImportError> {
    let fence = store.account(appid).await?.map(|a| a.incarnation);
    // Up to 256 MiB of JSON to validate: CPU work, off the async threads.
    let owned = body.to_vec();
    let parsed = tokio::task::spawn_blocking(move || parse_list(endpoint, &owned, new))
        .await
        .map_err(|e| ImportError::Store(StoreError::Task(e.to_string())))?
        .map_err(|error| ImportError::Invalid { endpoint, error })?;
    let report = store
        .upsert_rows(appid, endpoint, parsed.rows, fence)
        .await?;
    Ok(Imported {
        report,
        new_fields: parsed.new_fields.into_iter().collect(),
    })
}
