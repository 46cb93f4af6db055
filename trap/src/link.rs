//! Linking libunion into a static program. A static program has no ELF
//! interpreter to load a preload library and no libc for it to call, so
//! the loader does both: it maps libunion.so as the interpreter would,
//! binds the few libc symbols libunion names to the loader's own
//! (`imports`), applies libunion's relocations and finds its entry point.
//! libunion needs nothing else: its work is raw system calls.

use lpmx_sys as sys;

use crate::exec::{map_elf, read_at};

const PT_DYNAMIC: u32 = 2;
const DT_NULL: usize = 0;
const DT_PLTRELSZ: usize = 2;
const DT_STRTAB: usize = 5;
const DT_SYMTAB: usize = 6;
const DT_RELA: usize = 7;
const DT_RELASZ: usize = 8;
const DT_JMPREL: usize = 23;
const DT_GNU_HASH: usize = 0x6fff_fef5;
const R_X86_64_NONE: u32 = 0;
const R_X86_64_64: u32 = 1;
const R_X86_64_GLOB_DAT: u32 = 6;
const R_X86_64_JUMP_SLOT: u32 = 7;
const R_X86_64_RELATIVE: u32 = 8;
const STB_WEAK: u8 = 2;

/// A shared library mapped and relocated in this process.
pub struct Library {
    bias: usize,
    symtab: usize,
    strtab: usize,
    gnu_hash: usize,
}

/// Why a library could not be linked.
pub enum Failure {
    /// As `exec::map_elf` and the relocations say.
    Bad(&'static [u8]),
    /// It needs a symbol `imports` does not have (its name).
    Missing(&'static [u8]),
    Open(i32),
}

fn word(at: usize) -> usize {
    // SAFETY: an address inside the mapped library, checked by the caller
    // to come from its own tables.
    unsafe { (at as *const usize).read_unaligned() }
}

fn c_bytes(at: usize) -> &'static [u8] {
    // SAFETY: a NUL-terminated name in the library's string table, mapped
    // for the process's life.
    unsafe { crate::exec::bytes(at as *const u8) }
}

impl Library {
    /// Maps the library at `path` and binds its undefined symbols to what
    /// `imports` gives (weak ones it lacks become 0).
    ///
    /// # Safety
    /// `path` is a C string naming a trusted x86_64 shared library (lpmx's
    /// own libunion.so): its relocations are applied as it states them.
    pub unsafe fn load(
        path: *const u8,
        imports: &dyn Fn(&[u8]) -> Option<usize>,
    ) -> Result<Library, Failure> {
        let fd = sys::openat(sys::AT_FDCWD, path, sys::O_CLOEXEC, 0).map_err(Failure::Open)? as i32;
        let mut head = [0u8; 1024];
        let n = read_at(fd, &mut head, 0).unwrap_or(0);
        let mut no_interp = [0u8; 4096];
        let mapped = map_elf(fd, &head[..n], &mut no_interp, None);
        let _ = sys::close(fd);
        let mapped = mapped.map_err(Failure::Bad)?;
        let bias = mapped.bias;
        let mut dynamic = 0;
        for i in 0..mapped.phnum {
            let h = mapped.phdr + 56 * i;
            // SAFETY: the program headers, mapped with the first segment.
            let kind = unsafe { (h as *const u32).read_unaligned() };
            if kind == PT_DYNAMIC {
                dynamic = bias + word(h + 16);
            }
        }
        if dynamic == 0 {
            return Err(Failure::Bad(b"no dynamic section"));
        }
        let (mut rela, mut rela_size, mut jmprel, mut jmprel_size) = (0, 0, 0, 0);
        let mut library = Library {
            bias,
            symtab: 0,
            strtab: 0,
            gnu_hash: 0,
        };
        let mut at = dynamic;
        loop {
            let (tag, value) = (word(at), word(at + 8));
            match tag {
                DT_NULL => break,
                DT_RELA => rela = bias + value,
                DT_RELASZ => rela_size = value,
                DT_JMPREL => jmprel = bias + value,
                DT_PLTRELSZ => jmprel_size = value,
                DT_SYMTAB => library.symtab = bias + value,
                DT_STRTAB => library.strtab = bias + value,
                DT_GNU_HASH => library.gnu_hash = bias + value,
                _ => {}
            }
            at += 16;
        }
        if library.symtab == 0 || library.strtab == 0 || library.gnu_hash == 0 {
            return Err(Failure::Bad(b"no symbol table"));
        }
        for (table, size) in [(rela, rela_size), (jmprel, jmprel_size)] {
            if table == 0 {
                continue;
            }
            for entry in (table..table + size).step_by(24) {
                library.relocate(word(entry), word(entry + 8), word(entry + 16), imports)?;
            }
        }
        Ok(library)
    }

    fn relocate(
        &self,
        offset: usize,
        info: usize,
        addend: usize,
        imports: &dyn Fn(&[u8]) -> Option<usize>,
    ) -> Result<(), Failure> {
        let target = (self.bias + offset) as *mut usize;
        let value = match info as u32 {
            R_X86_64_NONE => return Ok(()),
            R_X86_64_RELATIVE => self.bias.wrapping_add(addend),
            R_X86_64_64 => self.symbol_value(info >> 32, imports)?.wrapping_add(addend),
            R_X86_64_GLOB_DAT | R_X86_64_JUMP_SLOT => self.symbol_value(info >> 32, imports)?,
            _ => return Err(Failure::Bad(b"a relocation the loader does not know")),
        };
        // SAFETY: a word of the library's writable data, as its relocation
        // table names it.
        unsafe { target.write_unaligned(value) };
        Ok(())
    }

    /// Symbol `index`'s address: the library's own, or the import.
    fn symbol_value(
        &self,
        index: usize,
        imports: &dyn Fn(&[u8]) -> Option<usize>,
    ) -> Result<usize, Failure> {
        let sym = self.symtab + 24 * index;
        // SAFETY: an Elf64_Sym of the symbol table.
        let (name, info, section) = unsafe {
            (
                (sym as *const u32).read_unaligned() as usize,
                ((sym + 4) as *const u8).read(),
                ((sym + 6) as *const u16).read_unaligned(),
            )
        };
        if section != 0 {
            return Ok(self.bias + word(sym + 8));
        }
        let name = c_bytes(self.strtab + name);
        match imports(name) {
            Some(address) => Ok(address),
            None if info >> 4 == STB_WEAK => Ok(0),
            None => Err(Failure::Missing(name)),
        }
    }

    /// The address of the library's own symbol `name` (GNU hash table).
    pub fn symbol(&self, name: &[u8]) -> Option<usize> {
        let table = self.gnu_hash;
        // SAFETY: the library's GNU hash table: counts, bloom words,
        // buckets, then the hash chain.
        let u32_at = |at: usize| unsafe { (at as *const u32).read_unaligned() } as usize;
        let (buckets, first, bloom) = (u32_at(table), u32_at(table + 4), u32_at(table + 8));
        if buckets == 0 {
            return None;
        }
        let bucket_table = table + 16 + 8 * bloom;
        let chain = bucket_table + 4 * buckets;
        let hash = name.iter().fold(5381u32, |h, &b| {
            h.wrapping_mul(33).wrapping_add(u32::from(b))
        });
        let mut index = u32_at(bucket_table + 4 * (hash as usize % buckets));
        if index < first {
            return None;
        }
        loop {
            let entry = u32_at(chain + 4 * (index - first)) as u32;
            if entry | 1 == hash | 1 {
                let sym = self.symtab + 24 * index;
                let own = c_bytes(self.strtab + u32_at(sym));
                // SAFETY: as in symbol_value.
                let section = unsafe { ((sym + 6) as *const u16).read_unaligned() };
                if own == name && section != 0 {
                    return Some(self.bias + word(sym + 8));
                }
            }
            if entry & 1 != 0 {
                return None;
            }
            index += 1;
        }
    }
}
