//! The seccomp filter: traps the calls that name a path (and the few that
//! guard the trap) unless they come from the gadget (`lpmx_sys::GADGET`)
//! or from the ELF interpreter mapped where the loader maps it
//! (`lpmx_sys::INTERP_BASE`); lets everything else through. The decision
//! depends on the call number first, so that the kernel's filter cache
//! lets the untrapped calls through without running it.

use lpmx_sys as sys;

use crate::handler::SIGSYS;

/// The calls that name a path, trapped unless libunion makes them, and the
/// two on descriptors whose answer is the container's.
const PATH_CALLS: &[u32] = &[
    2,   // open
    4,   // stat
    6,   // lstat
    21,  // access
    42,  // connect
    49,  // bind
    59,  // execve
    76,  // truncate
    79,  // getcwd
    80,  // chdir
    81,  // fchdir: the container's working directory follows it
    82,  // rename
    83,  // mkdir
    84,  // rmdir
    85,  // creat
    86,  // link
    87,  // unlink
    88,  // symlink
    89,  // readlink
    90,  // chmod
    92,  // chown
    94,  // lchown
    132, // utime
    133, // mknod
    137, // statfs
    188, // setxattr
    189, // lsetxattr
    191, // getxattr
    192, // lgetxattr
    194, // listxattr
    195, // llistxattr
    197, // removexattr
    198, // lremovexattr
    217, // getdents64: a directory's listing merges the layers
    235, // utimes
    257, // openat
    258, // mkdirat
    259, // mknodat
    260, // fchownat
    261, // futimesat
    262, // newfstatat
    263, // unlinkat
    264, // renameat
    265, // linkat
    266, // symlinkat
    267, // readlinkat
    268, // fchmodat
    269, // faccessat
    280, // utimensat
    316, // renameat2
    322, // execveat
    332, // statx
    437, // openat2
    439, // faccessat2
    452, // fchmodat2
];

/// Under fake root (`lpmx-exec --root`), also the calls that tell or set
/// the process's ids and a descriptor's owner: a static program's answers
/// come from fake root's records as a dynamic one's do.
const ROOT_CALLS: &[u32] = &[
    5,   // fstat
    91,  // fchmod
    93,  // fchown
    102, // getuid
    104, // getgid
    105, // setuid
    106, // setgid
    107, // geteuid
    108, // getegid
    113, // setreuid
    114, // setregid
    115, // getgroups
    116, // setgroups
    117, // setresuid
    118, // getresuid
    119, // setresgid
    120, // getresgid
    122, // setfsuid
    123, // setfsgid
];

pub const SYS_RT_SIGACTION: u32 = 13;
pub const SYS_RT_SIGPROCMASK: u32 = 14;
const SYS_NEWFSTATAT: u32 = 262;
const SYS_STATX: u32 = 332;
const SYS_UTIMENSAT: u32 = 280;
/// Answered ENOSYS, so that programs fall back to calls the trap sees:
/// io_uring's requests name paths the filter never sees, and clone3 can
/// clear the signal handlers (glibc's posix_spawn does since 2.35), which
/// would kill the child at its first trapped call. glibc falls back to
/// clone on ENOSYS, as it must under Docker's default profile.
const NOT_OFFERED: &[u32] = &[
    425, // io_uring_setup
    435, // clone3
];
const AT_EMPTY_PATH: u32 = 0x1000;

#[repr(C)]
#[derive(Clone, Copy)]
struct Insn {
    code: u16,
    jt: u8,
    jf: u8,
    k: u32,
}

const LD_ABS: u16 = 0x20;
const JEQ: u16 = 0x15;
const JGE: u16 = 0x35;
const JSET: u16 = 0x45;
const JA: u16 = 0x05;
const RET: u16 = 0x06;
const ALLOW: u32 = 0x7fff_0000;
const TRAP: u32 = 0x0003_0000;
const ERRNO: u32 = 0x0005_0000;
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;

/// Where a jump goes: the next instruction, a label, or an instruction.
#[derive(Clone, Copy, PartialEq, Eq)]
enum To {
    Next,
    Label(usize),
    At(usize),
}

const L_ALLOW: usize = 0;
const L_CHECK_IP: usize = 1;
const L_SIGACTION: usize = 2;
const L_SIGMASK: usize = 3;
const L_EMPTY_PATH_3: usize = 4;
const L_EMPTY_PATH_2: usize = 5;
const L_NULL_PATH: usize = 6;
const LABELS: usize = 7;
const MAX_INSNS: usize = 250;

struct Program {
    code: [(u16, To, To, u32); MAX_INSNS],
    len: usize,
    labels: [usize; LABELS],
}

impl Program {
    fn op(&mut self, code: u16, jt: To, jf: To, k: u32) {
        if self.len < MAX_INSNS {
            self.code[self.len] = (code, jt, jf, k);
            self.len += 1;
        }
    }
    fn load(&mut self, at: u32) {
        self.op(LD_ABS, To::Next, To::Next, at);
    }
    fn ret(&mut self, value: u32) {
        self.op(RET, To::Next, To::Next, value);
    }
    fn label(&mut self, label: usize) {
        self.labels[label] = self.len;
    }
    fn jump(&mut self, to: To) {
        self.op(JA, To::Next, To::Next, 0);
        // The target is stored in jt for resolution.
        self.code[self.len - 1].1 = to;
    }

    /// A decision tree over sorted `calls`: each goes to its label, all
    /// else to ALLOW. Several comparisons per call, whatever the number.
    fn tree(&mut self, calls: &[(u32, usize)]) {
        if calls.len() <= 3 {
            for &(nr, label) in calls {
                self.op(JEQ, To::Label(label), To::Next, nr);
            }
            self.jump(To::Label(L_ALLOW));
            return;
        }
        let mid = calls.len() / 2;
        let at = self.len;
        // jge calls[mid]: the upper half follows, the lower half after it.
        self.op(JGE, To::Next, To::Next, calls[mid].0);
        self.tree(&calls[mid..]);
        let lower = self.len;
        self.code[at].2 = To::At(lower);
        self.tree(&calls[..mid]);
    }

    fn resolve(&self, out: &mut [Insn; MAX_INSNS]) -> Option<usize> {
        for (pc, &(code, jt, jf, k)) in self.code[..self.len].iter().enumerate() {
            let target = |to: To| -> Option<usize> {
                match to {
                    To::Next => Some(pc + 1),
                    To::At(at) => Some(at),
                    To::Label(l) => Some(self.labels[l]),
                }
            };
            let offset = |to: To| -> Option<u32> {
                let t = target(to)?;
                (t > pc).then(|| (t - pc - 1) as u32)
            };
            out[pc] = if code == JA {
                Insn {
                    code,
                    jt: 0,
                    jf: 0,
                    k: offset(jt)?,
                }
            } else if code & 0x07 == 0x05 {
                Insn {
                    code,
                    jt: u8::try_from(offset(jt)?).ok()?,
                    jf: u8::try_from(offset(jf)?).ok()?,
                    k,
                }
            } else {
                Insn {
                    code,
                    jt: 0,
                    jf: 0,
                    k,
                }
            };
        }
        Some(self.len)
    }
}

/// A bit per call number below 512, set for each of `calls`.
const fn bitmap(calls: &[u32]) -> [u64; 8] {
    let mut bits = [0u64; 8];
    let mut i = 0;
    while i < calls.len() {
        bits[calls[i] as usize / 64] |= 1 << (calls[i] % 64);
        i += 1;
    }
    bits
}

const TRAPPED: [u64; 8] = bitmap(PATH_CALLS);
const TRAPPED_UNDER_ROOT: [u64; 8] = bitmap(ROOT_CALLS);

/// Whether the filter (built for `fake_root` or not) traps call `nr`
/// for some arguments: a bit test, since every trapped call asks.
pub fn traps(nr: usize, fake_root: bool) -> bool {
    let bit = |bits: &[u64; 8]| bits.get(nr / 64).is_some_and(|w| w & (1 << (nr % 64)) != 0);
    nr == SYS_RT_SIGACTION as usize
        || nr == SYS_RT_SIGPROCMASK as usize
        || bit(&TRAPPED)
        || (fake_root && bit(&TRAPPED_UNDER_ROOT))
}

/// seccomp_data: nr at 0, arch at 4, instruction_pointer at 8, args from 16.
fn arg_low(i: u32) -> u32 {
    16 + 8 * i
}

fn build(out: &mut [Insn; MAX_INSNS], fake_root: bool) -> Option<usize> {
    let mut p = Program {
        code: [(0, To::Next, To::Next, 0); MAX_INSNS],
        len: 0,
        labels: [0; LABELS],
    };
    p.load(4);
    p.op(JEQ, To::Next, To::Label(L_ALLOW), AUDIT_ARCH_X86_64);
    p.load(0);
    p.op(JGE, To::Label(L_ALLOW), To::Next, 0x4000_0000); // x32
    p.op(JEQ, To::Label(L_SIGACTION), To::Next, SYS_RT_SIGACTION);
    p.op(JEQ, To::Label(L_SIGMASK), To::Next, SYS_RT_SIGPROCMASK);
    for &nr in NOT_OFFERED {
        let at = p.len;
        p.op(JEQ, To::Next, To::Next, nr);
        p.code[at].2 = To::At(at + 2);
        p.ret(ERRNO | sys::ENOSYS as u32);
    }
    let mut calls = [(0u32, 0usize); 96];
    let mut n = 0;
    let root_calls: &[u32] = if fake_root { ROOT_CALLS } else { &[] };
    for &nr in PATH_CALLS.iter().chain(root_calls) {
        let label = match nr {
            // A descriptor's own stat: its owner is fake root's to say.
            SYS_NEWFSTATAT | SYS_STATX if fake_root => L_CHECK_IP,
            SYS_NEWFSTATAT => L_EMPTY_PATH_3,
            SYS_STATX => L_EMPTY_PATH_2,
            SYS_UTIMENSAT => L_NULL_PATH,
            _ => L_CHECK_IP,
        };
        calls[n] = (nr, label);
        n += 1;
    }
    // The decision tree wants them in order.
    for i in 1..n {
        let mut j = i;
        while j > 0 && calls[j - 1].0 > calls[j].0 {
            calls.swap(j - 1, j);
            j -= 1;
        }
    }
    p.tree(&calls[..n]);
    // rt_sigaction of SIGSYS with a new action, rt_sigprocmask that
    // blocks (glibc's own; its public functions are libunion's).
    p.label(L_SIGACTION);
    p.load(arg_low(0));
    p.op(JEQ, To::Next, To::Label(L_ALLOW), SIGSYS as u32);
    p.load(arg_low(1));
    p.op(JEQ, To::Next, To::Label(L_CHECK_IP), 0);
    p.load(arg_low(1) + 4);
    p.op(JEQ, To::Label(L_ALLOW), To::Label(L_CHECK_IP), 0);
    p.label(L_SIGMASK);
    p.load(arg_low(0));
    p.op(JEQ, To::Label(L_ALLOW), To::Next, 1); // SIG_UNBLOCK
    p.load(arg_low(1));
    p.op(JEQ, To::Next, To::Label(L_CHECK_IP), 0);
    p.load(arg_low(1) + 4);
    p.op(JEQ, To::Label(L_ALLOW), To::Label(L_CHECK_IP), 0);
    // fstat done as newfstatat(fd, "", AT_EMPTY_PATH), and the like.
    p.label(L_EMPTY_PATH_3);
    p.load(arg_low(3));
    p.op(
        JSET,
        To::Label(L_ALLOW),
        To::Label(L_CHECK_IP),
        AT_EMPTY_PATH,
    );
    p.label(L_EMPTY_PATH_2);
    p.load(arg_low(2));
    p.op(
        JSET,
        To::Label(L_ALLOW),
        To::Label(L_CHECK_IP),
        AT_EMPTY_PATH,
    );
    p.label(L_NULL_PATH);
    p.load(arg_low(1));
    p.op(JEQ, To::Next, To::Label(L_CHECK_IP), 0);
    p.load(arg_low(1) + 4);
    p.op(JEQ, To::Label(L_ALLOW), To::Label(L_CHECK_IP), 0);
    // From the gadget, or from the loader mapped where the loader maps
    // it: let through.
    p.label(L_CHECK_IP);
    let gadget = sys::GADGET_RETURN as u64;
    let interp = sys::INTERP_BASE as u64;
    p.load(12);
    let high = p.len;
    p.op(JEQ, To::Next, To::Next, (gadget >> 32) as u32);
    p.load(8);
    p.op(JEQ, To::Label(L_ALLOW), To::Next, gadget as u32);
    let interp_check = p.len;
    p.code[high].2 = To::At(interp_check);
    p.load(12);
    p.op(JEQ, To::Next, To::Next, (interp >> 32) as u32);
    let not_interp = p.len - 1;
    p.load(8);
    p.op(
        JGE,
        To::Next,
        To::Label(L_ALLOW),
        (interp as u32) + sys::INTERP_SPAN as u32,
    );
    p.code[not_interp].2 = To::At(p.len);
    p.ret(TRAP);
    p.label(L_ALLOW);
    p.ret(ALLOW);
    p.resolve(out)
}

/// Installs the filter for this process and all it starts (with the id
/// calls under `fake_root`). Once per process tree: it survives exec and
/// cannot be taken off.
pub fn install(fake_root: bool) -> Result<(), i32> {
    const PR_SET_NO_NEW_PRIVS: usize = 38;
    const SECCOMP_SET_MODE_FILTER: usize = 1;
    const PR_SET_SECCOMP: usize = 22;
    const SECCOMP_MODE_FILTER: usize = 2;
    let mut code = [Insn {
        code: 0,
        jt: 0,
        jf: 0,
        k: 0,
    }; MAX_INSNS];
    let len = build(&mut code, fake_root).ok_or(sys::E2BIG)?;
    #[repr(C)]
    struct Fprog {
        len: u16,
        filter: *const Insn,
    }
    let prog = Fprog {
        len: len as u16,
        filter: code.as_ptr(),
    };
    sys::prctl5(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)?;
    // Without this flag, Linux 4.17 to 5.15 (RHEL 8's 4.18 among them)
    // turn on the speculative-store-bypass mitigation for every process
    // with a filter, slowing all its code on affected CPUs; the filter
    // guards no secret, so it asks for none. Kernels before 4.17 know no
    // flag: EINVAL, then the plain call.
    const SECCOMP_FILTER_FLAG_SPEC_ALLOW: usize = 1 << 2;
    let mut result = sys::seccomp(
        SECCOMP_SET_MODE_FILTER,
        SECCOMP_FILTER_FLAG_SPEC_ALLOW,
        (&raw const prog).cast(),
    );
    if result == Err(sys::EINVAL) {
        result = sys::seccomp(SECCOMP_SET_MODE_FILTER, 0, (&raw const prog).cast());
    }
    match result {
        // Linux before 3.17: the prctl.
        Err(sys::ENOSYS) => sys::prctl5(
            PR_SET_SECCOMP,
            SECCOMP_MODE_FILTER,
            (&raw const prog) as usize,
            0,
            0,
        )
        .map(|_| ()),
        other => other.map(|_| ()),
    }
}
