// Automatic choice of weight decay and batchnorm momentum, following Smith's
// "disciplined approach" (2018, §4.3–4.4): compare candidates by short One Cycle
// runs at the chosen max LR and keep what gives the lowest validation loss.
//
// The budget is spent by successive halving (Jamieson & Talwalkar 2016): every
// candidate gets a short run; the best 1/η of them get a run η times longer,
// and so on until one is left or the budget ends. Each run is a complete One
// Cycle of its length (a short cycle is not the start of a long one), restarted
// from the same initial weights. Finished trials are appended to a journal, so
// an interrupted tune continues without redoing them.
import { appendFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { TrainConfig } from './config.ts';
import { type Device, createDevice } from '../gpu/device.ts';
import { writeFileAtomic } from '../engine/io/atomic.ts';
import { lineChart } from '../train/plot.ts';
import { resolveMaxLrByRangeTest } from './rangeTest.ts';
import { SGD } from '../engine/optim.ts';
import { BatchLoader } from '../data/loader.ts';
import { oneCycle } from '../schedules/index.ts';
import { type EvalRecord, fit } from '../train/fit.ts';
import { type Datasets, augmenterFor, evalSource, loadDatasets, modelFor, trainSource } from './session.ts';

export interface Candidate {
  weightDecay: number;
  /** PyTorch's convention (Smith's 0.9 is PyTorch's 0.1) */
  bnMomentum: number;
}

export interface TrialResult extends Candidate {
  steps: number;
  rung: number;
  valLoss: number;
  valAcc: number;
  /** validation evaluations during the run, for the plot */
  curve: { step: number; loss: number; acc: number }[];
  seconds: number;
  end: string;
}

export interface TuneOptions {
  device: Device;
  config: TrainConfig;
  data: Datasets;
  maxLr: number;
  weightDecays?: number[];
  /** in PyTorch's convention */
  bnMomenta?: number[];
  /** total training steps over all trials */
  budget: number;
  /** steps of the first rung (default: what makes the whole schedule fit the budget) */
  minSteps?: number;
  eta?: number;
  /** 'loss' (default) or 'accuracy' */
  metric?: 'loss' | 'accuracy';
  journal: string;
  log?: (line: string) => void;
  shouldStop?: () => boolean;
}

export interface TuneResult {
  best: TrialResult;
  trials: TrialResult[];
  rungs: { steps: number; candidates: number }[];
  budgetUsed: number;
  interrupted: boolean;
}

export const SMITH_WEIGHT_DECAYS = [1e-3, 3e-4, 1e-4, 3e-5, 1e-5, 0];
/** Smith's 0.9, 0.95, 0.97, 0.99 in PyTorch's convention */
export const SMITH_BN_MOMENTA = [0.1, 0.05, 0.03, 0.01];

/** Rung sizes: n candidates at s steps, then ⌈n/η⌉ at η·s, …, fitted to the budget. */
export function halvingPlan(n: number, budget: number, eta: number, minSteps?: number): { steps: number; candidates: number }[] {
  const counts: number[] = [];
  for (let c = n; ; c = Math.ceil(c / eta)) {
    counts.push(c);
    if (c === 1) break;
  }
  // total = s · Σ count_k · η^k  ≤ budget
  const weight = counts.reduce((s, c, k) => s + c * eta ** k, 0);
  const s0 = minSteps ?? Math.floor(budget / weight);
  if (s0 < 10) {
    throw new Error(`tune: a budget of ${budget} steps is too small for ${n} candidates (the first rung would get ${s0} steps each; need ≥ 10)`);
  }
  const plan: { steps: number; candidates: number }[] = [];
  let used = 0;
  for (let k = 0; k < counts.length; k++) {
    const steps = s0 * eta ** k;
    if (used + steps * counts[k]! > budget) break;
    used += steps * counts[k]!;
    plan.push({ steps, candidates: counts[k]! });
  }
  return plan;
}

const key = (c: Candidate, steps: number): string => `${c.weightDecay}|${c.bnMomentum}|${steps}`;

function readJournal(path: string): Map<string, TrialResult> {
  const done = new Map<string, TrialResult>();
  if (!existsSync(path)) return done;
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    if (!line.trim()) continue;
    try {
      const t = JSON.parse(line) as TrialResult;
      done.set(key(t, t.steps), t);
    } catch {
      // a line cut by a crash mid-append: that trial is simply run again
    }
  }
  return done;
}

/** One short One Cycle run of a candidate; the same initial weights and batch order for all. */
async function runTrial(o: TuneOptions, c: Candidate, steps: number, rung: number): Promise<TrialResult> {
  const { device, config, data } = o;
  const model = await modelFor(device, { ...config, bnMomentum: c.bnMomentum }, data.train);
  const cycle = oneCycle({ maxLr: o.maxLr, totalSteps: steps, maxMomentum: config.momentum, minMomentum: config.minMomentum });
  const optimizer = new SGD({ params: model.namedParameters(), lr: cycle.lr, momentum: cycle.momentum, weightDecay: c.weightDecay, nesterov: config.nesterov });
  const loader = new BatchLoader(data.train, { batchSize: config.batchSize, seed: config.seed, shuffle: true, dropLast: true });
  const augmenter = augmenterFor(device, config, data.train);
  const val = data.validation ?? data.test;
  const t0 = performance.now();
  try {
    const r = await fit({
      device,
      model,
      optimizer,
      train: trainSource(device, loader, augmenter, config.augment),
      eval: evalSource(device, val, augmenter, Math.max(256, config.batchSize)),
      totalSteps: steps,
      evalEvery: Math.max(1, Math.floor(steps / 4)),
      logEvery: Math.min(config.logEvery, steps),
      labelSmoothing: config.labelSmoothing,
      divergenceFactor: config.divergenceFactor,
    });
    const last: EvalRecord | undefined = r.evals[r.evals.length - 1];
    return {
      ...c,
      steps,
      rung,
      valLoss: r.end === 'diverged' || !last ? Infinity : last.loss,
      valAcc: r.end === 'diverged' || !last ? 0 : last.acc,
      curve: r.evals.map((e) => ({ step: e.step, loss: e.loss, acc: e.acc })),
      seconds: (performance.now() - t0) / 1000,
      end: r.end,
    };
  } finally {
    augmenter.dispose();
    optimizer.dispose();
    model.dispose();
  }
}

export async function tune(o: TuneOptions): Promise<TuneResult> {
  const wds = o.weightDecays ?? SMITH_WEIGHT_DECAYS;
  const bms = o.bnMomenta ?? SMITH_BN_MOMENTA;
  const eta = o.eta ?? 3;
  const metric = o.metric ?? 'loss';
  const log = o.log ?? (() => {});
  const candidates: Candidate[] = wds.flatMap((weightDecay) => bms.map((bnMomentum) => ({ weightDecay, bnMomentum })));
  const plan = halvingPlan(candidates.length, o.budget, eta, o.minSteps);
  mkdirSync(dirname(o.journal), { recursive: true });
  const done = readJournal(o.journal);
  const better = (a: TrialResult, b: TrialResult): number =>
    metric === 'loss' ? a.valLoss - b.valLoss || b.valAcc - a.valAcc : b.valAcc - a.valAcc || a.valLoss - b.valLoss;
  let alive = candidates;
  const trials: TrialResult[] = [];
  let budgetUsed = 0;
  let interrupted = false;
  for (let rung = 0; rung < plan.length && !interrupted; rung++) {
    const { steps } = plan[rung]!;
    log(`rung ${rung + 1}/${plan.length}: ${alive.length} candidates × ${steps} steps`);
    const results: TrialResult[] = [];
    for (const c of alive) {
      if (o.shouldStop?.()) {
        interrupted = true;
        break;
      }
      let t = done.get(key(c, steps));
      if (t) {
        log(`  wd ${c.weightDecay}, bn momentum ${c.bnMomentum}: done before (val loss ${t.valLoss.toFixed(4)})`);
      } else {
        t = await runTrial(o, c, steps, rung);
        appendFileSync(o.journal, JSON.stringify(t) + '\n');
        budgetUsed += steps;
        log(`  wd ${c.weightDecay}, bn momentum ${c.bnMomentum}: val loss ${t.valLoss.toFixed(4)}, accuracy ${(100 * t.valAcc).toFixed(1)}% (${t.seconds.toFixed(0)} s)`);
      }
      results.push(t);
    }
    trials.push(...results);
    if (interrupted) break;
    results.sort(better);
    alive = results.slice(0, plan[rung + 1]?.candidates ?? 1).map(({ weightDecay, bnMomentum }) => ({ weightDecay, bnMomentum }));
  }
  if (trials.length === 0) throw new Error('tune: interrupted before any trial finished');
  // the winner: best of the longest rung reached
  const maxSteps = Math.max(...trials.map((t) => t.steps));
  const best = trials.filter((t) => t.steps === maxSteps).sort(better)[0]!;
  return { best, trials, rungs: plan, budgetUsed, interrupted };
}

export function tuneJournalPath(out: string): string {
  return join(out, 'tune-trials.jsonl');
}

/**
 * The tune command's work: a device, the datasets, the max LR (a range test first for
 * `auto`), the trials (resumable from the journal), then tuned-recipe.json, tune.json
 * and tune.svg in `config.out`.
 */
export async function runTuning(
  config: TrainConfig,
  o: Omit<TuneOptions, 'device' | 'config' | 'data' | 'maxLr' | 'journal'>,
): Promise<{ result: TuneResult; best: TrialResult; maxLr: number; recipePath: string }> {
  const device = await createDevice();
  try {
    // a one-tree image folder's valSplit is its test fraction: tune then holds out 10% of the training images
    const data = await loadDatasets(config, { validation: 0.1 });
    const maxLr = config.maxLr === 'auto' ? await resolveMaxLrByRangeTest(device, config) : config.maxLr;
    const r = await tune({ ...o, device, config, data, maxLr, journal: tuneJournalPath(config.out) });
    const best = r.best;
    const metric = o.metric ?? 'loss';
    const recipePath = join(config.out, 'tuned-recipe.json');
    const recipe = { ...config, maxLr, weightDecay: best.weightDecay, bnMomentum: best.bnMomentum, out: join(config.out, 'train') };
    await writeFileAtomic(recipePath, JSON.stringify({ description: `tuned by tune (${metric}, budget ${o.budget})`, ...recipe }, null, 2) + '\n');
    await writeFileAtomic(
      join(config.out, 'tune.json'),
      JSON.stringify({ best, maxLr, metric, budget: o.budget, budgetUsed: r.budgetUsed, rungs: r.rungs, interrupted: r.interrupted, trials: r.trials }, null, 2) + '\n',
    );
    await writeFileAtomic(
      join(config.out, 'tune.svg'),
      lineChart({
        title: 'Validation loss of the candidates (successive halving)',
        xLabel: 'step',
        yLabel: 'validation loss',
        series: r.trials.map((t) => ({
          name: `wd ${t.weightDecay}, bn ${t.bnMomentum} (${t.steps})`,
          xs: t.curve.map((p) => p.step),
          ys: t.curve.map((p) => p.loss),
          dashed: t.steps !== best.steps,
          opacity: t === best ? 1 : 0.6,
        })),
        yMaxQuantile: 0.95,
      }),
    );
    return { result: r, best, maxLr, recipePath };
  } finally {
    await device.close();
  }
}
