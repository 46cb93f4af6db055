/* Eight threads of a static program make trapped calls at once, for
 * tests/tests/static_programs.rs: each sees the container and keeps its
 * own errno (libunion keeps one per handler stack). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
static int bad;
static void *work(void *arg) {
    (void)arg;
    for (int i = 0; i < 2000; i++) {
        struct stat st;
        if (stat("/etc/debian_version", &st) != 0) __atomic_add_fetch(&bad, 1, 0);
        errno = 0;
        if (stat("/etc/no-such-file", &st) == 0 || errno != ENOENT) __atomic_add_fetch(&bad, 1, 0);
        int fd = open("/etc/debian_version", O_RDONLY);
        char b[16] = "";
        if (fd < 0 || read(fd, b, sizeof b) < 2) __atomic_add_fetch(&bad, 1, 0);
        close(fd);
    }
    return 0;
}
int main(void) {
    pthread_t t[8];
    for (int i = 0; i < 8; i++) pthread_create(&t[i], 0, work, 0);
    for (int i = 0; i < 8; i++) pthread_join(t[i], 0);
    printf("failures=%d\n", bad);
    return bad != 0;
}
