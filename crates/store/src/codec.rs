//! zstd compression of stored blobs (event chunks, large days of statistics rows), with one
//! compression and one decompression context per thread, reused: creating a context costs
//! more than compressing a small blob.

use std::cell::RefCell;

use crate::{Result, StoreError};

/// zstd level 1: about 1 GB/s here, and 5–12× smaller on datacube's data.
const LEVEL: i32 = 1;
/// No stored blob decompresses to more than this (a day's chunk of one account's events is
/// a few MB; the limit only refuses corrupt frames that claim absurd sizes).
const MAX_PLAIN: usize = 1 << 30;

thread_local! {
    static COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> = const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

/// Compresses `data` into a zstd frame that records its size.
pub(crate) fn compress(data: &[u8]) -> Result<Vec<u8>> {
    COMPRESSOR.with(|cell| {
        let mut cell = cell.borrow_mut();
        let c = match &mut *cell {
            Some(c) => c,
            none => none.insert(zstd::bulk::Compressor::new(LEVEL).map_err(io_err)?),
        };
        c.compress(data).map_err(io_err)
    })
}

/// Decompresses a frame made by [`compress`]; `what` names the blob in the error.
pub(crate) fn decompress(data: &[u8], what: &str) -> Result<Vec<u8>> {
    DECOMPRESSOR.with(|cell| {
        let mut cell = cell.borrow_mut();
        let d = match &mut *cell {
            Some(d) => d,
            none => none.insert(zstd::bulk::Decompressor::new().map_err(io_err)?),
        };
        d.decompress(data, MAX_PLAIN)
            .map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
    })
}

fn io_err(e: std::io::Error) -> StoreError {
    StoreError::Corrupt(format!("zstd: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_round_trip_and_corruption_is_an_error() {
        for data in [
            &b""[..],
            b"x",
            &b"{\"ref_date\":\"2024-01-01\"}".repeat(1000),
        ] {
            let packed = compress(data).unwrap();
            assert_eq!(decompress(&packed, "t").unwrap(), data);
        }
        let packed = compress(&b"abc".repeat(100)).unwrap();
        let err = decompress(&packed[..packed.len() - 2], "a chunk").unwrap_err();
        assert!(err.to_string().contains("a chunk"), "{err}");
    }
}
