//! Gzip decoding throughput.
#![allow(missing_docs)]
fn main() {}
