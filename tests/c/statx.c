/* statx on each path given, with valid and invalid flags and masks: prints
 * one line per call with its result and what it reports, so that a run
 * inside the container (answered from the index for image files) and one
 * on the layers' files can be compared line by line. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>

int main(int argc, char **argv) {
    const struct {
        int flags;
        unsigned mask;
    } calls[] = {
        {0, STATX_BASIC_STATS},
        {AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS},
        {AT_NO_AUTOMOUNT, STATX_SIZE},
        {AT_STATX_DONT_SYNC, STATX_MODE},
        {AT_STATX_FORCE_SYNC, STATX_INO},
        /* Invalid: both sync types, an unknown flag, the reserved mask bit. */
        {AT_STATX_SYNC_TYPE, STATX_BASIC_STATS},
        {0x1, STATX_BASIC_STATS},
        {0x40000000, STATX_SIZE},
        {0, 0x80000000u},
    };
    for (int p = 1; p < argc; p++) {
        for (unsigned c = 0; c < sizeof calls / sizeof *calls; c++) {
            struct statx x = {0};
            errno = 0;
            int got = statx(AT_FDCWD, argv[p], calls[c].flags, calls[c].mask, &x);
            printf("%d %#x %#x: %d %d", p, calls[c].flags, calls[c].mask, got, errno);
            if (got == 0)
                printf(" mode %o size %llu ino %llu nlink %u", x.stx_mode,
                       (unsigned long long)x.stx_size, (unsigned long long)x.stx_ino, x.stx_nlink);
            printf("\n");
        }
    }
    return 0;
}
