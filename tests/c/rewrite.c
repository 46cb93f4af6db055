/* A static program whose own call site the trap rewrites, for
 * tests/tests/static_programs.rs: `mov eax, 262; syscall` (newfstatat) at a
 * known address. It reports the site's first byte before and after its
 * first calls (b8, the `mov`; e9 once it became a `jmp` to the trap's
 * stub), for a site at the start of 16 bytes and one 12 bytes into 16
 * (whose last byte is in the next 16), then checks that every later call
 * through the sites, from four threads at once, still sees the container: /marker (made by the test in
 * the writable layer, 3 bytes) is found, a missing file is ENOENT, and
 * errno and the registers a system call keeps are the program's. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

extern const unsigned char lstat_site[], lstat_site12[];

static unsigned byte_at(const unsigned char *site) {
    return *(const volatile unsigned char *)site;
}

/* newfstatat(AT_FDCWD, path, st, AT_SYMLINK_NOFOLLOW) from the site
 * `label`, at the start of 16 bytes or `pad`ded 12 into them (its last
 * byte then in the next 16); *kept is 1 when every argument register, r9,
 * and xmm0 came back as they went. */
#define RAW_LSTAT(name, label, pad)                                                           \
    __attribute__((noinline)) static long name(const char *path, struct stat *st, int *kept) { \
        register long dirfd __asm__("rdi") = -100;                                          \
        register const char *rsi __asm__("rsi") = path;                                     \
        register struct stat *rdx __asm__("rdx") = st;                                      \
        register long flags __asm__("r10") = 0x100;                                         \
        register long r8 __asm__("r8") = 0x5555;                                            \
        register long r9 __asm__("r9") = 0x6666;                                            \
        double x = 2.5;                                                                     \
        long ret;                                                                           \
        __asm__ volatile(".p2align 4\n"                                                     \
                         pad                                                                \
                         ".globl " #label "\n" #label ":\n\t"                               \
                         "mov $262, %%eax\n\t"                                              \
                         "syscall"                                                          \
                         : "=a"(ret), "+r"(dirfd), "+r"(rsi), "+r"(rdx), "+r"(flags),       \
                           "+r"(r8), "+r"(r9), "+x"(x)                                      \
                         :                                                                  \
                         : "rcx", "r11", "memory");                                         \
        *kept = dirfd == -100 && rsi == path && rdx == st && flags == 0x100 &&              \
                r8 == 0x5555 && r9 == 0x6666 && x == 2.5;                                   \
        return ret;                                                                         \
    }

RAW_LSTAT(raw_lstat, lstat_site, "")
RAW_LSTAT(raw_lstat12, lstat_site12, ".skip 12, 0x90\n")

static int bad;

static void check(void) {
    struct stat st;
    int kept;
    memset(&st, 0, sizeof st);
    errno = 7;
    for (int site = 0; site < 2; site++) {
        long (*call)(const char *, struct stat *, int *) = site ? raw_lstat12 : raw_lstat;
        memset(&st, 0, sizeof st);
        long ret = call("/marker", &st, &kept);
        if (ret != 0 || st.st_size != 3 || !S_ISREG(st.st_mode) || errno != 7 || !kept)
            __atomic_add_fetch(&bad, 1, 0);
        if (call("/no-such-file", &st, &kept) != -ENOENT || !kept)
            __atomic_add_fetch(&bad, 1, 0);
    }
}

static void *work(void *arg) {
    (void)arg;
    for (int i = 0; i < 2000; i++) check();
    return 0;
}

int main(void) {
    unsigned before = byte_at(lstat_site), before12 = byte_at(lstat_site12);
    /* The trap rewrites a site after a few calls (a call made once is
     * not worth it). */
    for (int i = 0; i < 4; i++) check();
    unsigned after = byte_at(lstat_site), after12 = byte_at(lstat_site12);
    pthread_t t[4];
    for (int i = 0; i < 4; i++) pthread_create(&t[i], 0, work, 0);
    for (int i = 0; i < 4; i++) pthread_join(t[i], 0);
    printf("before=%02x after=%02x before12=%02x after12=%02x failures=%d\n", before, after,
           before12, after12, bad);
    return bad != 0;
}
