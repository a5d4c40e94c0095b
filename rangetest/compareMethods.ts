/**
 * Compares the suggestion methods on families of synthetic range-test curves whose truth is known
 * and prints the markdown tables in docs/lr-suggestion.md:
 *
 *   node --import tsx rangetest/compareMethods.ts [curvesPerFamily=200]
 *
 * Per family and method (medians over the curves):
 *   fall      share of the possible loss fall, (plateau - L(maxLr)) / (plateau - floor), of the
 *             noise-free curve at the suggested max lr: how far into the valley the answer is
 *   below div decades between the answer and the true divergence (noise-free loss back up to
 *             floor + half the fall); 10% quantile in brackets
 *   past div  share of curves whose answer is at or past the true divergence
 *   spread    |log10 maxLr| difference between two noise draws of the same curve: repeatability
 *   conf.     the confidence the method reported
 */
import { suggestLr, type SuggestMethod } from './suggest.ts';
import { prng, syntheticCurve, type SyntheticCurveSpec } from './synthetic.ts';

const METHODS: readonly SuggestMethod[] = ['auto', 'steepest', 'minimum', 'valley'];

interface Family {
  readonly name: string;
  readonly note: string;
  readonly spec: (r: () => number) => Omit<SyntheticCurveSpec, 'seed'>;
}

const lerp = (r: () => number, lo: number, hi: number): number => lo + (hi - lo) * r();

/** Exponential sweep over 7 decades with the descent, valley and blow-up inside. */
function base(r: () => number, over: Partial<Omit<SyntheticCurveSpec, 'seed'>> = {}): Omit<SyntheticCurveSpec, 'seed'> {
  const startExp = lerp(r, -7, -5);
  const endExp = startExp + 7;
  const descentCentre = startExp + lerp(r, 1.5, 3);
  const descentWidth = lerp(r, 0.15, 0.4);
  const plateau = lerp(r, 1, 5);
  return {
    steps: 100,
    startExp,
    endExp,
    plateau,
    floor: plateau * lerp(r, 0.05, 0.4),
    descentCentre,
    descentWidth,
    blowupStart: descentCentre + 3 * descentWidth + lerp(r, 1, 2),
    blowupWidth: lerp(r, 0.08, 0.2),
    noise: 0.01,
    ...over,
  };
}

const FAMILIES: readonly Family[] = [
  { name: 'clean', note: '100 steps, noise 0.2% of the fall', spec: (r) => base(r, { noise: 0.002 }) },
  { name: 'noisy', note: 'noise 4% of the fall', spec: (r) => base(r, { noise: 0.04 }) },
  { name: 'spiky', note: 'noise 1%, 3% of steps spike up by 0.5-2 falls', spec: (r) => base(r, { spikes: 0.03 }) },
  {
    name: 'slow blow-up',
    note: 'the loss climbs back over about a decade',
    spec: (r) => base(r, { blowupWidth: lerp(r, 0.3, 0.45), noise: 0.02 }),
  },
  { name: 'long sweep', note: '1000 steps (fastai / Lightning default is 100)', spec: (r) => base(r, { steps: 1000, noise: 0.03 }) },
  { name: 'short sweep', note: '30 steps', spec: (r) => base(r, { steps: 30 }) },
  {
    name: 'linear sweep',
    note: '200 lrs evenly spaced from 1e-3 to 10; descent near 0.1',
    spec: (r) => {
      const descentCentre = lerp(r, -1.1, -0.8);
      return {
        steps: 200,
        startExp: -3,
        endExp: 1,
        spacing: 'linear',
        plateau: 2.3,
        floor: 2.3 * lerp(r, 0.1, 0.3),
        descentCentre,
        descentWidth: lerp(r, 0.08, 0.15),
        blowupStart: descentCentre + lerp(r, 0.5, 0.8),
        blowupWidth: lerp(r, 0.05, 0.1),
        noise: 0.01,
      };
    },
  },
  {
    name: 'no divergence',
    note: 'the sweep ends in the valley',
    spec: (r) => {
      const s = base(r);
      return { ...s, blowupStart: s.endExp + 2 };
    },
  },
];

const median = (xs: number[]): number => quantile(xs, 0.5);
function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
}

export function compare(perFamily: number): string {
  const out: string[] = [];
  out.push('| curves | method | fall | below div (10%) | past div | spread | conf. |');
  out.push('|---|---|---|---|---|---|---|');
  FAMILIES.forEach((family, f) => {
    const rand = prng(1000 + f);
    const rows = new Map<SuggestMethod, { fall: number[]; below: number[]; past: number; spread: number[]; conf: number[] }>();
    for (const m of METHODS) rows.set(m, { fall: [], below: [], past: 0, spread: [], conf: [] });
    for (let k = 0; k < perFamily; k++) {
      const spec = family.spec(rand);
      const a = syntheticCurve({ ...spec, seed: 2 * k + 1 });
      const b = syntheticCurve({ ...spec, seed: 2 * k + 2 });
      for (const m of METHODS) {
        const row = rows.get(m)!;
        const sa = suggestLr(a, { method: m });
        const sb = suggestLr(b, { method: m });
        row.fall.push(a.fallAchieved(sa.maxLr));
        const below = Math.log10(a.divergenceLr / sa.maxLr);
        if (Number.isFinite(below)) row.below.push(below);
        if (!(sa.maxLr < a.divergenceLr)) row.past++;
        row.spread.push(Math.abs(Math.log10(sa.maxLr / sb.maxLr)));
        row.conf.push(sa.confidence);
      }
    }
    METHODS.forEach((m, i) => {
      const r = rows.get(m)!;
      const below = r.below.length > 0 ? `${median(r.below).toFixed(2)} (${quantile(r.below, 0.1).toFixed(2)})` : 'n/a';
      out.push(
        `| ${i === 0 ? `**${family.name}**: ${family.note}` : ''} | ${m} | ${(100 * median(r.fall)).toFixed(0)}% | ${below} | ` +
          `${((100 * r.past) / perFamily).toFixed(0)}% | ${median(r.spread).toFixed(2)} | ${median(r.conf).toFixed(2)} |`,
      );
    });
  });
  return out.join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  console.log(compare(Number(process.argv[2] ?? 200)));
}
