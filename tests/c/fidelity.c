/* Process and descriptor calls whose effects a preload library can get
 * wrong, each printed as NAME=RESULT: run by tests/tests/fidelity.rs in a
 * directory inside a container and in a plain one; both outputs must be
 * the same. Run in an empty directory. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static const char *base(void) {
    static char cwd[4096];
    if (!getcwd(cwd, sizeof cwd))
        return "?";
    char *slash = strrchr(cwd, '/');
    return slash ? slash + 1 : cwd;
}

static void show(const char *name, int ok) {
    printf("%s=%s\n", name, ok ? "ok" : strerror(errno));
}

int main(void) {
    /* A vfork child's chdir is the child's. */
    mkdir("sub", 0755);
    printf("before=%s\n", base());
    pid_t pid = vfork();
    if (pid == 0) {
        if (chdir("sub") != 0)
            _exit(1);
        _exit(0);
    }
    int status;
    waitpid(pid, &status, 0);
    printf("vfork_child_status=%d\n", WEXITSTATUS(status));
    printf("after_vfork=%s\n", base());

    /* A vfork child that chdirs and execs runs where it went. */
    pid = vfork();
    if (pid == 0) {
        if (chdir("sub") != 0)
            _exit(1);
        execl("/bin/sh", "sh", "-c", "echo in-sub > marker", (char *)0);
        _exit(127);
    }
    waitpid(pid, &status, 0);
    show("vfork_exec_marker", access("sub/marker", F_OK) == 0);
    printf("after_vfork_exec=%s\n", base());

    /* posix_spawn: addchdir, then a relative addopen there. */
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addchdir_np(&actions, "sub");
    posix_spawn_file_actions_addopen(&actions, 1, "spawned", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    char *argv[] = {"sh", "-c", "pwd | sed 's|.*/||'", NULL};
    int error = posix_spawn(&pid, "/bin/sh", &actions, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&actions);
    printf("spawn=%s\n", error ? strerror(error) : "ok");
    if (!error)
        waitpid(pid, &status, 0);
    FILE *f = fopen("sub/spawned", "r");
    char line[256] = "";
    if (f) {
        if (!fgets(line, sizeof line, f))
            line[0] = 0;
        fclose(f);
    }
    line[strcspn(line, "\n")] = 0;
    printf("spawned_in=%s\n", line);
    printf("after_spawn=%s\n", base());

    /* An action that fails is the spawn's error. */
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addchdir_np(&actions, "missing");
    error = posix_spawn(&pid, "/bin/true", &actions, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&actions);
    printf("spawn_into_missing=%s\n", error ? strerror(error) : "ok");
    if (!error)
        waitpid(pid, &status, 0);

    /* A new directory with a deleted one's descriptor number. */
    int ok = 1;
    for (int i = 0; i < 50 && ok; i++) {
        mkdir("a", 0755);
        int fd = open("a", O_RDONLY);
        close(open("a/x", O_WRONLY | O_CREAT, 0644));
        close(fd);
        unlink("a/x");
        rmdir("a");
        mkdir("b", 0755);
        fd = open("b", O_RDONLY | O_DIRECTORY);
        int child = openat(fd, "y", O_WRONLY | O_CREAT, 0644);
        ok = child >= 0 && faccessat(fd, "y", F_OK, 0) == 0;
        if (child >= 0)
            close(child);
        unlinkat(fd, "y", 0);
        close(fd);
        rmdir("b");
    }
    show("reused_descriptor", ok);

    /* fdopendir of a file's descriptor. */
    close(open("file", O_WRONLY | O_CREAT, 0644));
    int fd = open("file", O_RDONLY);
    show("fdopendir_file", fdopendir(fd) != NULL);
    close(fd);
    return 0;
}
