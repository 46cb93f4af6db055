/* System calls made past the C library's functions, and a program that
 * tries to disarm the trap, and one that handles signals on a small
 * alternate stack (as Go and Rust programs do): each printed as
 * NAME=RESULT for tests/tests/fidelity.rs, which runs it in a container. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <iconv.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static void show_file(const char *name, long fd) {
    char buf[64] = "";
    if (fd < 0) {
        printf("%s=%s\n", name, strerror(errno));
        return;
    }
    ssize_t n = read((int)fd, buf, sizeof buf - 1);
    close((int)fd);
    buf[n > 0 ? n : 0] = 0;
    buf[strcspn(buf, "\n")] = 0;
    printf("%s=%s\n", name, buf);
}

static const char *in_handler_path;
static char in_handler_result[64] = "not run";

/* A signal handler on the alternate stack making a system call itself:
 * the trap's SIGSYS comes on top of this signal's frame. */
static void on_usr1(int signal) {
    (void)signal;
    long fd = syscall(SYS_openat, AT_FDCWD, in_handler_path, O_RDONLY);
    if (fd < 0) {
        strcpy(in_handler_result, "failed");
        return;
    }
    ssize_t n = read((int)fd, in_handler_result, sizeof in_handler_result - 1);
    close((int)fd);
    in_handler_result[n > 0 ? n : 0] = 0;
    in_handler_result[strcspn(in_handler_result, "\n")] = 0;
}

/* 16 KiB of alternate signal stack over a guard page: an overflow faults. */
static void small_alternate_stack(void) {
    const size_t guard = 4096, size = 16384;
    char *mem = mmap(NULL, guard + size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    mprotect(mem, guard, PROT_NONE);
    stack_t stack = {.ss_sp = mem + guard, .ss_size = size, .ss_flags = 0};
    sigaltstack(&stack, NULL);
    struct sigaction act;
    memset(&act, 0, sizeof act);
    act.sa_handler = on_usr1;
    act.sa_flags = SA_ONSTACK;
    sigaction(SIGUSR1, &act, NULL);
}

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : "/etc/debian_version";
    const char *marker = argc > 2 ? argv[2] : "/var/tmp/lpmx-host-only";
    /* A program that would take SIGSYS for itself, and block it. */
    signal(SIGSYS, SIG_IGN);
    struct sigaction act;
    memset(&act, 0, sizeof act);
    act.sa_handler = SIG_DFL;
    sigaction(SIGSYS, &act, NULL);
    sigset_t all;
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, NULL);
    syscall(SYS_rt_sigprocmask, SIG_BLOCK, &all, NULL, 8);

    show_file("syscall_openat", syscall(SYS_openat, AT_FDCWD, path, O_RDONLY));
    show_file("syscall_open", syscall(SYS_open, path, O_RDONLY));
    struct stat st;
    long r = syscall(SYS_newfstatat, AT_FDCWD, path, &st, 0);
    printf("syscall_stat=%s\n", r == 0 ? "ok" : strerror(errno));
    char cwd[4096];
    r = syscall(SYS_getcwd, cwd, sizeof cwd);
    printf("syscall_getcwd=%s\n", r > 0 ? cwd : strerror(errno));
    r = syscall(SYS_access, marker, F_OK);
    printf("syscall_host_marker=%s\n", r == 0 ? "visible" : strerror(errno));
    iconv_t cd = iconv_open("ISO-8859-15", "UTF-8");
    printf("iconv_open_latin9=%s\n", cd == (iconv_t)-1 ? strerror(errno) : "ok");

    in_handler_path = path;
    small_alternate_stack();
    show_file("small_altstack_openat", syscall(SYS_openat, AT_FDCWD, path, O_RDONLY));
    sigprocmask(SIG_UNBLOCK, &all, NULL);
    raise(SIGUSR1);
    printf("signal_handler_openat=%s\n", in_handler_result);
    return 0;
}
