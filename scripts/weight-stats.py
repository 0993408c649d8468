#!/usr/bin/env python3
"""Per-linear weight statistics of a llama2.c checkpoint (legacy format, as
../shared/data/models/stories260K.bin): the spread of row norms (max / min)
and the kurtosis of the entries (a Gaussian's is 3). docs/methods/rotate.md
cites them. Standard library only.

    scripts/weight-stats.py ../shared/data/models/stories260K.bin [LAYER]
"""
import math
import struct
import sys


def main():
    path = sys.argv[1]
    layer = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    with open(path, "rb") as f:
        dim, hidden, n_layers, n_heads, n_kv, vocab, _ = struct.unpack("7i", f.read(28))
        kv_dim = dim * n_kv // n_heads

        def read(n):
            return struct.unpack("%df" % n, f.read(4 * n))

        read(abs(vocab) * dim)  # token embedding
        read(n_layers * dim)  # attention norms
        mats = {}
        for name, rows, cols in (("wq", dim, dim), ("wk", kv_dim, dim), ("wv", kv_dim, dim), ("wo", dim, dim)):
            mats[name] = (read(n_layers * rows * cols), rows, cols)
        read(n_layers * dim)  # ffn norms
        for name, rows, cols in (("w1", hidden, dim), ("w2", dim, hidden), ("w3", hidden, dim)):
            mats[name] = (read(n_layers * rows * cols), rows, cols)
    print("layer %d: linear, shape, row norm min .. max (ratio), kurtosis" % layer)
    for name, (w, rows, cols) in mats.items():
        base = layer * rows * cols
        v = w[base:base + rows * cols]
        norms = [math.sqrt(sum(x * x for x in v[r * cols:(r + 1) * cols])) for r in range(rows)]
        mean = sum(v) / len(v)
        var = sum((x - mean) ** 2 for x in v) / len(v)
        kurt = sum((x - mean) ** 4 for x in v) / len(v) / (var * var)
        print("%-3s %4dx%-4d %.3f .. %.3f (%.1fx)  %.2f" % (name, rows, cols, min(norms), max(norms),
                                                         max(norms) / min(norms), kurt))


if __name__ == "__main__":
    main()
