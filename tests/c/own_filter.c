/* A program that installs a seccomp filter of its own, for
 * tests/tests/static_programs.rs. "errno": uname(2) fails with EPERM
 * (filters stack: the program's and lpmx's both apply), then the program
 * reads FILE. "trap": uname raises SIGSYS for the program's own handler,
 * which lpmx's trap cannot share: lpmx stops it with the reason.
 * Usage: own_filter errno|trap FILE */
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

static void on_sigsys(int signal) {
    (void)signal;
    write(1, "handled\n", 8);
}

int main(int argc, char **argv) {
    if (argc < 3)
        return 2;
    int trap = strcmp(argv[1], "trap") == 0;
    struct sock_filter code[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_uname, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, trap ? SECCOMP_RET_TRAP : SECCOMP_RET_ERRNO | EPERM),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {sizeof code / sizeof code[0], code};
    if (trap)
        signal(SIGSYS, on_sigsys);
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog)) {
        perror("seccomp");
        return 3;
    }
    struct utsname u;
    int r = uname(&u);
    printf("uname=%s\n", r == 0 ? "ok" : strerror(errno));
    char line[64] = "";
    FILE *f = fopen(argv[2], "r");
    if (f && fgets(line, sizeof line, f))
        printf("read=%s", line);
    return 0;
}
