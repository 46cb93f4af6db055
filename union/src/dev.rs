//! Linux device numbers (`dev_t`), as glibc's `gnu_dev_major`,
//! `gnu_dev_minor` and `gnu_dev_makedev` split and join them: for the
//! index's device nodes, the owners records and `struct statx`.

/// Splits a Linux `dev_t` into major and minor numbers.
pub fn split_dev(rdev: u64) -> (u32, u32) {
    let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
    let minor = (rdev & 0xff) | ((rdev >> 12) & !0xff);
    (major as u32, minor as u32)
}

/// Joins major and minor numbers into a Linux `dev_t`.
pub fn make_dev(major: u32, minor: u32) -> u64 {
    let (major, minor) = (u64::from(major), u64::from(minor));
    ((major & 0xfff) << 8) | ((major & !0xfff) << 32) | (minor & 0xff) | ((minor & !0xff) << 12)
}
