/* Inside lowbit: the atomic output of a resumable run (calib_layered.c's
 * journaled pass; docs/SCALING.md, "Resumable runs"). The output is written
 * as any atomic file's is and renamed over its path by lb_atomic_commit,
 * but its temporary has a name the caller keeps from run to run (beside the
 * journal, not "<path>.tmp.<pid>"), so that an interrupted run's bytes stay
 * there for the run that resumes it. */
#ifndef LB_CORE_ATOMIC_RESUME_H
#define LB_CORE_ATOMIC_RESUME_H

#include <stdint.h>

#include "lowbit/core.h"

/* Opens f for path with its temporary at tmp. keep == 0: tmp is created
 * empty (an older one is replaced) and, like any temporary, removed on
 * SIGINT / SIGTERM / SIGHUP until lb_atomic_persist. keep > 0: tmp must be
 * a regular file of at least keep bytes, an interrupted run's; it is cut to
 * keep and never removed by a signal. Either way writes start at offset 0;
 * lb_atomic_skip passes over bytes that are kept. */
lb_status lb_atomic_open_resumable(lb_atomic_file *f, const char *path, const char *tmp, uint64_t keep);
/* Moves past n bytes already in the file (they stay as they are); counted in f->written. */
void lb_atomic_skip(lb_atomic_file *f, uint64_t n);
/* Everything written so far on the disk (fflush, fdatasync); the first error is kept in f->err and returned. */
lb_status lb_atomic_sync(lb_atomic_file *f);
/* From now on a journal refers to the temporary: a signal no longer removes it. */
void lb_atomic_persist(lb_atomic_file *f);
/* Flushes, syncs and closes f, keeping the temporary for a later run (instead of lb_atomic_abort). */
void lb_atomic_close_kept(lb_atomic_file *f);

#endif
