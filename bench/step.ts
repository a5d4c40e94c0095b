// The whole training step of a CIFAR ResNet at batch 128: images/s, ms per phase
// (forward, backward, optimizer; each timed in its own GPU timestamp window),
// dispatches and submits per step, GPU buffers created and live bytes gained per
// step after warm-up (both should be 0). The peer is the same network written
// with tfjs-layers and trained with TF.js's momentum optimizer.
//
// Our model is models/resnet.ts (CifarResNet, option-A shortcuts as in the paper).
//
// The peer's shortcuts are option B (1×1 conv + batchnorm) because tfjs-layers
// has no strided-slice layer for option A; that adds ~1% of the FLOPs to the
// peer's step. The peer's optimizer has no weight decay (a few elementwise ops).
import type { Device } from '../gpu/device.ts';
import { SGD } from '../engine/optim.ts';
import { resnetStep } from './resnetStep.ts';
import { type Tensor, tidy } from '../engine/tensor.ts';
import type { StepFigures, StepResult } from './report.ts';
import type { Scalar } from '@tensorflow/tfjs-core';
import type { TfPeer, TfTensor } from './tfjs.ts';
import { GpuTimer, engineRound, interleave } from './timing.ts';
import { type TorchPeer, type TorchStep, torchStep } from './torchPeer.ts';

export interface StepBenchOptions {
  device: Device;
  timer: GpuTimer | null;
  peer: TfPeer | null;
  quick: boolean;
  log: (msg: string) => void;
  /** run only the steps whose id (step/resnet20/b128) contains this */
  only?: string | null;
  /** the networks and batches to time instead of the defaults (bench --steps 20x128,56x1000); no TF.js peer */
  configs?: { depth: number; batch: number }[] | null;
  /** also time this many steps back to back with one sync at the end (what a training loop gets) */
  pipelineSteps?: number;
  /** PyTorch on this machine as a peer (bench/torchPeer.ts), or null */
  torch?: TorchPeer | null;
  /** 'f16': our step in half precision (f16 activations, the GPU loss scaler), as `train --precision f16` runs it */
  precision?: 'f32' | 'f16';
}

export async function stepBenchmarks(o: StepBenchOptions): Promise<StepResult[]> {
  const out: StepResult[] = [];
  // --quick: batch 16 (a batch-128 step takes 2-3 s on lavapipe); dispatches, submits and growth do not depend on it.
  // ResNet-56 (about 3× ResNet-20's work) gets one measured step and round, and no peer (the peer target is ResNet-20's).
  const configs = o.configs
    ? o.configs.map((c) => ({ ...c, light: false, peer: false }))
    : o.quick
      ? [{ depth: 20, batch: 16, light: false, peer: false }]
      : [{ depth: 20, batch: 128, light: false, peer: true }, { depth: 56, batch: 128, light: true, peer: false }];
  const half = o.precision === 'f16';
  for (const { depth, batch, light, peer } of configs) {
    const id = `step/resnet${depth}/b${batch}${half ? '/f16' : ''}`;
    if (o.only && !id.includes(o.only)) continue;
    o.log(`bench: ResNet-${depth} training step, batch ${batch}${half ? ', f16' : ''}`);
    const r: StepResult = { id, label: `ResNet-${depth} step, batch ${batch}${half ? ', f16' : ''}`, batch, ours: null, peer: null };
    const notes: string[] = [];
    // PyTorch just before and just after ours, so a change in the machine's load shows as a spread
    const torchRuns: TorchStep[] = [];
    const runTorch = (): void => {
      if (!o.torch) return;
      try {
        torchRuns.push(torchStep(o.torch, depth, batch, { warmup: 2, steps: o.quick ? 3 : 5 }));
      } catch (e) {
        notes.push((e as Error).message.split('\n')[0]!);
      }
    };
    runTorch();
    try {
      r.ours = await oursStep(o, depth, batch, light);
    } catch (e) {
      notes.push(`ours failed: ${(e as Error).message.split('\n')[0]}`);
    }
    runTorch();
    if (torchRuns.length) {
      const runs = torchRuns.map((t) => t.images_per_s_pipelined);
      r.torch = { imagesPerSec: runs.reduce((a, b) => a + b) / runs.length, runs, peer: torchRuns[0]!.peer, device: torchRuns[0]!.device };
    }
    if (!o.peer) notes.push('no peer');
    else if (o.quick) notes.push('TF.js step skipped under --quick (about 20 s per step on lavapipe)');
    else if (!peer) notes.push('TF.js not run for this depth');
    else {
      try {
        r.peer = await peerStep(o.peer, depth, batch);
      } catch (e) {
        notes.push(`TF.js failed: ${(e as Error).message.split('\n')[0]}`);
      }
    }
    if (notes.length) r.note = notes.join('; ');
    out.push(r);
  }
  return out;
}

// ------------------------------------------------------------------ ours

async function oursStep(o: StepBenchOptions, depth: number, batch: number, light: boolean): Promise<StepFigures> {
  const { device } = o;
  const { step, forward, optimizer: opt, dispose } = resnetStep(device, depth, batch, { precision: o.precision ?? 'f32' });
  try {
    // warm-up: compiles every pipeline and fills the buffer and texture pools (two steps:
    // the first step's pool is still filling when the second starts recording)
    for (let i = 0; i < 2; i++) step();
    await device.sync();

    const steps = o.quick || light ? 1 : 2;
    const e0 = device.executionStats();
    device.resetPeakMemory();
    const m0 = device.memoryStats();
    for (let i = 0; i < steps; i++) step();
    await device.sync();
    const e1 = device.executionStats();
    const m1 = device.memoryStats();

    const [timed] = await interleave([engineRound(device, o.timer, { record: step })], {
      rounds: o.quick || light ? 1 : 2, warmup: 0, targetMs: 0, maxReps: 1,
    });
    const ms = timed!.gpu?.median ?? timed!.wall.median;
    const fig: StepFigures = {
      imagesPerSec: batch / (timed!.wall.median / 1000),
      msPerStep: timed!,
      dispatchesPerStep: (e1.dispatches - e0.dispatches) / steps,
      submitsPerStep: (e1.submits - e0.submits) / steps,
      buffersCreatedPerStep: (m1.createdBuffers - m0.createdBuffers) / steps,
      liveBytesGrowthPerStep: (m1.liveBytes - m0.liveBytes) / steps,
      peakLiveBytes: m1.peakLiveBytes,
    };
    if (o.pipelineSteps) {
      const t0 = performance.now();
      for (let i = 0; i < o.pipelineSteps; i++) step();
      await device.sync();
      fig.pipelinedImagesPerSec = (batch * o.pipelineSteps) / ((performance.now() - t0) / 1000);
    }
    if (o.timer) fig.phases = { ...(await phases(o, forward, opt)), step: ms };
    return fig;
  } finally {
    dispose();
  }
}

/** Forward, backward and optimizer of one step, each between its own pair of timestamps. */
async function phases(o: StepBenchOptions, forward: () => Tensor, opt: SGD): Promise<Record<string, number>> {
  const { device } = o;
  const timers = [new GpuTimer(device), new GpuTimer(device), new GpuTimer(device)];
  const sums = [0, 0, 0];
  const n = 1;
  try {
    for (let i = 0; i < n; i++) {
      await device.sync();
      tidy(() => {
        timers[0]!.begin();
        const loss = forward();
        timers[0]!.end();
        timers[1]!.begin();
        loss.backward();
        timers[1]!.end();
      });
      timers[2]!.begin();
      opt.step();
      opt.zeroGrad();
      timers[2]!.end();
      await device.sync();
      for (let t = 0; t < 3; t++) sums[t]! += (await timers[t]!.elapsedNs()) / 1e6;
    }
  } finally {
    timers.forEach((t) => t.destroy());
  }
  return { forward: sums[0]! / n, backward: sums[1]! / n, optimizer: sums[2]! / n };
}

// ------------------------------------------------------------------ peer

/** CIFAR ResNet-(6n+2) in tfjs-layers, NHWC, option-B shortcuts. */
function tfResNet(peer: TfPeer, depth: number): ReturnType<TfPeer['layers']['model']> {
  const L = peer.layers.layers;
  const n = (depth - 2) / 6;
  const conv = (filters: number, k: number, stride: number) =>
    L.conv2d({ filters, kernelSize: k, strides: stride, padding: 'same', useBias: false, kernelInitializer: 'heNormal' });
  const bn = () => L.batchNormalization({ axis: 3, momentum: 0.9, epsilon: 1e-5 });
  const relu = () => L.activation({ activation: 'relu' });
  const input = peer.layers.input({ shape: [32, 32, 3] });
  type Sym = ReturnType<typeof peer.layers.input>;
  let x = relu().apply(bn().apply(conv(16, 3, 1).apply(input))) as Sym;
  let channels = 16;
  for (let s = 0; s < 3; s++) {
    const filters = 16 << s;
    for (let b = 0; b < n; b++) {
      const stride = s > 0 && b === 0 ? 2 : 1;
      let y = relu().apply(bn().apply(conv(filters, 3, stride).apply(x))) as Sym;
      y = bn().apply(conv(filters, 3, 1).apply(y)) as Sym;
      const shortcut = stride !== 1 || channels !== filters ? (bn().apply(conv(filters, 1, stride).apply(x)) as Sym) : x;
      x = relu().apply(L.add().apply([y, shortcut])) as Sym;
      channels = filters;
    }
  }
  const pooled = L.globalAveragePooling2d({}).apply(x) as Sym;
  const logits = L.dense({ units: 10 }).apply(pooled) as Sym;
  return peer.layers.model({ inputs: input, outputs: logits });
}

async function peerStep(peer: TfPeer, depth: number, batch: number): Promise<StepFigures> {
  const { tf } = peer;
  const model = tfResNet(peer, depth);
  const opt = tf.train.momentum(0.05, 0.9);
  const x = tf.randomNormal([batch, 32, 32, 3]);
  const y = tf.oneHot(tf.tensor1d(Array.from({ length: batch }, (_, i) => i % 10), 'int32'), 10);
  const step = (): TfTensor[] => {
    opt.minimize(() => tf.losses.softmaxCrossEntropy(y, model.apply(x, { training: true }) as TfTensor) as Scalar, false);
    return [];
  };
  try {
    const check = (): void => {
      const errs = peer.takeErrors();
      if (errs.length) throw new Error(`TF.js WebGPU error: ${errs[0]}`);
    };
    step();
    await peer.sync();
    check();
    const times: number[] = [];
    for (let i = 0; i < 2; i++) {
      const t0 = performance.now();
      step();
      await peer.sync();
      times.push(performance.now() - t0);
      check();
    }
    times.sort((a, b) => a - b);
    const ms = times[0]!;
    const stats = { median: (times[0]! + times[1]!) / 2, min: times[0]!, max: times[1]!, spread: (times[1]! - times[0]!) / ms, rounds: 2, reps: 1 };
    return { imagesPerSec: batch / (stats.median / 1000), msPerStep: { gpu: null, wall: stats } };
  } finally {
    x.dispose();
    y.dispose();
    opt.dispose();
    model.dispose();
  }
}
