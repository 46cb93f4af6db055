//! Where a container path lives: the writable layer, a layer of the
//! image, a bind, or nowhere yet.

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
/// Where `resolve` found a path.
pub enum Place {
    Upper,
    Lower(u16),
    /// Under a bind: a host file, seen as it is.
    Bind,
    /// Not there (the last component only): `host` is where the upper
    /// layer (or the bind) would create it.
    Missing,
}
