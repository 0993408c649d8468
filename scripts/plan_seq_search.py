#!/usr/bin/env python3
"""An experiment beside `lowbit plan` (docs/RESULTS.md, "Issue 11"): does a
local search on the loss of the mix as it is really applied (gptaq alpha=0.5,
true-sequential) beat the plan's refinement, which measures mixes with the
non-sequential method?

    scripts/plan_seq_search.py MODEL TEXT PLAN.json OUTDIR BUDGET [ROUNDS] [TRIES]

PLAN.json is `lowbit plan --json`'s output. Each round proposes swaps (one
tensor a rung up the candidates' bit ladder, another a rung down, within
BUDGET bpw), ranked by the KLs measured alone, quantizes the best TRIES
(default 6) in turn with `lowbit quantize --recipe --sequential` and keeps the
first whose KL on the calibration split is lower. OUTDIR/best.recipe is the
result; one line per tried mix on stdout. LOWBIT overrides build/lowbit.
"""
import json, os, subprocess, sys

if len(sys.argv) < 6:
    sys.exit(__doc__)
model, text, plan_path, out, budget = sys.argv[1:6]
budget = float(budget)
rounds = int(sys.argv[6]) if len(sys.argv) > 6 else 12
tries = int(sys.argv[7]) if len(sys.argv) > 7 else 6
lowbit = os.environ.get('LOWBIT', os.path.join(os.path.dirname(__file__), '..', 'build', 'lowbit'))
os.makedirs(out, exist_ok=True)

plan = json.load(open(plan_path))
cands = [c.split(' ')[0] for c in plan['candidates']]
names = [c['tensor'] for c in plan['choice']]
bits = [[s['bits'] for s in row] for row in plan['sensitivity']]
kl = [[s['kld'] for s in row] for row in plan['sensitivity']]
cur = [cands.index(c['candidate'].split(' ')[0]) for c in plan['choice']]
weights = [bits[t][cur[t]] / c['bpw'] for t, c in enumerate(plan['choice'])]
ladder = sorted(range(len(cands)), key=lambda i: bits[0][i])


def bpw(a):
    return sum(bits[t][a[t]] for t in range(len(a))) / sum(weights)


def write_recipe(a, path):
    with open(path, 'w') as f:
        for t, n in enumerate(names):
            f.write(f'{n} {cands[a[t]]} method=gptaq alpha=0.5\n')


def measure(a, tag):
    r, g = f'{out}/{tag}.recipe', f'{out}/{tag}.gguf'
    write_recipe(a, r)
    subprocess.run([lowbit, 'quantize', model, '--calib', text, '--recipe', r, '--sequential', '-o', g],
                   check=True, capture_output=True)
    j = json.loads(subprocess.run([lowbit, 'eval', g, '--text', text, '--split', 'calib', '--ref', model,
                                   '--json'], check=True, capture_output=True).stdout)
    os.remove(g)
    return j['kld']


best = measure(cur, 'start')
print(f'start bpw {bpw(cur):.4f} calibration kld {best:.5f}', flush=True)
for rd in range(rounds):
    props = []
    for u in range(len(names)):
        for d in range(len(names)):
            iu, idn = ladder.index(cur[u]), ladder.index(cur[d])
            if u == d or iu + 1 >= len(ladder) or idn == 0:
                continue
            a = list(cur)
            a[u], a[d] = ladder[iu + 1], ladder[idn - 1]
            if bpw(a) <= budget:
                gain = (kl[u][cur[u]] - kl[u][a[u]]) - (kl[d][a[d]] - kl[d][cur[d]])
                props.append((gain, u, d, a))
    props.sort(key=lambda p: -p[0])
    accepted = False
    for k, (gain, u, d, a) in enumerate(props[:tries]):
        v = measure(a, f'r{rd}_{k}')
        print(f'round {rd} try {k}: {names[u]} up, {names[d]} down, predicted gain {gain:.5f}, '
              f'calibration kld {v:.5f}, bpw {bpw(a):.4f}', flush=True)
        if v < best:
            best, cur, accepted = v, a, True
            break
    if not accepted:
        break
write_recipe(cur, f'{out}/best.recipe')
print(f'final bpw {bpw(cur):.4f} calibration kld {best:.5f} -> {out}/best.recipe')
