/* lb_comm over MPI_COMM_WORLD (src/dist/dist.h). Everything MPI-specific
 * is here; without LB_HAVE_MPI the functions give the one-process
 * communicator. */
#include <stdlib.h>

#include "dist/dist.h"

#ifdef LB_HAVE_MPI
#include <limits.h>
#include <mpi.h>

static lb_comm world;
static int initialized;

static lb_status mpi_send(const lb_comm *c, int to, const void *buf, size_t bytes) {
    (void)c;
    if (bytes > INT_MAX) return lb_fail(LB_ERR_INVALID, "MPI send of %zu bytes in one message", bytes);
    int rc = MPI_Send(buf, (int)bytes, MPI_BYTE, to, 0, MPI_COMM_WORLD);
    return rc == MPI_SUCCESS ? LB_OK : lb_fail(LB_ERR_IO, "MPI_Send to rank %d failed (%d)", to, rc);
}

static lb_status mpi_recv(const lb_comm *c, int from, void *buf, size_t bytes) {
    (void)c;
    if (bytes > INT_MAX) return lb_fail(LB_ERR_INVALID, "MPI receive of %zu bytes in one message", bytes);
    MPI_Status status;
    int rc = MPI_Recv(buf, (int)bytes, MPI_BYTE, from, 0, MPI_COMM_WORLD, &status);
    if (rc != MPI_SUCCESS) return lb_fail(LB_ERR_IO, "MPI_Recv from rank %d failed (%d)", from, rc);
    int got = 0;
    MPI_Get_count(&status, MPI_BYTE, &got);
    if ((size_t)got != bytes)
        return lb_fail(LB_ERR_IO, "MPI_Recv from rank %d: %d bytes, expected %zu (the ranks disagree)", from, got,
                       bytes);
    return LB_OK;
}

static int launched_by_mpirun(void) {
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_SIZE") || getenv("PMIX_RANK") || getenv("PMI_RANK");
}

const lb_comm *lb_dist_init(int *argc, char ***argv) {
    if (!launched_by_mpirun()) return lb_comm_self();
    int provided = 0;
    MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
    initialized = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &world.rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world.size);
    /* errors come back as codes, reported as lb_status, then MPI_Abort */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    world.send = mpi_send;
    world.recv = mpi_recv;
    /* ranks on one machine share its cores: each gets cores / local ranks
     * worker threads unless --threads says otherwise */
    const char *local = getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
    int n_local = local ? atoi(local) : 1;
    if (n_local > 1) lb_set_threads(lb_get_threads() / n_local > 1 ? lb_get_threads() / n_local : 1);
    return &world;
}

int lb_dist_finish(int rc) {
    if (!initialized) return rc;
    if (rc != 0 && world.size > 1) {
        fflush(stdout);
        fflush(stderr);
        MPI_Abort(MPI_COMM_WORLD, rc);
    }
    MPI_Finalize();
    initialized = 0;
    return rc;
}

const char *lb_dist_backend(void) { return "mpi"; }

#else /* one process */

const lb_comm *lb_dist_init(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    return lb_comm_self();
}

int lb_dist_finish(int rc) { return rc; }

const char *lb_dist_backend(void) { return "none"; }

#endif
