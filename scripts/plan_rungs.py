#!/usr/bin/env python3
"""What a gap-free ladder of rates could give a plan (docs/RESULTS.md, issue 11's
2.5-bpw gap): would a code between two candidates' rates (say a trellis at 2.33
bpw between 2.09 and 2.60) let the allocation do much better?

    scripts/plan_rungs.py PLAN.json [--bpw B] [--rung R ...] [--json]

PLAN.json is a tensor-granularity `lowbit plan --json`. The plan's first
allocation is solved again (an exact multiple-choice knapsack: the least summed
single-tensor KL whose bits fit B bpw, default the plan's budget) three ways:
with the candidates as measured; with one more rung at R bpw (each --rung, default
2.25, 2.33 and 2.4) for every tensor; and with a continuum, nine rungs between
every two neighbouring candidates of a tensor. A rung's KL is interpolated
between the tensor's measured candidates just below and above it, log KL linear
in bits: what a code at a constant distance from the rate-distortion bound
(distortion ~ 2^(-2R)) would give. Those KLs are a model, not a measurement; the
question is how much of the plan's loss is the ladder's gaps.
"""
import argparse, json, math, sys


def frontier_add(front, options, budget):
    """front: [(bits, kl, picks)] sorted by bits with kl falling; add one tensor"""
    out = sorted(((b + ob, k + ok, p + (i,)) for b, k, p in front for i, (ob, ok) in enumerate(options)
                  if b + ob <= budget), key=lambda t: (t[0], t[1]))
    kept, best = [], math.inf
    for t in out:
        if t[1] < best:
            kept.append(t)
            best = t[1]
    return kept


def knapsack(options, budget):
    """options[t] = [(bits, kl)]: the least sum of kl with sum of bits <= budget,
    one option per tensor, as (kl, picks); None when nothing fits"""
    front = [(0, 0.0, ())]
    for opts in options:
        front = frontier_add(front, opts, budget)
        if not front:
            return None
    return front[-1][1], front[-1][2]


def geometric(k0, k1, t):
    """the KL a fraction t of the way from k0 to k1, log KL linear"""
    return math.exp((1 - t) * math.log(k0) + t * math.log(k1))


def interpolated(points, bits):
    """log-linear KL at `bits` between the measured (bits, kl) points around it"""
    pts = sorted(p for p in points if p[1] > 0)
    for (b0, k0), (b1, k1) in zip(pts, pts[1:]):
        if b0 <= bits <= b1 and b1 > b0:
            return geometric(k0, k1, (bits - b0) / (b1 - b0))
    return None


def whole_bytes(bits):
    """a rung's bits rounded up to a byte, as a file stores them"""
    return 8 * math.ceil(bits / 8)


def ladders(plan, rungs):
    """the option lists: as measured, with each rung, with the continuum"""
    measured = [[(s['bits'], s['kld']) for s in row] for row in plan['sensitivity']]
    names = [c.split(' ')[0] for c in plan['candidates']]
    weights = [round(row[names.index(ch['candidate'].split(' ')[0])]['bits'] / ch['bpw'])
               for row, ch in zip(plan['sensitivity'], plan['choice'])]
    out = [('candidates as measured', measured)]
    for r in rungs:
        extra = []
        for opts, w in zip(measured, weights):
            b = whole_bytes(r * w)
            k = interpolated(opts, b)
            extra.append(opts + ([(b, k)] if k is not None else []))
        out.append(('+ a rung at %g bpw' % r, extra))
    cont = []
    for opts in measured:
        pts = sorted(p for p in opts if p[1] > 0)
        more = [(whole_bytes(b0 + i / 10 * (b1 - b0)), geometric(k0, k1, i / 10))
                for (b0, k0), (b1, k1) in zip(pts, pts[1:]) for i in range(1, 10)]
        cont.append(opts + more)
    out.append(('continuum (9 rungs between neighbours)', cont))
    return out, sum(weights)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('plan')
    ap.add_argument('--bpw', type=float)
    ap.add_argument('--rung', type=float, action='append')
    ap.add_argument('--json', action='store_true')
    a = ap.parse_args()
    plan = json.load(open(a.plan))
    if plan.get('granularity', 'tensor') != 'tensor':
        sys.exit('plan_rungs.py: %s is a %s plan; tensor plans only' % (a.plan, plan['granularity']))
    bpw = a.bpw if a.bpw else plan['budget_bpw']
    rows, weights = ladders(plan, a.rung or [2.25, 7 / 3, 2.4])
    budget = math.floor(bpw * weights)
    res = []
    for name, options in rows:
        r = knapsack(options, budget)
        if r is None:
            sys.exit('plan_rungs.py: nothing fits %g bpw' % bpw)
        res.append({'ladder': name, 'kld': r[0],
                    'bpw': sum(options[t][i][0] for t, i in enumerate(r[1])) / weights})
    for r in res:
        r['change'] = r['kld'] / res[0]['kld'] - 1
    if a.json:
        print(json.dumps({'plan': a.plan, 'budget_bpw': bpw, 'weights': weights, 'tensors': len(rows[0][1]),
                          'ladders': res}))
        return
    print('%s: %d tensors, %d weights, budget %g bpw; the least summed single-tensor KL' %
          (a.plan, len(rows[0][1]), weights, bpw))
    for r in res:
        print('  %-40s %.5f at %.4f bpw  (%+.1f%%)' % (r['ladder'], r['kld'], r['bpw'], 100 * r['change']))


if __name__ == '__main__':
    main()
