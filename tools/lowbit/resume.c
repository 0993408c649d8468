/* Resumable runs on the command line (docs/SCALING.md, "Resumable runs"):
 * the journal OUT.partial beside a quantize output, opened before the work
 * (a stale one refused unless --resume), removed once the output is
 * written; --stop-after N stops a run as an interruption would, for tests. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

const char *cli_journal_path(const char *out, char *buf, size_t n) {
    snprintf(buf, n, "%s.partial", out);
    return buf;
}

int cli_journal_open(const char *verb, lb_model *m, lb_plan *plan, const char *out, const char *const *labels,
                     const char *const *files, int n_files, const char *extra, int resume, const char *stop_after,
                     lb_journal **j) {
    *j = NULL;
    long stop = 0;
    if (stop_after && cli_parse_int(verb, "--stop-after", stop_after, 1, 1 << 30, &stop)) return CLI_USAGE;
    char path[4200], *fp = NULL;
    cli_journal_path(out, path, sizeof path);
    if (lb_journal_fingerprint(m, plan, labels, files, n_files, extra, &fp) != LB_OK) return cli_error(verb, NULL);
    lb_status st = lb_journal_open(path, fp, resume, j);
    lb_free(fp);
    if (st != LB_OK) return cli_error(verb, NULL);
    lb_journal_set_stop(*j, (int)stop);
    if (*lb_journal_note(*j)) fprintf(stderr, "lowbit %s: warning: %s\n", verb, lb_journal_note(*j));
    if (resume) {
        if (lb_journal_done(*j))
            fprintf(stderr, "lowbit %s: resumed: %d of %d tensors done (journal %s)\n", verb, lb_journal_done(*j),
                    plan->n_entries, path);
        else fprintf(stderr, "lowbit %s: --resume: no finished tensor journaled in %s: starting from the first\n", verb,
                     path);
    }
    if (stop && stop <= lb_journal_done(*j)) {
        int done = lb_journal_done(*j);
        lb_journal_close(*j, 0);
        *j = NULL;
        return cli_usage_error(verb, "--stop-after %ld: the journal holds %d finished tensors already", stop, done);
    }
    plan->journal = *j;
    return CLI_OK;
}
