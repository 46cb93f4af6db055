/* Every rank adds rank + 1; each prints the sum with where it ran and the
 * system it sees: "RANK/SIZE HOST SUM DEBIAN_VERSION". */
#include <mpi.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    long mine = rank + 1, sum = 0;
    MPI_Allreduce(&mine, &sum, 1, MPI_LONG, MPI_SUM, MPI_COMM_WORLD);
    char host[256] = "?", version[64] = "?";
    gethostname(host, sizeof host);
    FILE *f = fopen("/etc/debian_version", "r");
    if (f) {
        if (fgets(version, sizeof version, f)) version[strcspn(version, "\n")] = 0;
        fclose(f);
    }
    printf("%d/%d %s %ld %s\n", rank, size, host, sum, version);
    MPI_Finalize();
    return 0;
}
