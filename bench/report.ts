// Results: the JSON a run writes, the table it prints, the check of the issue's
// targets, and the comparison of two result files (regression check).
//
// Every time is milliseconds per repetition. A side's figure is its GPU
// (timestamp) median where it has one, else its wall-clock median; a ratio to
// the peer compares like with like (GPU with GPU, else wall with wall).
import type { Stats } from './timing.ts';

export interface SideResult {
  gpu: Stats | null;
  wall: Stats;
}

export interface CaseResult {
  id: string;
  group: string;
  label: string;
  flops?: number;
  bytes?: number;
  ours: SideResult | null;
  peer: SideResult | null;
  error?: string;
  /** why the peer has no figure (skipped, unsupported, failed) */
  peerNote?: string;
  /** which of our kernels ran */
  detail?: string;
  /** the peak (GFLOP/s of the FMA loop, or GB/s of the copy) measured in rounds interleaved with this case: median round */
  localPeak?: number;
  /** … and its best round */
  localPeakBest?: number;
}

export interface StepResult {
  id: string;
  label: string;
  batch: number;
  ours: StepFigures | null;
  peer: StepFigures | null;
  /** PyTorch on the same machine (bench/torchPeer.ts): measured just before and just after ours */
  torch?: TorchFigure;
  note?: string;
}

export interface TorchFigure {
  /** mean of the runs before and after ours, steps back to back */
  imagesPerSec: number;
  runs: number[];
  peer: string;
  device: string;
}

export interface StepFigures {
  imagesPerSec: number;
  msPerStep: SideResult;
  /** milliseconds per phase (forward, backward, optimizer), measured separately */
  phases?: Record<string, number>;
  dispatchesPerStep?: number;
  submitsPerStep?: number;
  /** GPU buffers created per step after warm-up (0 = no growth) */
  buffersCreatedPerStep?: number;
  /** live bytes change per step after warm-up */
  liveBytesGrowthPerStep?: number;
  /** the most bytes live tensors held during a step (pool buckets, textures included) */
  peakLiveBytes?: number;
  /** images/s over steps recorded back to back with one sync at the end (bench --pipeline N) */
  pipelinedImagesPerSec?: number;
}

export interface Peaks {
  /** best of the FMA-loop variants */
  fmaGflops: number;
  fmaVariant: string;
  fmaAll: Record<string, number>;
  /** bytes read + bytes written per second: best of the copy kernels */
  copyGBs: number;
  copyVariant: string;
  copyAll: Record<string, number>;
  /** the queue's copyBufferToBuffer, for reference (a memcpy on software adapters) */
  copyBufferToBufferGBs: number;
}

export interface BenchResult {
  meta: {
    date: string;
    command: string;
    adapter: string;
    node: string;
    platform: string;
    cpus: string;
    loadAverage: number[];
    gitCommit: string | null;
    /** matmul tuning done by --tune in this run */
    tuning?: { shape: string; best: string; times: Record<string, number> }[];
    dawnFlags: string[];
    timing: 'gpu-timestamps' | 'wall-clock';
    quick: boolean;
    peer: string;
    /** PyTorch as the step peer (bench/torchPeer.ts), or why not */
    torchPeer?: string;
    /** ms between dawn.node's device ticks while a promise is pending; 0: continuous (gpu/poll.ts); absent before 2026-12-06 (continuous) */
    pollIntervalMs?: number;
  };
  peak: Peaks;
  cases: CaseResult[];
  steps: StepResult[];
}

/** The figure a side is judged by, and how it was measured. */
export function figure(s: SideResult | null): { ms: number; how: 'gpu' | 'wall' } | null {
  if (!s) return null;
  return s.gpu ? { ms: s.gpu.median, how: 'gpu' } : { ms: s.wall.median, how: 'wall' };
}

/** Peer time / our time (>1: we are faster), like with like. */
export function peerRatio(c: { ours: SideResult | null; peer: SideResult | null }): number | null {
  if (!c.ours || !c.peer) return null;
  if (c.ours.gpu && c.peer.gpu) return c.peer.gpu.median / c.ours.gpu.median;
  return c.peer.wall.median / c.ours.wall.median;
}

export interface Rate {
  value: number;
  unit: 'GFLOP/s' | 'GB/s';
  /** fraction of the adapter's peak (FMA loop or copy), as measured beside the case when it was */
  ofPeak: number;
}

export function rate(c: CaseResult, peak: Peaks, side: SideResult | null = c.ours): Rate | null {
  const f = figure(side);
  if (!f) return null;
  if (c.flops) {
    const v = c.flops / (f.ms * 1e6);
    return { value: v, unit: 'GFLOP/s', ofPeak: v / (c.localPeak ?? peak.fmaGflops) };
  }
  if (c.bytes) {
    const v = c.bytes / (f.ms * 1e6);
    return { value: v, unit: 'GB/s', ofPeak: v / (c.localPeak ?? peak.copyGBs) };
  }
  return null;
}

// ------------------------------------------------------------------ table

const fmtMs = (ms: number): string => (ms >= 100 ? ms.toFixed(0) : ms >= 10 ? ms.toFixed(1) : ms >= 1 ? ms.toFixed(2) : ms.toFixed(3));
const pad = (s: string, n: number): string => (s.length >= n ? s : s + ' '.repeat(n - s.length));
const lpad = (s: string, n: number): string => (s.length >= n ? s : ' '.repeat(n - s.length) + s);

function row(cols: string[], widths: number[]): string {
  return cols.map((c, i) => (i === 0 ? pad(c, widths[i]!) : lpad(c, widths[i]!))).join('  ');
}

/** The readable table: one line per case with its rate, fraction of peak and ratio to the peer. */
export function formatTable(r: BenchResult): string {
  const out: string[] = [];
  const m = r.meta;
  out.push(`adapter: ${m.adapter}`);
  out.push(`timing: ${m.timing}; peer: ${m.peer}${m.torchPeer ? `; step peer: ${m.torchPeer}` : ''}; load average ${m.loadAverage.map((x) => x.toFixed(2)).join(' ')}`);
  out.push(
    `peak: FMA loop ${r.peak.fmaGflops.toFixed(1)} GFLOP/s (${r.peak.fmaVariant}); copy kernel ${r.peak.copyGBs.toFixed(2)} GB/s ` +
      `(read + write; ${r.peak.copyVariant}); copyBufferToBuffer ${r.peak.copyBufferToBufferGBs.toFixed(1)} GB/s`,
  );
  out.push('"of peak" divides by the peak re-measured in rounds interleaved with each case (same machine load)');
  const widths = [52, 9, 5, 16, 7, 10, 8];
  out.push('');
  out.push(row(['case', 'ours ms', '±', 'rate', 'of peak', 'TF.js ms', '×TF.js'], widths));
  let group = '';
  for (const c of r.cases) {
    if (c.group !== group) {
      group = c.group;
      out.push(`-- ${group}`);
    }
    if (c.error) {
      out.push(row([c.label, 'error', '', '', '', '', ''], widths) + `  ${c.error.split('\n')[0]}`);
      continue;
    }
    const f = figure(c.ours);
    const s = c.ours ? (c.ours.gpu ?? c.ours.wall) : null;
    const rt = rate(c, r.peak);
    const pf = figure(c.peer);
    const ratio = peerRatio(c);
    out.push(
      row(
        [
          c.label,
          f ? fmtMs(f.ms) : '-',
          s ? `${Math.round(s.spread * 100)}%` : '',
          rt ? `${rt.value.toFixed(rt.value >= 10 ? 1 : 2)} ${rt.unit}` : '',
          rt ? `${(rt.ofPeak * 100).toFixed(0)}%` : '',
          pf ? fmtMs(pf.ms) : (c.peerNote ? 'n/a' : '-'),
          ratio !== null ? `${ratio.toFixed(ratio >= 10 ? 0 : 1)}×` : '',
        ],
        widths,
      ) + (c.peerNote && !pf ? `  (${c.peerNote})` : ''),
    );
  }
  if (r.steps.length) {
    out.push('');
    out.push('-- training step');
    for (const s of r.steps) {
      if (!s.ours && !s.peer) {
        out.push(`${s.label}: ${s.note ?? 'not measured'}`);
        continue;
      }
      const o = s.ours;
      const p = s.peer;
      const ratio = o && p ? o.imagesPerSec / p.imagesPerSec : null;
      out.push(
        `${s.label}: ours ${o ? `${o.imagesPerSec.toFixed(1)} img/s` : '-'}` +
          (o?.phases ? ` (${Object.entries(o.phases).map(([k, v]) => `${k} ${fmtMs(v)} ms`).join(', ')})` : '') +
          (o?.dispatchesPerStep !== undefined ? `, ${o.dispatchesPerStep} dispatches, ${o.submitsPerStep} submits/step` : '') +
          (o?.buffersCreatedPerStep !== undefined ? `, ${o.buffersCreatedPerStep} buffers created/step, ${o.liveBytesGrowthPerStep} B live growth/step` : '') +
          (o?.peakLiveBytes !== undefined ? `, peak ${(o.peakLiveBytes / 2 ** 20).toFixed(0)} MiB live` : '') +
          (o?.pipelinedImagesPerSec !== undefined ? `, ${o.pipelinedImagesPerSec.toFixed(1)} img/s back to back` : '') +
          `; TF.js ${p ? `${p.imagesPerSec.toFixed(1)} img/s` : '-'}` +
          (ratio !== null ? `; ${ratio.toFixed(1)}× TF.js` : '') +
          (s.torch
            ? `; PyTorch (${s.torch.device}) ${s.torch.imagesPerSec.toFixed(1)} img/s (runs ${s.torch.runs.map((r) => r.toFixed(0)).join(', ')})` +
              (o ? `: ours ${(o.imagesPerSec / s.torch.imagesPerSec).toFixed(2)}×` : '')
            : '') +
          (s.note ? `  (${s.note})` : ''),
      );
    }
  }
  out.push('');
  out.push(...formatTargets(r));
  return out.join('\n');
}

/** The issue's targets, each marked met / NOT met / not measured, with the figure. */
export function formatTargets(r: BenchResult): string[] {
  const out = ['targets (figures from this run):'];
  const mark = (ok: boolean | null): string => (ok === null ? '[ n/a ]' : ok ? '[ met ]' : '[ NOT met ]');
  const mm = r.cases.find((c) => c.id === 'matmul/1024x1024x1024');
  const mmRate = mm ? rate(mm, r.peak) : null;
  out.push(
    `  ${mark(mmRate ? mmRate.ofPeak >= 0.6 : null)} matmul 1024³ ≥ 60% of the FMA peak: ` +
      (mmRate ? `${(mmRate.ofPeak * 100).toFixed(0)}% (${mmRate.value.toFixed(1)} of ${(mm!.localPeak ?? r.peak.fmaGflops).toFixed(1)} GFLOP/s)` : 'not measured'),
  );
  const convs = r.cases.filter((c) => c.group === 'conv2d' && !c.error);
  const ratios = convs.map((c) => peerRatio(c)).filter((x): x is number => x !== null);
  if (ratios.length) {
    const worst = Math.min(...ratios);
    const worstCase = convs.find((c) => peerRatio(c) === worst)!;
    out.push(`  ${mark(worst >= 5)} every conv2d kernel ≥ 5× TF.js: worst ${worst.toFixed(1)}× (${worstCase.label}), ${ratios.filter((x) => x >= 5).length}/${ratios.length} cases ≥ 5×`);
  } else out.push(`  ${mark(null)} every conv2d kernel ≥ 5× TF.js: not measured`);
  const step128 = r.steps.find((s) => s.id === 'step/resnet20/b128');
  const sr = step128?.ours && step128.peer ? step128.ours.imagesPerSec / step128.peer.imagesPerSec : null;
  out.push(
    `  ${mark(sr === null ? null : sr >= 10)} ResNet-20 step (batch 128) ≥ 10× TF.js images/s: ` +
      (sr === null ? (step128?.note ?? 'not measured (run without --quick)') : `${sr.toFixed(1)}× (${step128!.ours!.imagesPerSec.toFixed(1)} vs ${step128!.peer!.imagesPerSec.toFixed(1)} img/s)`),
  );
  const tr = step128?.ours && step128.torch?.device === 'cpu' ? step128.ours.imagesPerSec / step128.torch.imagesPerSec : null;
  out.push(
    `  ${mark(tr === null ? null : tr >= 0.4)} ResNet-20 step (batch 128) ≥ 0.4× PyTorch on the CPU: ` +
      (tr === null
        ? step128?.torch === undefined ? 'not measured (no PyTorch, or --quick)' : `not measured (PyTorch ran on ${step128.torch.device})`
        : `${tr.toFixed(2)}× (${step128!.ours!.imagesPerSec.toFixed(1)} vs ${step128!.torch!.imagesPerSec.toFixed(1)} img/s; load average ${r.meta.loadAverage[0]!.toFixed(2)})`),
  );
  // submits and growth per step do not depend on the batch: any ResNet-20 step will do
  const step = step128?.ours ? step128 : r.steps.find((s) => s.id.startsWith('step/resnet20/') && s.ours);
  const subs = step?.ours?.submitsPerStep;
  out.push(`  ${mark(subs === undefined ? null : subs <= 2)} ≤ 2 submits per step: ${subs === undefined ? 'not measured' : subs}`);
  const growth = step?.ours?.buffersCreatedPerStep;
  out.push(
    `  ${mark(growth === undefined ? null : growth === 0 && (step!.ours!.liveBytesGrowthPerStep ?? 0) === 0)} zero growth per step: ` +
      (growth === undefined ? 'not measured' : `${growth} buffers created, ${step!.ours!.liveBytesGrowthPerStep} live bytes per step`),
  );
  return out;
}

// ------------------------------------------------------------------ compare

export interface CompareOptions {
  /** a case regresses when its time grows by more than this fraction */
  threshold: number;
}

/**
 * Compares a new result with an old one case by case, on each side's best round
 * (other processes only ever make a round slower, so the best round is the
 * steadiest estimate on a shared machine). Each case's time is also normalised by
 * the adapter's peak measured in rounds interleaved with that case (its best round
 * too), so a machine that is slower or busier as a whole cancels out; and both
 * runs' ratios to the peer (also interleaved) are shown. A case regresses when both
 * its best time and its peak-normalised best time grow by more than the threshold.
 */
export function compareResults(oldR: BenchResult, newR: BenchResult, o: CompareOptions): { text: string; regressions: number } {
  const out: string[] = [];
  out.push(`old: ${oldR.meta.date} ${oldR.meta.gitCommit ?? ''} (peak ${oldR.peak.fmaGflops.toFixed(1)} GFLOP/s, load ${oldR.meta.loadAverage[0]?.toFixed(2)})`);
  out.push(`new: ${newR.meta.date} ${newR.meta.gitCommit ?? ''} (peak ${newR.peak.fmaGflops.toFixed(1)} GFLOP/s, load ${newR.meta.loadAverage[0]?.toFixed(2)})`);
  if (oldR.meta.adapter !== newR.meta.adapter) out.push(`warning: different adapters (${oldR.meta.adapter} vs ${newR.meta.adapter})`);
  const widths = [52, 9, 9, 8, 10, 9, 9];
  out.push(row(['case (best rounds)', 'old ms', 'new ms', 'change', 'vs peak', 'old ×TF', 'new ×TF'], widths));
  const olds = new Map(oldR.cases.map((c) => [c.id, c]));
  let regressions = 0;
  for (const c of newR.cases) {
    const prev = olds.get(c.id);
    const best = (x: CaseResult | undefined): number | null => {
      const s = x?.ours ? (x.ours.gpu && (!prev?.ours || prev.ours.gpu) ? x.ours.gpu : x.ours.wall) : null;
      return s ? s.min : null;
    };
    const a = best(prev);
    const b = best(c);
    if (!prev || a === null || b === null) continue;
    const change = b / a - 1;
    // time × peak (the peak measured beside the case where it was, else the run's):
    // the time the case would take on an adapter of unit peak, so machine load cancels
    const pk = (r: BenchResult, x: CaseResult): number => x.localPeakBest ?? x.localPeak ?? (x.flops ? r.peak.fmaGflops : r.peak.copyGBs);
    const normChange = (b * pk(newR, c)) / (a * pk(oldR, prev)) - 1;
    // both must agree: load moves the raw time, the probe's own noise moves the normalised one
    const reg = change > o.threshold && normChange > o.threshold;
    if (reg) regressions++;
    const ro = peerRatio(prev);
    const rn = peerRatio(c);
    out.push(
      row(
        [
          c.label,
          fmtMs(a),
          fmtMs(b),
          `${change >= 0 ? '+' : ''}${(change * 100).toFixed(0)}%`,
          `${normChange >= 0 ? '+' : ''}${(normChange * 100).toFixed(0)}%`,
          ro !== null ? `${ro.toFixed(1)}×` : '',
          rn !== null ? `${rn.toFixed(1)}×` : '',
        ],
        widths,
      ) + (reg ? '  REGRESSION' : ''),
    );
  }
  out.push(
    regressions
      ? `${regressions} case(s) slower by more than ${(o.threshold * 100).toFixed(0)}% (best round, raw and normalised by the peak measured beside it)`
      : `no case slower by more than ${(o.threshold * 100).toFixed(0)}% (best round, raw and normalised by the peak measured beside it)`,
  );
  return { text: out.join('\n'), regressions };
}
