// A training session's kernel autotuning (kernels/autotune.ts), before its first
// step: the cache of earlier tunings on this adapter is read into the device policy;
// then, where the policy's autotune is on ('auto': on GPUs, never on software
// adapters), the model's matmul and conv shapes are traced by one forward pass in
// eval mode without gradients (no state changes: running statistics untouched), and
// the shape classes the cache does not have yet are timed and added to it.
import type { Device } from '../gpu/device.ts';
import type { KernelTrace } from '../gpu/policy.ts';
import { type Tensor, noGrad, tidy, zeros } from '../engine/index.ts';
import { autotuneEnabled, loadTuning, tuneConv, tuneMatmul } from '../kernels/autotune.ts';
import { convShapeClass } from '../kernels/conv2dLarge.ts';
import type { ConvGeometry } from '../kernels/convGeometry.ts';
import { shapeClass } from '../kernels/matmul.ts';

interface Traceable {
  forward(x: Tensor): Tensor;
  train(mode?: boolean): unknown;
  training: boolean;
}

type MatmulShape = KernelTrace['matmul'][number];

/** A forward product's two gradient products, as engine/ops/matmul.ts records them. */
export function gradientProducts(f: MatmulShape): MatmulShape[] {
  const { M, N, K, transA: tA, transB: tB } = f;
  const dA = tA ? { transA: tB, transB: true, M: K, N: M, K: N } : { transA: false, transB: !tB, M, N: K, K: N };
  const dB = tB ? { transA: true, transB: tA, M: N, N: K, K: M } : { transA: !tA, transB: false, M: K, N, K: M };
  return [f, dA, dB];
}

/** The matmul and conv shapes one forward pass of `model` on a batch of `input` plans (and the matmuls' gradients). */
export async function traceModel(device: Device, model: Traceable, input: number[]): Promise<{ matmul: MatmulShape[]; conv: ConvGeometry[] }> {
  const trace: KernelTrace = { matmul: [], conv: [] };
  const policy = device.policy;
  const wasTraining = model.training;
  model.train(false);
  device.policy = { ...policy, trace };
  try {
    noGrad(() => tidy(() => void model.forward(zeros(device, input))));
    await device.sync();
  } finally {
    device.policy = policy;
    model.train(wasTraining);
  }
  return { matmul: trace.matmul.flatMap(gradientProducts), conv: trace.conv };
}

/**
 * Reads the tuning cache into the device policy and, where autotuning is on, tunes
 * the model's shape classes the cache lacks. Logs what it did; silent where it is
 * off and nothing was cached.
 */
export async function autotuneSession(device: Device, model: Traceable, input: number[], log: (line: string) => void): Promise<void> {
  const cached = loadTuning(device);
  if (cached) log(`autotune: ${cached.matmul.size} matmul and ${cached.conv.size} conv shape classes of ${device.label} read from ${device.policy.tuningFile}`);
  if (!autotuneEnabled(device)) return;
  const t0 = performance.now();
  const shapes = await traceModel(device, model, input);
  const have = device.policy;
  const mm = new Map<string, MatmulShape>();
  for (const s of shapes.matmul) if (!have.matmul.tuning?.has(shapeClass(s))) mm.set(shapeClass(s), s);
  const cv = new Map<string, ConvGeometry>();
  for (const g of shapes.conv) {
    if ((['forward', 'gradInput', 'gradWeight'] as const).some((p) => !have.conv.tuning?.has(convShapeClass(p, g)))) cv.set(convShapeClass('forward', g), g);
  }
  if (!mm.size && !cv.size) {
    log(`autotune: every shape class of this model is tuned already (${device.policy.tuningFile})`);
    return;
  }
  const make = (shape: number[]): Tensor => zeros(device, shape);
  // 100 ms of timed runs per candidate (after its compile): a ResNet's ~7 geometries × 5 candidates in seconds on a GPU
  const m = await tuneMatmul(device, [...mm.values()], make, { budgetMs: 100 });
  const c = await tuneConv(device, [...cv.values()], make, { budgetMs: 100 });
  const won = [...m, ...c].map((r) => `${r.shape} → ${r.times.find((t) => t.config === r.best)?.name}`);
  log(`autotune: ${m.length} matmul and ${c.length} conv shape classes timed in ${((performance.now() - t0) / 1000).toFixed(1)} s, kept in ${device.policy.tuningFile}`);
  for (const w of won) log(`autotune:   ${w}`);
}
