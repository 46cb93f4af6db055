//! The writable layer's side files, beside `upper/` in the container's
//! directory:
//!
//! ```text
//! upper.whiteouts  what the container deleted from the image: `W path` (a
//!                  path and all below it) and `O path` (a directory made
//!                  again: the image's entries below it are hidden), one per
//!                  line, paths relative to `/`
//! upper.owners     fake root's append-only log, a line per change:
//!                  `INO UID GID MODE RDEV` for a file of the writable layer
//!                  (by inode, so renames and hard links keep it; MODE is the
//!                  whole st_mode, type included, or 0 for the file's own),
//!                  `INO -` when the file is gone; the last line for an
//!                  inode wins
//! upper.gen        the change counters, five u64 every process of the
//!                  container maps shared (see `Counter`); also the lock
//!                  that writers of upper.whiteouts take
//! upper.empty      an empty directory, mode 0555 (see `EMPTY`)
//! upper.libs/      the container's library directory (lpmx-core's
//!                  `libraries`), valid while its `.stamp` holds (`stamp`)
//! ```

/// The suffixes that name the side files after the writable layer's path.
pub const WHITEOUTS: &[u8] = b".whiteouts";
pub const OWNERS: &[u8] = b".owners";
pub const COUNTERS: &[u8] = b".gen";
/// An empty directory no one may write to (`upper.empty`), made by
/// lpmx-exec: what a container shows where a bind's path needs a directory
/// the container does not have.
pub const EMPTY: &[u8] = b".empty";
/// The container's library directory.
pub const LIBS: &[u8] = b".libs";

/// The stamp of the container's library directory (`upper.libs/.stamp`):
/// what it was built from, one `PATH<TAB>TIME` line per file, TIME the
/// file's modification time (`SECONDS.NANOSECONDS`, or `-` for a missing
/// file). The directory is valid while every line holds.
pub mod stamp {
    /// The stamp's name in the library directory.
    pub const NAME: &str = ".stamp";
    /// The TIME of a missing file.
    pub const MISSING: &[u8] = b"-";
    /// The longest TIME: 20 digits, a dot, 9 digits.
    pub const TIME_LEN: usize = 30;

    /// The `(PATH, TIME)` of each line of `text`; `None` for a line
    /// without a tab (no stamp lpmx-exec writes).
    pub fn lines(text: &[u8]) -> impl Iterator<Item = Option<(&[u8], &[u8])>> {
        text.split(|&b| b == b'\n')
            .filter(|line| !line.is_empty())
            .map(|line| {
                let tab = line.iter().position(|&b| b == b'\t')?;
                Some((&line[..tab], &line[tab + 1..]))
            })
    }

    /// TIME for a file modified at `seconds`.`nanos` (`None`: missing).
    pub fn time(modified: Option<(i64, i64)>, out: &mut [u8; TIME_LEN]) -> &[u8] {
        let Some((seconds, nanos)) = modified else {
            return MISSING;
        };
        let mut len = 0;
        let mut put = |bytes: &[u8]| {
            out[len..len + bytes.len()].copy_from_slice(bytes);
            len += bytes.len();
        };
        let mut digits = [0u8; 20];
        if seconds < 0 {
            put(b"-");
        }
        put(super::decimal(seconds.unsigned_abs(), &mut digits));
        put(b".");
        // Below 10^9 from any stat; kept so whatever a caller passes.
        put(super::decimal(
            nanos.unsigned_abs() % 1_000_000_000,
            &mut digits,
        ));
        &out[..len]
    }

    /// Whether `time` (a line's TIME) says the file was modified at
    /// `modified` (`None`: missing).
    pub fn holds(time_field: &[u8], modified: Option<(i64, i64)>) -> bool {
        let mut out = [0u8; TIME_LEN];
        time(modified, &mut out) == time_field
    }
}

/// What a name of a file being copied into the writable layer carries,
/// after the file's own name and before a random suffix: each copy is
/// made apart and appears under the file's name, whole, only if no other
/// process's copy got there first.
pub const COPY_UP_TEMP: &[u8] = b".lpmx-copy-up.";

/// Whether `name` (one component) is a copy still being made.
pub fn is_copy_up_temp(name: &[u8]) -> bool {
    name.windows(COPY_UP_TEMP.len()).any(|w| w == COPY_UP_TEMP)
}

/// A whiteouts line's mark: the path and all below it are deleted.
pub const DELETED: u8 = b'W';
/// A whiteouts line's mark: a directory made again.
pub const OPAQUE: u8 = b'O';

/// One line of `upper.whiteouts`: its path and whether it is opaque;
/// None for a line that is neither.
pub fn whiteout(line: &[u8]) -> Option<(&[u8], bool)> {
    match line {
        [DELETED, b' ', path @ ..] => Some((path, false)),
        [OPAQUE, b' ', path @ ..] => Some((path, true)),
        _ => None,
    }
}

/// Every whiteout of an `upper.whiteouts` file's text, in file order.
pub fn whiteouts(text: &[u8]) -> impl Iterator<Item = (&[u8], bool)> {
    text.split(|&b| b == b'\n').filter_map(whiteout)
}

/// The slots of `upper.gen`. A writer bumps only the one it changed, so
/// most writes invalidate nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Counter {
    /// The names in the writable layer's root directory.
    Root = 0,
    /// `upper.whiteouts`.
    Whiteouts = 1,
    /// `upper.owners`.
    Owners = 2,
    /// A directory of the writable layer went (rmdir, rename).
    Dirs = 3,
    /// Writers between a change of the root's names or of the whiteouts
    /// and their bump of its counter: while not 0, no process trusts
    /// what it cached of them. (A file of four slots, from an older lpmx,
    /// grows to five when mapped.)
    Busy = 4,
    /// A name was made in the writable layer (a file, directory, link,
    /// node or socket, or renamed into it): what a process found missing
    /// there may be there now. Bumped after the name is made. (A file of
    /// five slots grows to six when mapped.)
    Made = 5,
}

/// The number of counters, and the file's size in bytes.
pub const COUNTER_SLOTS: usize = 6;
pub const COUNTER_BYTES: usize = COUNTER_SLOTS * 8;

/// What fake root recorded of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
    /// The whole `st_mode`, type included; 0: the file's own.
    pub mode: u32,
    /// The device number (Linux `dev_t` encoding) of a device node.
    pub rdev: u64,
}

/// The longest `upper.owners` line: five 20-digit numbers, four spaces and
/// the newline.
pub const OWNER_LINE: usize = 5 * 20 + 5;

fn number(field: &[u8]) -> Option<u64> {
    if field.is_empty() || field.len() > 20 {
        return None;
    }
    field.iter().try_fold(0u64, |n, &b| {
        b.is_ascii_digit()
            .then(|| n.checked_mul(10)?.checked_add(u64::from(b - b'0')))?
    })
}

/// One line of `upper.owners` (without its newline): the inode and its
/// record, None for `INO -`; a line that is neither is None too.
pub fn owner(line: &[u8]) -> Option<(u64, Option<Owner>)> {
    let mut fields = line.split(|&b| b == b' ');
    let ino = number(fields.next()?)?;
    let first = fields.next()?;
    if first == b"-" {
        return fields.next().is_none().then_some((ino, None));
    }
    let uid = u32::try_from(number(first)?).ok()?;
    let gid = u32::try_from(number(fields.next()?)?).ok()?;
    let mode = u32::try_from(number(fields.next()?)?).ok()?;
    let rdev = number(fields.next()?)?;
    if fields.next().is_some() {
        return None;
    }
    Some((
        ino,
        Some(Owner {
            uid,
            gid,
            mode,
            rdev,
        }),
    ))
}

/// The `upper.owners` line (with its newline) recording `record` for inode
/// `ino`, or its end with None.
pub fn owner_line<'o>(ino: u64, record: Option<&Owner>, out: &'o mut [u8; OWNER_LINE]) -> &'o [u8] {
    let mut len = 0;
    let mut put = |bytes: &[u8]| {
        out[len..len + bytes.len()].copy_from_slice(bytes);
        len += bytes.len();
    };
    let mut digits = [0u8; 20];
    put(decimal(ino, &mut digits));
    match record {
        None => put(b" -"),
        Some(r) => {
            for value in [
                u64::from(r.uid),
                u64::from(r.gid),
                u64::from(r.mode),
                r.rdev,
            ] {
                put(b" ");
                put(decimal(value, &mut digits));
            }
        }
    }
    put(b"\n");
    &out[..len]
}

fn decimal(mut value: u64, digits: &mut [u8; 20]) -> &[u8] {
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    &digits[at..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_lines_and_times_read_as_written() {
        let mut out = [0u8; stamp::TIME_LEN];
        assert_eq!(
            stamp::time(Some((1700000000, 5)), &mut out),
            b"1700000000.5"
        );
        assert_eq!(stamp::time(None, &mut out), b"-");
        assert_eq!(stamp::time(Some((-1, 0)), &mut out), b"-1.0");
        let max = stamp::time(Some((i64::MIN, 999_999_999)), &mut out).len();
        assert_eq!(max, stamp::TIME_LEN);
        assert!(stamp::holds(b"12.34", Some((12, 34))));
        assert!(!stamp::holds(b"12.34", Some((12, 3))));
        assert!(!stamp::holds(b"12.34", None));
        assert!(stamp::holds(b"-", None));
        let text = b"/a\t1.2\n/b\t-\n\n";
        let lines: std::vec::Vec<_> = stamp::lines(text).collect();
        assert_eq!(
            lines,
            [
                Some((&b"/a"[..], &b"1.2"[..])),
                Some((&b"/b"[..], &b"-"[..]))
            ]
        );
        assert_eq!(stamp::lines(b"no tab\n").next(), Some(None));
    }

    #[test]
    fn whiteout_lines_read_as_written() {
        let text = b"W usr/bin/x\nO etc/apt\n\nX junk\nW \n";
        let all: std::vec::Vec<_> = whiteouts(text).collect();
        assert_eq!(
            all,
            [
                (&b"usr/bin/x"[..], false),
                (&b"etc/apt"[..], true),
                (&b""[..], false)
            ]
        );
    }

    #[test]
    fn owner_lines_round_trip_even_for_the_largest_numbers() {
        let record = Owner {
            uid: u32::MAX,
            gid: 42,
            mode: 0o100644,
            rdev: u64::MAX,
        };
        let mut out = [0u8; OWNER_LINE];
        let line = owner_line(u64::MAX, Some(&record), &mut out);
        assert_eq!(line.last(), Some(&b'\n'));
        assert_eq!(
            owner(&line[..line.len() - 1]),
            Some((u64::MAX, Some(record)))
        );
        let gone = owner_line(7, None, &mut out);
        assert_eq!(gone, b"7 -\n");
        assert_eq!(owner(b"7 -"), Some((7, None)));
        assert_eq!(owner(b"7 1 2"), None);
        assert_eq!(owner(b"7 1 2 3 4 junk"), None);
        assert_eq!(owner(b"7 - x"), None);
        assert_eq!(owner(b"x 1 2 3 4"), None);
        assert_eq!(owner(b"7 1 2 3 99999999999999999999"), None);
        assert_eq!(owner(b"7 4294967296 2 3 4"), None);
    }
}
