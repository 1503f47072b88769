//! Importing WeChat answers (`{"list":[…]}`) into the statistics store.

use datacube_api::row::{parse_list, ListError};
use datacube_api::Endpoint;
use datacube_store::{Store, StoreError, UpsertReport};

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

/// Validates every row of `body` and upserts them in one transaction: all rows or none.
/// Importing the same body twice changes nothing.
pub async fn import_body(
    store: &Store,
    appid: &str,
    endpoint: Endpoint,
    body: &[u8],
) -> Result<UpsertReport, ImportError> {
    let rows =
        parse_list(endpoint, body).map_err(|error| ImportError::Invalid { endpoint, error })?;
    Ok(store.upsert_rows(appid, endpoint, rows).await?)
}
