/* What libunion remembers between lookups must follow the container's
 * changes at once. With the writable layer holding /usr (a write to
 * /usr/local), a directory only the image has (/usr/share/doc/DIR) is
 * looked up and listed, which lets the next lookups below it skip the
 * writable layer; then a directory and a file are made there, a file of
 * the image is deleted, and each lookup and listing must show it. Also:
 * stat of /etc/localtime (a link into /usr/share/zoneinfo, which
 * localtime(3) stats on every call) is the target's. Prints the failures
 * and "failures=N". */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int failures;

static void expect(int ok, const char *what) {
    if (!ok) {
        printf("failed: %s (errno %d)\n", what, errno);
        failures++;
    }
}

/* Whether listing `dir` shows `name`. */
static int lists(const char *dir, const char *name) {
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int seen = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        seen |= strcmp(e->d_name, name) == 0;
    closedir(d);
    return seen;
}

int main(int argc, char **argv) {
    const char *name = argc > 1 ? argv[1] : "base-files";
    char dir[256], file[300], made[300], inside[320];
    snprintf(dir, sizeof dir, "/usr/share/doc/%s", name);
    snprintf(file, sizeof file, "%s/copyright", dir);
    snprintf(made, sizeof made, "%s/made", dir);
    snprintf(inside, sizeof inside, "%s/made/file", dir);
    struct stat st, target;

    int fd = open("/usr/local/written", O_CREAT | O_WRONLY, 0644);
    expect(fd >= 0, "a file in /usr/local");
    close(fd);
    /* Looked up twice: the second is answered from what the first found. */
    expect(lstat(file, &st) == 0, "the image's copyright");
    expect(lstat(file, &st) == 0 && S_ISREG(st.st_mode), "the image's copyright again");
    expect(lstat(made, &st) == -1 && errno == ENOENT, "nothing made yet");
    expect(lists(dir, "copyright") == 1, "copyright listed");
    expect(lists(dir, "made") == 0, "nothing made listed");

    expect(mkdir(made, 0755) == 0, "mkdir below the image's directory");
    expect(lstat(made, &st) == 0 && S_ISDIR(st.st_mode), "the directory made");
    fd = open(inside, O_CREAT | O_WRONLY, 0644);
    expect(fd >= 0, "a file in it");
    close(fd);
    expect(lstat(inside, &st) == 0 && S_ISREG(st.st_mode), "the file made");
    expect(lists(dir, "made") == 1, "the directory made listed");
    expect(lists(dir, "copyright") == 1, "copyright still listed");
    expect(lists(made, "file") == 1, "the file made listed");
    expect(lstat(file, &st) == 0, "copyright still there");

    expect(unlink(file) == 0, "delete the image's copyright");
    expect(lstat(file, &st) == -1 && errno == ENOENT, "copyright gone");
    expect(lists(dir, "copyright") == 0, "copyright no longer listed");
    expect(lists(dir, "made") == 1, "the directory made still listed");

    expect(stat("/etc/localtime", &st) == 0, "stat /etc/localtime");
    expect(stat("/usr/share/zoneinfo/Etc/UTC", &target) == 0, "stat its target");
    expect(st.st_ino == target.st_ino && st.st_size == target.st_size && S_ISREG(st.st_mode),
           "/etc/localtime is its target");
    expect(stat("/etc/localtime", &st) == 0 && st.st_ino == target.st_ino,
           "/etc/localtime again");
    expect(lstat("/etc/localtime", &st) == 0 && S_ISLNK(st.st_mode), "lstat: the link");
    printf("failures=%d\n", failures);
    return failures != 0;
}
