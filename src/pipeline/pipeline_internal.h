/* Inside src/pipeline: what the parallel (quantize_model.c) and the
 * sequential (quantize_sequential.c) drivers share. */
#ifndef LB_PIPELINE_INTERNAL_H
#define LB_PIPELINE_INTERNAL_H

#include "lowbit/pipeline.h"

/* Resolves and checks a shallow copy of plan against m (the caller's plan
 * stays const); p->entries is the copy's own (lb_free). */
lb_status lb_pipeline_resolve(const lb_plan *plan, lb_model *m, lb_plan *p);

/* rec cleared, then named and shaped after t, with e's spec and options
 * (no report path): what a tensor's record starts as, quantized now or
 * read back from a journal */
void lb_pipeline_report_begin(lb_tensor_report *rec, const lb_tensor *t, const lb_plan_entry *e);
/* Quantizes entry e of m into *out (a new tensor, m unchanged) and fills
 * rec: stats is the tensor's input statistics or NULL; the method sees them
 * only if it needs statistics, while the report's proxy losses use any
 * X^T X given. */
lb_status lb_pipeline_quantize_entry(lb_model *m, const lb_plan_entry *e, const float *w_in,
                                     const lb_layer_stats *stats, lb_tensor *out, lb_tensor_report *rec,
                                     lb_quant_extras *extras, int measured);
/* measured: 0 when no report was asked for: rec then gets name, shape, bpw
 * and seconds only (the error measures and the RTN baseline cost another
 * quantization and O(rows cols^2) per tensor). */
/* w_in: the f32 weight to quantize instead of the tensor's own (a folded
 * copy, fold.c), or NULL. */
/* extras: what the entry's common options (outliers, bias correction)
 * produced for the linear's slots (zeroed when none), checked against the
 * model (pipeline/slots.h); the caller applies or frees them. rec->bpw is
 * the packed tensor's; the driver adds the slots once they are set. */

/* The plan's activation quantizer for every linear (*acts NULL when the
 * plan has none), static clips from stats; computed before any weight
 * changes, so a failure leaves the model as it was. */
lb_status lb_pipeline_plan_acts(const lb_model *m, const lb_act_quant *act, const lb_calib_stats *stats,
                                lb_act_quant **acts);
/* Sets them (NULL: nothing) and notes the spec in the model's quant note. */
void lb_pipeline_set_acts(lb_model *m, const lb_act_quant *act, const lb_act_quant *acts);

/* Fills the report's totals after m took the new tensors. */
void lb_pipeline_report_totals(lb_model *m, int n, double t0, lb_quantize_report *report);


/* lb_pipeline_quantize_entry through a journal (j NULL: the same call):
 * a tensor the journal holds comes from it (its record as measured then),
 * any other is quantized and journaled; when the journal reaches its stop
 * count the call fails (lb_journal_stopped). journal.c */
lb_status lb_journal_entry(lb_journal *j, lb_model *m, const lb_plan_entry *e, const float *w_in,
                           const lb_layer_stats *stats, lb_tensor *out, lb_tensor_report *rec, lb_quant_extras *extras,
                           int measured);
/* 1 when the journal (may be NULL) holds the tensor of this name. */
int lb_journal_has(const lb_journal *j, const char *name);
/* Parses one record's payload for tensor t (every size checked); for the fuzz target and tests. */
lb_status lb_journal_parse_record(const uint8_t *p, uint64_t len, const lb_tensor *t, lb_tensor *out,
                                  lb_tensor_report *rec, lb_quant_extras *x);

#endif
