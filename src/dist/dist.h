/* The CLI's MPI module (docs/SCALING.md, "MPI"): the one place that calls
 * MPI. Built into its own library, linked only by the lowbit CLI, so the
 * library (liblowbit) and the inference runtime never depend on MPI.
 * Without -DLOWBIT_MPI=ON, or when the process was not started by mpirun
 * (no OMPI_COMM_WORLD_SIZE / PMI_SIZE / PMIX_RANK in the environment), it is
 * the one-process communicator and MPI is never initialized: the CLI then
 * behaves exactly as a build without MPI. */
#ifndef LB_DIST_H
#define LB_DIST_H

#include "lowbit/core.h"

/* Initializes MPI when launched by mpirun (MPI_THREAD_FUNNELED: only the
 * main thread calls MPI; OpenMP workers never do); returns the
 * communicator of every rank (lb_comm_self otherwise). Never fails: an MPI
 * that cannot start aborts with its own message. */
const lb_comm *lb_dist_init(int *argc, char ***argv);
/* After the verb: rc == 0 finalizes MPI; rc != 0 with more than one rank
 * aborts every rank (MPI_Abort) so that no rank waits for a failed one. */
int lb_dist_finish(int rc);
/* "mpi" when built with MPI, "none" otherwise */
const char *lb_dist_backend(void);

#endif
