/* A static program whose own call site the trap rewrites, for
 * tests/tests/static_programs.rs: `mov eax, 262; syscall` (newfstatat) at a
 * known address. It reports the site's first byte before and after its
 * first calls (b8, the `mov`; e9 once it became a `jmp` to the trap's
 * stub), then checks that every later call through the site, from four
 * threads at once, still sees the container: /marker (made by the test in
 * the writable layer, 3 bytes) is found, a missing file is ENOENT, and
 * errno and the registers a system call keeps are the program's. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

extern const unsigned char lstat_site[];

static unsigned site_byte(void) {
    return *(const volatile unsigned char *)lstat_site;
}

/* newfstatat(AT_FDCWD, path, st, AT_SYMLINK_NOFOLLOW); *kept is 1 when
 * every argument register, r9, and xmm0 came back as they went. */
__attribute__((noinline)) static long raw_lstat(const char *path, struct stat *st, int *kept) {
    register long dirfd __asm__("rdi") = -100;
    register const char *rsi __asm__("rsi") = path;
    register struct stat *rdx __asm__("rdx") = st;
    register long flags __asm__("r10") = 0x100;
    register long r8 __asm__("r8") = 0x5555;
    register long r9 __asm__("r9") = 0x6666;
    double x = 2.5;
    long ret;
    __asm__ volatile(".p2align 4\n"
                     ".globl lstat_site\n"
                     "lstat_site:\n\t"
                     "mov $262, %%eax\n\t"
                     "syscall"
                     : "=a"(ret), "+r"(dirfd), "+r"(rsi), "+r"(rdx), "+r"(flags), "+r"(r8),
                       "+r"(r9), "+x"(x)
                     :
                     : "rcx", "r11", "memory");
    *kept = dirfd == -100 && rsi == path && rdx == st && flags == 0x100 && r8 == 0x5555 &&
            r9 == 0x6666 && x == 2.5;
    return ret;
}

static int bad;

static void check(void) {
    struct stat st;
    int kept;
    memset(&st, 0, sizeof st);
    errno = 7;
    long ret = raw_lstat("/marker", &st, &kept);
    if (ret != 0 || st.st_size != 3 || !S_ISREG(st.st_mode) || errno != 7 || !kept)
        __atomic_add_fetch(&bad, 1, 0);
    if (raw_lstat("/no-such-file", &st, &kept) != -ENOENT || !kept)
        __atomic_add_fetch(&bad, 1, 0);
}

static void *work(void *arg) {
    (void)arg;
    for (int i = 0; i < 2000; i++) check();
    return 0;
}

int main(void) {
    unsigned before = site_byte();
    /* The trap rewrites a site after a few calls (a call made once is
     * not worth it). */
    for (int i = 0; i < 4; i++) check();
    unsigned after = site_byte();
    pthread_t t[4];
    for (int i = 0; i < 4; i++) pthread_create(&t[i], 0, work, 0);
    for (int i = 0; i < 4; i++) pthread_join(t[i], 0);
    printf("before=%02x after=%02x failures=%d\n", before, after, bad);
    return bad != 0;
}
