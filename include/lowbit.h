/* lowbit: extreme low-bit quantization of neural-network weights, and the
 * runtime that runs the result on CPUs. One include for the whole public API. */
#ifndef LOWBIT_H
#define LOWBIT_H

#include "lowbit/calib.h"
#include "lowbit/core.h"
#include "lowbit/eval.h"
#include "lowbit/format.h"
#include "lowbit/gguf.h"
#include "lowbit/linear.h"
#include "lowbit/model.h"
#include "lowbit/pipeline.h"
#include "lowbit/plan.h"
#include "lowbit/quant.h"
#include "lowbit/tokenizer.h"
#include "lowbit/train.h"

#endif
