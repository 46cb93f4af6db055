/* Calls libunion's entry points one by one inside a container and prints
 * what each saw, one "name=value" line per check, for tests/tests/exec.rs.
 * Built by the test with the host's gcc (with _FORTIFY_SOURCE, so the
 * __open_2 forms are used too). */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <fts.h>
#include <ftw.h>
#include <glob.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <errno.h>
#include <unistd.h>

extern char **environ;

static void first_line(const char *name, FILE *f) {
    char line[256] = "";
    if (f && fgets(line, sizeof line, f))
        line[strcspn(line, "\n")] = 0;
    printf("%s=%s\n", name, f ? line : "(null)");
}

static void fd_line(const char *name, int fd) {
    first_line(name, fd >= 0 ? fdopen(fd, "r") : NULL);
}

static int names_cmp(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void list_dir(const char *name, DIR *d) {
    char *names[4096];
    int n = 0;
    struct dirent *e;
    if (!d) {
        printf("%s=(null)\n", name);
        return;
    }
    while ((e = readdir(d)) && n < 4096)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            names[n++] = strdup(e->d_name);
    closedir(d);
    qsort(names, n, sizeof *names, names_cmp);
    printf("%s=", name);
    for (int i = 0; i < n; i++)
        printf("%s%s", i ? "," : "", names[i]);
    printf("\n");
}

static int nftw_count;
static int count_entry(const char *p, const struct stat *s, int t, struct FTW *f) {
    (void)p; (void)s; (void)t; (void)f;
    nftw_count++;
    return 0;
}

static int child_status(pid_t pid) {
    int status = -1;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int main(void) {
    const char *version = "/etc/debian_version";
    struct stat st;
    char buf[4096];

    first_line("fopen", fopen(version, "r"));
    fd_line("open", open(version, O_RDONLY));
    int etc = open("/etc", O_RDONLY | O_DIRECTORY);
    fd_line("openat", openat(etc, "debian_version", O_RDONLY));
    printf("stat=%d\n", stat(version, &st) == 0 && S_ISREG(st.st_mode));
    printf("lstat_link=%d\n", lstat("/opt/abs-link", &st) == 0 && S_ISLNK(st.st_mode));
    printf("fstatat=%d\n", fstatat(etc, "apt", &st, 0) == 0 && S_ISDIR(st.st_mode));
    struct statx sx;
    printf("statx=%d\n", statx(AT_FDCWD, version, 0, STATX_SIZE, &sx) == 0 && sx.stx_size > 0);
    printf("access=%d\n", access(version, R_OK) == 0);
    printf("faccessat=%d\n", faccessat(etc, "debian_version", R_OK, AT_EACCESS) == 0);
    printf("access_whiteout=%d\n", access("/usr/share/doc/bash", F_OK) == 0);
    ssize_t n = readlink("/opt/abs-link", buf, sizeof buf - 1);
    printf("readlink=%.*s\n", (int)(n > 0 ? n : 0), buf);
    n = readlink("/proc/self/exe", buf, sizeof buf - 1);
    printf("self_exe=%.*s\n", (int)(n > 0 ? n : 0), buf);
    char *real = realpath("/opt/abs-link", NULL);
    printf("realpath=%s\n", real ? real : "(null)");
    real = canonicalize_file_name("/bin/../lib/./os-release");
    printf("canonicalize=%s\n", real ? real : "(null)");
    printf("chdir=%d\n", chdir("/usr/share"));
    printf("getcwd=%s\n", getcwd(buf, sizeof buf));
    fd_line("relative", open("../../etc/debian_version", O_RDONLY));
    chdir("/");
    list_dir("opendir_opaque", opendir("/etc/apt/apt.conf.d"));
    list_dir("fdopendir", fdopendir(openat(etc, "apt/apt.conf.d", O_RDONLY | O_DIRECTORY)));
    struct dirent **entries;
    int count = scandir("/usr/share/doc", &entries, NULL, alphasort);
    int has_bash = 0, has_dpkg = 0;
    for (int i = 0; i < count; i++) {
        has_bash |= !strcmp(entries[i]->d_name, "bash");
        has_dpkg |= !strcmp(entries[i]->d_name, "dpkg");
    }
    printf("scandir_bash=%d\nscandir_dpkg=%d\n", has_bash, has_dpkg);
    glob_t g;
    int globbed = glob("/etc/apt/apt.conf.d/*", 0, NULL, &g);
    printf("glob=%s\n", globbed == 0 && g.gl_pathc == 1 ? g.gl_pathv[0] : "(none)");
    nftw_count = 0;
    nftw("/etc/apt/apt.conf.d", count_entry, 8, FTW_PHYS);
    printf("nftw=%d\n", nftw_count);
    /* glibc's fts lists with its own getdents64 and moves with fchdir:
     * the trap's to answer. The opaque directory holds one file. */
    char *roots[] = {"/etc/apt/apt.conf.d", NULL};
    FTS *walk = fts_open(roots, FTS_PHYSICAL, NULL);
    int fts_files = 0;
    for (FTSENT *e; walk && (e = fts_read(walk));)
        fts_files += e->fts_info == FTS_F;
    if (walk)
        fts_close(walk);
    printf("fts=%d\n", fts_files);
#ifndef NO_DLOPEN
    /* (A static program cannot dlopen another glibc's libraries: glibc
     * itself allows it only for the glibc it was linked with.) */
    void *m = dlopen("/usr/lib/x86_64-linux-gnu/libm.so.6", RTLD_NOW);
    printf("dlopen=%d\n", m && dlsym(m, "cos"));
    /* Found through the image's ld.so.conf.d, by name. */
    void *hello = dlopen("libhello.so.1", RTLD_NOW);
    int (*hello_fn)(void) = hello ? (int (*)(void))dlsym(hello, "lpmx_hello") : NULL;
    printf("dlopen_by_name=%d\n", hello_fn ? hello_fn() : -1);
#endif
    /* Write side: an extended attribute on an image file (copied up). */
    char value[8] = "";
    if (setxattr("/etc/debian_version", "user.lpmx", "v1", 2, 0) == 0)
        printf("xattr=%.*s\n", (int)getxattr("/etc/debian_version", "user.lpmx", value, sizeof value), value);
    else
        printf("xattr=%s\n", errno == ENOTSUP ? "unsupported" : "failed");
    fflush(stdout);

    pid_t pid = fork();
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", "exit 3", (char *)NULL);
        _exit(99);
    }
    printf("execl=%d\n", child_status(pid));
    fflush(stdout);
    pid = fork();
    if (pid == 0) {
        char *empty[] = {NULL};
        /* env -i: no LD_PRELOAD, no PATH. */
        execle("/bin/sh", "sh", "-c", "test -e /usr/share/doc/bash && exit 1; exec cat /etc/debian_version", (char *)NULL, empty);
        _exit(99);
    }
    printf("execle_empty_env=%d\n", child_status(pid));
    fflush(stdout);
    pid = fork();
    if (pid == 0) {
        char *argv[] = {"sh", "-c", "exit 4", NULL};
        execvp("sh", argv);
        _exit(99);
    }
    printf("execvp=%d\n", child_status(pid));
    char *spawn_argv[] = {"sh", "-c", "test -e /usr/share/doc/bash || exit 5", NULL};
    if (posix_spawnp(&pid, "sh", NULL, NULL, spawn_argv, environ) == 0)
        printf("posix_spawnp=%d\n", child_status(pid));
    printf("system=%d\n", WEXITSTATUS(system("test -e /usr/share/doc/bash || exit 6")));
    first_line("popen", popen("cat /etc/debian_version", "r"));
    return 0;
}
