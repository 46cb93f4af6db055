//! The next definition of a libc function after libunion's own, found the
//! way `dlsym(RTLD_NEXT, name)` finds it, without `dlsym`.
//!
//! Before glibc 2.34 `dlsym` lives in `libdl.so.2`, so calling it made
//! libunion name libdl and every process in a container map it: 8 system
//! calls and its page faults per exec, a tenth of a launch. Instead the
//! loaded objects are walked with `dl_iterate_phdr` (libc's since glibc
//! 2.2.4), in the loader's order, and each one after libunion is searched
//! through its own hash table, as the loader does: the first defined,
//! global, default-version symbol of that name wins, and an IFUNC is
//! resolved by calling its resolver.

use core::ffi::{c_char, c_int, c_void};

#[repr(C)]
struct DlPhdrInfo {
    addr: usize,
    name: *const c_char,
    phdr: *const Phdr,
    phnum: u16,
}

#[repr(C)]
struct Phdr {
    kind: u32,
    flags: u32,
    offset: u64,
    vaddr: u64,
    paddr: u64,
    filesz: u64,
    memsz: u64,
    align: u64,
}

#[repr(C)]
struct Sym {
    name: u32,
    info: u8,
    other: u8,
    shndx: u16,
    value: u64,
    size: u64,
}

#[link(name = "c")]
unsafe extern "C" {
    fn dl_iterate_phdr(
        callback: unsafe extern "C" fn(*mut DlPhdrInfo, usize, *mut c_void) -> c_int,
        data: *mut c_void,
    ) -> c_int;
}

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const DT_NULL: u64 = 0;
const DT_HASH: u64 = 4;
const DT_STRTAB: u64 = 5;
const DT_SYMTAB: u64 = 6;
const DT_GNU_HASH: u64 = 0x6fff_fef5;
const DT_VERSYM: u64 = 0x6fff_fff0;
const STT_OBJECT: u8 = 1;
const STT_FUNC: u8 = 2;
const STT_GNU_IFUNC: u8 = 10;
const STB_GLOBAL: u8 = 1;
const STB_WEAK: u8 = 2;
const STB_GNU_UNIQUE: u8 = 10;
/// A version index's bit for a non-default (`name@VERSION`) definition.
const VERSYM_HIDDEN: u16 = 0x8000;

struct Search<'a> {
    name: &'a [u8],
    /// Whether the objects after libunion's are searched, or (a second
    /// pass) every object but libunion.
    after_self_only: bool,
    passed_self: bool,
    found: *mut c_void,
}

/// The next definition of `name` (NUL-terminated) after libunion's, or
/// null.
pub fn next(name: &[u8]) -> *mut c_void {
    let name = name.strip_suffix(b"\0").unwrap_or(name);
    let mut search = Search {
        name,
        after_self_only: true,
        passed_self: false,
        found: core::ptr::null_mut(),
    };
    // SAFETY: the callback reads what the loader hands it, for the call.
    unsafe { dl_iterate_phdr(visit, (&raw mut search).cast()) };
    if search.found.is_null() {
        // Loaded by dlopen (lpmx-exec does, RTLD_LOCAL), libunion comes
        // after libc; RTLD_NEXT then finds libc through libunion's own
        // dependencies.
        search.after_self_only = false;
        // SAFETY: as above.
        unsafe { dl_iterate_phdr(visit, (&raw mut search).cast()) };
    }
    search.found
}

/// One loaded object: libunion's own marks where the search starts.
unsafe extern "C" fn visit(info: *mut DlPhdrInfo, _: usize, data: *mut c_void) -> c_int {
    // SAFETY: dl_iterate_phdr passes a valid info and our search.
    let (info, search) = unsafe { (&*info, &mut *data.cast::<Search>()) };
    // SAFETY: the loader's program headers for this object.
    let phdrs = unsafe { core::slice::from_raw_parts(info.phdr, info.phnum as usize) };
    let here = next as *const () as usize;
    let is_self = phdrs.iter().any(|p| {
        let start = info.addr.wrapping_add(p.vaddr as usize);
        p.kind == PT_LOAD && (start..start + p.memsz as usize).contains(&here)
    });
    if is_self || (search.after_self_only && !search.passed_self) {
        search.passed_self |= is_self;
        return 0;
    }
    let Some(dynamic) = phdrs.iter().find(|p| p.kind == PT_DYNAMIC) else {
        return 0;
    };
    // SAFETY: the object's dynamic section, as loaded.
    let found = unsafe { lookup(info.addr, info.addr + dynamic.vaddr as usize, search.name) };
    if found.is_null() {
        0
    } else {
        search.found = found;
        1
    }
}

/// Looks `name` up in the object loaded at `base` with its dynamic
/// section at `dynamic`.
///
/// # Safety
/// `dynamic` is a loaded object's dynamic section.
unsafe fn lookup(base: usize, dynamic: usize, name: &[u8]) -> *mut c_void {
    let (mut strtab, mut symtab, mut gnu_hash, mut hash, mut versym) = (0, 0, 0, 0, 0);
    let mut entry = dynamic as *const [u64; 2];
    loop {
        // SAFETY: the dynamic section ends with DT_NULL.
        let [tag, value] = unsafe { *entry };
        // The loader turns these into addresses where it may write the
        // section (x86_64 glibc does); elsewhere they are offsets.
        let address = if (value as usize) < base {
            base + value as usize
        } else {
            value as usize
        };
        match tag {
            DT_NULL => break,
            DT_STRTAB => strtab = address,
            DT_SYMTAB => symtab = address,
            DT_GNU_HASH => gnu_hash = address,
            DT_HASH => hash = address,
            DT_VERSYM => versym = address,
            _ => {}
        }
        // SAFETY: within the section, before DT_NULL.
        entry = unsafe { entry.add(1) };
    }
    if strtab == 0 || symtab == 0 {
        return core::ptr::null_mut();
    }
    let table = Table {
        base,
        strtab: strtab as *const u8,
        symtab: symtab as *const Sym,
        versym: versym as *const u16,
    };
    // SAFETY: the object's own hash tables.
    let index = unsafe {
        if gnu_hash != 0 {
            table.find_gnu(gnu_hash as *const u32, name)
        } else if hash != 0 {
            table.find_sysv(hash as *const u32, name)
        } else {
            None
        }
    };
    match index {
        // SAFETY: a symbol the object defines.
        Some(i) => unsafe { table.address(i) },
        None => core::ptr::null_mut(),
    }
}

struct Table {
    base: usize,
    strtab: *const u8,
    symtab: *const Sym,
    versym: *const u16,
}

impl Table {
    /// Whether symbol `i` is a definition of `name` a lookup without a
    /// version takes.
    ///
    /// # Safety
    /// `i` indexes the symbol table.
    unsafe fn matches(&self, i: usize, name: &[u8]) -> bool {
        // SAFETY: i is in the table; names are NUL-terminated.
        let sym = unsafe { &*self.symtab.add(i) };
        let (kind, bind) = (sym.info & 0xf, sym.info >> 4);
        if sym.shndx == 0
            || sym.value == 0
            || !matches!(kind, STT_FUNC | STT_GNU_IFUNC | STT_OBJECT)
            || !matches!(bind, STB_GLOBAL | STB_WEAK | STB_GNU_UNIQUE)
        {
            return false;
        }
        if !self.versym.is_null() {
            // SAFETY: the version table has an entry per symbol.
            let version = unsafe { *self.versym.add(i) };
            // 0 is a local symbol; a hidden one is not the default.
            if version & !VERSYM_HIDDEN == 0 || version & VERSYM_HIDDEN != 0 {
                return false;
            }
        }
        // SAFETY: a NUL-terminated name in the string table.
        let candidate = unsafe { crate::buf::cstr(self.strtab.add(sym.name as usize).cast()) };
        candidate == name
    }

    /// Through the GNU hash table (every glibc library since 2006).
    ///
    /// # Safety
    /// `table` is this object's DT_GNU_HASH.
    unsafe fn find_gnu(&self, table: *const u32, name: &[u8]) -> Option<usize> {
        let hash = name
            .iter()
            .fold(5381u32, |h, &b| h.wrapping_mul(33).wrapping_add(b as u32));
        // SAFETY: the header, bloom filter, buckets and chains, in order.
        unsafe {
            let (buckets, symoffset, bloom_words) = (
                *table as usize,
                *table.add(1) as usize,
                *table.add(2) as usize,
            );
            if buckets == 0 {
                return None;
            }
            let bucket = table.add(4 + bloom_words * 2);
            let chain = bucket.add(buckets);
            let mut i = *bucket.add(hash as usize % buckets) as usize;
            if i < symoffset {
                return None;
            }
            loop {
                let link = *chain.add(i - symoffset);
                if (link | 1) == (hash | 1) && self.matches(i, name) {
                    return Some(i);
                }
                if link & 1 != 0 {
                    return None;
                }
                i += 1;
            }
        }
    }

    /// Through the System V hash table (objects linked without a GNU one).
    ///
    /// # Safety
    /// `table` is this object's DT_HASH.
    unsafe fn find_sysv(&self, table: *const u32, name: &[u8]) -> Option<usize> {
        let hash = name.iter().fold(0u32, |h, &b| {
            let h = (h << 4).wrapping_add(b as u32);
            (h ^ ((h & 0xf000_0000) >> 24)) & 0x0fff_ffff
        });
        // SAFETY: nbucket, nchain, the buckets, then the chains.
        unsafe {
            let buckets = *table as usize;
            if buckets == 0 {
                return None;
            }
            let bucket = table.add(2);
            let chain = bucket.add(buckets);
            let mut i = *bucket.add(hash as usize % buckets) as usize;
            while i != 0 {
                if self.matches(i, name) {
                    return Some(i);
                }
                i = *chain.add(i) as usize;
            }
        }
        None
    }

    /// Symbol `i`'s address, an IFUNC's resolved.
    ///
    /// # Safety
    /// `i` is a defined symbol of this object.
    unsafe fn address(&self, i: usize) -> *mut c_void {
        // SAFETY: as the caller says.
        let sym = unsafe { &*self.symtab.add(i) };
        let address = self.base + sym.value as usize;
        if sym.info & 0xf == STT_GNU_IFUNC {
            // SAFETY: an IFUNC's value is its resolver, called as the
            // loader calls it.
            let resolve: unsafe extern "C" fn() -> *mut c_void =
                unsafe { core::mem::transmute(address) };
            return unsafe { resolve() };
        }
        address as *mut c_void
    }
}
