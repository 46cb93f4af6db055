/* Extended-attribute calls on image files, each made twice (libunion
 * remembers what the kernel answers for files without attributes) on each
 * path given: prints one line per call with its result, so that a run
 * inside the container and one on the layers' files can be compared line
 * by line. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/xattr.h>

int main(int argc, char **argv) {
    const char *names[] = {"security.selinux", "system.posix_acl_access",
                           "system.posix_acl_default", "trusted.lpmx", "user.lpmx",
                           "security.capability"};
    for (int p = 1; p < argc; p++) {
        const char *path = argv[p];
        for (int round = 0; round < 2; round++) {
            for (unsigned n = 0; n < sizeof names / sizeof *names; n++) {
                char value[256];
                errno = 0;
                ssize_t got = getxattr(path, names[n], value, sizeof value);
                int get_errno = errno;
                errno = 0;
                ssize_t lgot = lgetxattr(path, names[n], value, sizeof value);
                printf("%d %s get %zd %d lget %zd %d\n", p, names[n], got, get_errno,
                       lgot, errno);
            }
            char list[1024];
            errno = 0;
            ssize_t listed = listxattr(path, list, sizeof list);
            int list_errno = errno;
            errno = 0;
            ssize_t llisted = llistxattr(path, list, sizeof list);
            printf("%d list %zd %d llist %zd %d\n", p, listed, list_errno, llisted, errno);
        }
    }
    return 0;
}
