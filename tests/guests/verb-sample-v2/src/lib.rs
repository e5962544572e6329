//! Test guest: `verb-sample` with version 2, uploaded over it to check that running calls keep version 1.

const VERSION: u32 = 2;

include!("../../verb-sample/src/sample.rs");
