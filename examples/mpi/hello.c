/* A small MPI program for examples/mpi.ts: each rank prints its rank and the communicator size,
 * and all ranks agree on a sum (MPI_Allreduce), which rank 0 prints. */
#include <mpi.h>
#include <stdio.h>

int main(int argc, char **argv) {
  int rank, size, mine, sum = 0;
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  mine = rank + 1;
  MPI_Allreduce(&mine, &sum, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  printf("rank %d of %d\n", rank, size);
  if (rank == 0) printf("sum of 1..%d = %d\n", size, sum);
  MPI_Finalize();
  return 0;
}
