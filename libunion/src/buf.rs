//! Path buffers and byte-path helpers: the union core's (`lpmx_union::path`).

pub use lpmx_union::path::{Buf, CAPACITY, cstr, is_under, starts_with};
