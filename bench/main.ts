// Kernel microbenchmarks and the training step, ours and TensorFlow.js's WebGPU
// backend side by side on the same adapter, each figure also a fraction of the
// adapter's measured peak.
//
//   node --import tsx bench/main.ts [--quick] [--json out.json] [--compare old.json]
//   node --import tsx bench/main.ts --compare old.json new.json      (no run: compare two files)
//
// Options: --quick (fewer shapes and rounds, < ~2 min on lavapipe), --no-peer
// (skip TF.js), --only <text> (cases and steps whose id or label contains it,
// e.g. 'conv dX' or 'step/resnet20'), --rounds N,
// --threshold F (regression threshold for --compare, default 0.25),
// --dawn-flag <flag> (extra dawn.node flag, repeatable), --no-step, --tune (time
// the matmul kernels on the square shapes first and keep the fastest per shape
// class in .cache/kernel-tuning.json (kernels/autotune.ts), which later runs and training then use),
// --steps 20x128,56x1000 (the ResNet depths and batches to time instead of the
// defaults; no TF.js step), --pipeline N (also time N steps back to back, one sync),
// --torch auto|cpu|cuda|off (PyTorch running bench/torch_step.py just before and just
// after each of our steps: auto = the CPU beside a software adapter, CUDA beside a GPU),
// --precision f16 (our steps in half precision: f16 activations and the GPU loss scaler).
//
// See BENCHMARKS.md for recorded figures and how to read them.
import { execSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { type Device, createDevice } from '../gpu/device.ts';
import { randn } from '../engine/tensor.ts';
import { isSoftwareAdapter } from '../kernels/common.ts';
import { configName } from '../kernels/matmul.ts';
import { loadTuning, tuneMatmul } from '../kernels/autotune.ts';
import { type BenchCase, convCases, matmulCases, memoryCases, optimizerCases } from './cases.ts';
import { COPY_VARIANTS, FMA_VARIANTS, copyCase, fmaCase } from './peak.ts';
import { type BenchResult, type CaseResult, type Peaks, type SideResult, compareResults, formatTable } from './report.ts';
import { stepBenchmarks } from './step.ts';
import { type TorchPeer, findTorch } from './torchPeer.ts';
import { type TfPeer, loadTf, tfRounds } from './tfjs.ts';
import { GpuTimer, type Round, type TimingOptions, engineRound, interleave } from './timing.ts';

/** Dawn quantises timestamps unless this toggle is off (see bench/timing.ts). */
export const BENCH_DAWN_FLAGS = ['disable-dawn-features=timestamp_quantization'];

interface Args {
  quick: boolean;
  json: string | null;
  compare: string[];
  peer: boolean;
  only: string | null;
  rounds: number | null;
  threshold: number;
  dawnFlags: string[];
  step: boolean;
  tune: boolean;
  steps: { depth: number; batch: number }[] | null;
  pipeline: number;
  torch: 'auto' | 'cpu' | 'cuda' | 'off';
  precision: 'f32' | 'f16';
}

function parseArgs(argv: string[]): Args {
  const a: Args = { quick: false, json: null, compare: [], peer: true, only: null, rounds: null, threshold: 0.25, dawnFlags: [], step: true, tune: false, steps: null, pipeline: 0, torch: 'auto', precision: 'f32' };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${arg} needs a value`);
      return v;
    };
    if (arg === '--quick') a.quick = true;
    else if (arg === '--json') a.json = value();
    else if (arg === '--compare') {
      a.compare.push(value());
      if (argv[i + 1] && !argv[i + 1]!.startsWith('--')) a.compare.push(argv[++i]!);
    } else if (arg === '--no-peer') a.peer = false;
    else if (arg === '--no-step') a.step = false;
    else if (arg === '--tune') a.tune = true;
    else if (arg === '--only') a.only = value();
    else if (arg === '--rounds') a.rounds = Number(value());
    else if (arg === '--threshold') a.threshold = Number(value());
    else if (arg === '--dawn-flag') a.dawnFlags.push(value());
    else if (arg === '--steps') {
      a.steps = value().split(',').map((c) => {
        const m = /^(\d+)x(\d+)$/.exec(c.trim());
        if (!m) throw new Error(`--steps: '${c}' is not DEPTHxBATCH (e.g. 56x128)`);
        return { depth: Number(m[1]), batch: Number(m[2]) };
      });
    } else if (arg === '--pipeline') a.pipeline = Number(value());
    else if (arg === '--precision') {
      const v = argv[++i];
      if (v !== 'f32' && v !== 'f16') throw new Error(`--precision: f32 or f16, got '${v}'`);
      a.precision = v;
    } else if (arg === '--torch') {
      const v = value();
      if (v !== 'auto' && v !== 'cpu' && v !== 'cuda' && v !== 'off') throw new Error(`--torch: auto, cpu, cuda or off, got '${v}'`);
      a.torch = v;
    }
    else if (arg === '--help' || arg === '-h') {
      console.log(readFileSync(new URL(import.meta.url), 'utf8').split('\n').filter((l) => l.startsWith('//')).map((l) => l.slice(3)).join('\n'));
      process.exit(0);
    } else throw new Error(`unknown argument ${arg} (see --help)`);
  }
  return a;
}

function gitCommit(): string | null {
  try {
    const dirty = execSync('git status --porcelain --untracked-files=no', { stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim() ? '+dirty' : '';
    return execSync('git rev-parse --short HEAD', { stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim() + dirty;
  } catch {
    return null;
  }
}

const started = performance.now();
function log(msg: string): void {
  process.stderr.write(`[${((performance.now() - started) / 1000).toFixed(0).padStart(4)} s] ${msg}\n`);
}

/** The reference kernels each case is interleaved with, so its peak fraction is measured under the same load. */
interface PeakProbes {
  fma: ReturnType<typeof fmaCase>;
  copy: ReturnType<typeof copyCase>;
}

async function measurePeaks(device: Device, timer: GpuTimer | null, o: TimingOptions, quick: boolean): Promise<{ peak: Peaks; probes: PeakProbes }> {
  // A discrete GPU does lavapipe's ~60 GFLOP/s a thousand times over and has an L2 of tens of
  // MB: its loops and copies are sized up so each runs for milliseconds, from DRAM.
  const gpu = !isSoftwareAdapter(device);
  const fmaFlops = gpu ? 4e11 : 1e9;
  const fmaInvocations = gpu ? 1 << 20 : 64 * 1024;
  const copyBytes = gpu ? 512 << 20 : 32 << 20;
  const fmaAll: Record<string, number> = {};
  let best = { gflops: 0, name: '', variant: FMA_VARIANTS[0]! };
  for (const v of quick ? FMA_VARIANTS.slice(0, 3) : FMA_VARIANTS) {
    const c = fmaCase(device, v, fmaFlops, fmaInvocations);
    const [m] = await interleave([engineRound(device, timer, c)], o);
    c.dispose();
    const ms = m!.gpu?.median ?? m!.wall.median;
    const g = c.flops / (ms * 1e6);
    const name = `${v.chains}×${v.vec === 4 ? 'vec4' : 'f32'} chains, ×${v.unroll} unrolled, wg ${v.workgroup}`;
    fmaAll[name] = g;
    if (g > best.gflops) best = { gflops: g, name, variant: v };
  }
  const copyAll: Record<string, number> = {};
  let bestCopy = { gbs: 0, name: '', variant: COPY_VARIANTS[0]! };
  let memcpy = 0;
  for (const v of [...(quick ? COPY_VARIANTS.slice(0, 2) : COPY_VARIANTS), 'copyBufferToBuffer' as const]) {
    const copy = copyCase(device, copyBytes, v);
    const [cm] = await interleave([engineRound(device, timer, copy)], o);
    copy.dispose();
    const gbs = copy.bytes / ((cm!.gpu?.median ?? cm!.wall.median) * 1e6);
    if (v === 'copyBufferToBuffer') {
      memcpy = gbs;
      continue;
    }
    const name = `${v.vec === 4 ? 'vec4' : 'f32'}×${v.per} per invocation, wg ${v.workgroup}`;
    copyAll[name] = gbs;
    if (gbs > bestCopy.gbs) bestCopy = { gbs, name, variant: v };
  }
  const peak: Peaks = {
    fmaGflops: best.gflops, fmaVariant: best.name, fmaAll,
    copyGBs: bestCopy.gbs, copyVariant: bestCopy.name, copyAll, copyBufferToBufferGBs: memcpy,
  };
  // smaller versions of the best FMA loop and copy kernel, run beside every case
  return {
    peak,
    probes: { fma: fmaCase(device, best.variant, fmaFlops / 5, fmaInvocations), copy: copyCase(device, copyBytes / 4, bestCopy.variant) },
  };
}

async function runCase(
  c: BenchCase, device: Device, timer: GpuTimer | null, peer: TfPeer | null, o: TimingOptions, quick: boolean, probes: PeakProbes,
): Promise<CaseResult> {
  const res: CaseResult = { id: c.id, group: c.group, label: c.label, ours: null, peer: null };
  if (c.flops !== undefined) res.flops = c.flops;
  if (c.bytes !== undefined) res.bytes = c.bytes;
  if (c.detail) res.detail = c.detail();
  const ours = c.ours ? c.ours(device) : null;
  let peerCase = null;
  if (!peer) res.peerNote = 'no peer';
  else if (!c.peer) res.peerNote = 'no TF.js equivalent';
  else if (quick && c.peerFullOnly) res.peerNote = 'skipped under --quick';
  else {
    try {
      peerCase = c.peer(peer.tf);
    } catch (e) {
      res.peerNote = `TF.js failed: ${(e as Error).message.split('\n')[0]}`;
    }
  }
  const sides: Round[] = [];
  const kinds: string[] = [];
  if (ours) {
    sides.push(engineRound(device, timer, ours));
    kinds.push('ours');
    // the adapter's peak, interleaved with the case: its fraction of peak is taken under the same load
    if (c.flops || c.bytes) {
      sides.push(engineRound(device, timer, c.flops ? probes.fma : probes.copy));
      kinds.push('probe');
    }
  }
  if (peerCase && peer) {
    const r = tfRounds(peer, peerCase.run);
    if (r.gpu) {
      sides.push(r.gpu);
      kinds.push('peer-gpu');
    }
    if (!r.gpu || !quick) {
      sides.push(r.wall);
      kinds.push('peer-wall');
    }
  }
  try {
    const ms = await interleave(sides, o);
    const peerSide: Partial<SideResult> = {};
    ms.forEach((m, i) => {
      if (kinds[i] === 'ours') res.ours = m;
      else if (kinds[i] === 'probe') {
        const st = m.gpu ?? m.wall;
        const work = c.flops ? probes.fma.flops : probes.copy.bytes;
        res.localPeak = work / (st.median * 1e6);
        res.localPeakBest = work / (st.min * 1e6);
      } else if (kinds[i] === 'peer-gpu') {
        peerSide.gpu = m.gpu;
        peerSide.wall = m.wall; // profiled wall: replaced by the unprofiled one when measured
      } else {
        peerSide.wall = m.wall;
        peerSide.gpu ??= null;
      }
    });
    if (peerSide.wall) res.peer = { gpu: peerSide.gpu ?? null, wall: peerSide.wall };
  } catch (e) {
    const msg = (e as Error).message;
    if (/TF\.js/.test(msg)) res.peerNote = msg.split('\n')[0];
    else res.error = msg;
  } finally {
    ours?.dispose();
    peerCase?.dispose();
  }
  return res;
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  if (args.compare.length === 2) {
    const [a, b] = args.compare.map((f) => JSON.parse(readFileSync(f, 'utf8')) as BenchResult);
    const { text, regressions } = compareResults(a!, b!, { threshold: args.threshold });
    console.log(text);
    process.exitCode = regressions ? 1 : 0;
    return;
  }
  const t0 = performance.now();
  const dawnFlags = [...BENCH_DAWN_FLAGS, ...args.dawnFlags];
  const device = await createDevice({ dawnFlags });
  // what earlier tunings found on this adapter (as training sessions do)
  if (loadTuning(device)) log(`bench: kernel tuning of ${device.label} read from ${device.policy.tuningFile}`);
  const timer = device.hasTimestampQuery ? new GpuTimer(device) : null;
  const o: TimingOptions = args.quick
    ? { rounds: args.rounds ?? 3, warmup: 1, targetMs: 60, maxReps: 20 }
    : { rounds: args.rounds ?? 7, warmup: 2, targetMs: 200, maxReps: 50 };
  const polling = device.pollIntervalMs > 0 ? `dawn.node polled every ${device.pollIntervalMs} ms` : 'dawn.node polling continuously';
  log(`bench: adapter ${device.label}; timing ${timer ? 'GPU timestamps' : 'wall clock'}; ${polling}; ${args.quick ? 'quick' : 'full'} run`);

  let peer: TfPeer | null = null;
  let peerDesc = 'none (--no-peer)';
  if (args.peer) {
    const loaded = await loadTf(dawnFlags);
    peer = loaded.peer;
    peerDesc = peer ? `TensorFlow.js ${peer.tf.version_core} WebGPU backend (${peer.hasTimestampQuery ? 'kernel times from tf.time' : 'wall clock'})` : `unavailable: ${loaded.why}`;
    log(`bench: peer ${peerDesc}`);
  }

  let tuning: BenchResult['meta']['tuning'];
  if (args.tune) {
    log(`bench: tuning matmul for the square shapes (results kept in ${device.policy.tuningFile})`);
    const sizes = args.quick ? [256, 512, 1024] : [256, 512, 1024, 2048];
    const res = await tuneMatmul(device, sizes.map((n) => ({ transA: false, transB: false, M: n, N: n, K: n })), (s) => randn(device, s, { seed: 9 }));
    tuning = res.map((r) => ({
      shape: r.shape,
      best: configName(r.best),
      times: Object.fromEntries(r.times.map((t) => [t.name, t.ms])),
    }));
    for (const t of tuning) log(`bench:   ${t.shape}: ${t.best}`);
  }

  log('bench: peaks');
  const { peak, probes } = await measurePeaks(device, timer, o, args.quick);
  const all: BenchCase[] = [
    ...matmulCases(args.quick, device),
    ...convCases(args.quick, device),
    ...memoryCases(args.quick, device),
    ...optimizerCases(args.quick, device),
  ];
  const only = args.only;
  const cases = only ? all.filter((c) => c.id.includes(only) || c.label.includes(only)) : all;
  // keep each group's cases together (the case lists interleave groups by shape)
  const order = [...new Set(cases.map((c) => c.group))];
  cases.sort((a, b) => order.indexOf(a.group) - order.indexOf(b.group));
  const results: CaseResult[] = [];
  for (const c of cases) {
    log(`bench: ${c.label}`);
    results.push(await runCase(c, device, timer, peer, o, args.quick, probes));
  }
  // PyTorch beside the step: on the CPU beside a software adapter, on CUDA beside a GPU
  let torch: TorchPeer | null = null;
  let torchDesc = 'off (--torch off)';
  if (args.step && args.torch !== 'off') {
    const found = findTorch(args.torch === 'auto' ? (isSoftwareAdapter(device) ? 'cpu' : 'cuda') : args.torch);
    torch = 'peer' in found ? found.peer : null;
    torchDesc = 'peer' in found ? `PyTorch ${found.peer.version} on ${found.peer.device} (${found.peer.device === 'cpu' ? `${found.peer.threads} threads` : 'cuDNN'})` : `skipped: ${found.why}`;
    log(`bench: step peer ${torchDesc}`);
  }
  // --only also selects training steps by id (e.g. --only step/resnet20)
  const steps = args.step
    ? await stepBenchmarks({ device, timer, peer, quick: args.quick, log, only, configs: args.steps, pipelineSteps: args.pipeline, torch, precision: args.precision })
    : [];

  const load = os.loadavg();
  const result: BenchResult = {
    meta: {
      date: new Date().toISOString(),
      command: `node --import tsx bench/main.ts ${process.argv.slice(2).join(' ')}`.trim(),
      adapter: device.label,
      node: process.version,
      platform: `${os.platform()} ${os.release()} ${os.arch()}`,
      cpus: `${os.cpus().length}× ${os.cpus()[0]?.model ?? '?'}`,
      loadAverage: load,
      gitCommit: gitCommit(),
      ...(tuning ? { tuning } : {}),
      dawnFlags,
      timing: timer ? 'gpu-timestamps' : 'wall-clock',
      pollIntervalMs: device.pollIntervalMs,
      quick: args.quick,
      peer: peerDesc,
      torchPeer: torchDesc,
    },
    peak,
    cases: results,
    steps,
  };
  console.log(formatTable(result));
  console.log(`\n(${((performance.now() - t0) / 1000).toFixed(0)} s)`);
  if (args.json) {
    writeFileSync(args.json, JSON.stringify(result, null, 1));
    log(`bench: wrote ${args.json}`);
  }
  if (args.compare.length === 1) {
    const old = JSON.parse(readFileSync(args.compare[0]!, 'utf8')) as BenchResult;
    const { text, regressions } = compareResults(old, result, { threshold: args.threshold });
    console.log(`\n${text}`);
    if (regressions) process.exitCode = 1;
  }
  probes.fma.dispose();
  probes.copy.dispose();
  timer?.destroy();
  peer?.destroy();
  device.destroy();
}

await main();
