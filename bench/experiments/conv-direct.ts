// A direct (no workgroup memory) 3×3 stride-1 conv forward for lavapipe, against
// the engine's conv2d on the same shapes, in GFLOP per CPU-second.
//
// Each thread computes TM output channels × TN consecutive output columns of one
// output row. Per input channel and kernel row it loads 3·TM weights and TN + 2
// input values (the three kernel columns share the row segment) for 3·TM·TN FMAs:
// 22 loads per 96 FMAs at 4×8, where a matmul-shaped register block of the same
// size does 12 loads per 32. Out-of-image taps read a clamped address and are
// multiplied by 0, so there are no branches in the loop. Weights are read in their
// OIHW layout; inputs are NCHW.
//
//   node --import tsx bench/experiments/conv-direct.ts [--batch 32]
import { createDevice } from '../../engine/device.ts';
import { conv2d, noGrad, randn } from '../../engine/index.ts';
import { makeRawDevice, rawTime } from './raw.ts';

const args = process.argv.slice(2);
const batch = Number(args[args.indexOf('--batch') + 1] ?? 0) || 32;

interface Shape {
  cin: number;
  cout: number;
  size: number;
}
const SHAPES: Shape[] = [
  { cin: 16, cout: 16, size: 32 },
  { cin: 32, cout: 32, size: 16 },
  { cin: 64, cout: 64, size: 8 },
];

function source(tm: number, tn: number, wx: number, wy: number): string {
  const acc: string[] = [];
  for (let i = 0; i < tm; i++) for (let j = 0; j < tn; j++) acc.push(`var c${i}_${j} = 0.0;`);
  const body: string[] = [];
  // input row segment iw = ow0 - 1 .. ow0 + tn, clamped, zero outside the image
  for (let t = 0; t < tn + 2; t++) {
    body.push(`let iw${t} = i32(ow0) - 1 + ${t};`);
    body.push(`let x${t} = X[rowBase + u32(clamp(iw${t}, 0, W - 1))] * select(0.0, rowOk, iw${t} >= 0 && iw${t} < W);`);
  }
  for (let i = 0; i < tm; i++) for (let kw = 0; kw < 3; kw++) body.push(`let w${i}_${kw} = Wt[wBase + ${i}u * wStride + ${kw}u];`);
  for (let kw = 0; kw < 3; kw++) for (let i = 0; i < tm; i++) for (let j = 0; j < tn; j++) body.push(`c${i}_${j} = fma(w${i}_${kw}, x${j + kw}, c${i}_${j});`);
  const stores: string[] = [];
  for (let i = 0; i < tm; i++) {
    for (let j = 0; j < tn; j++) stores.push(`if (co0 + ${i}u < p.cout && ow0 + ${j}u < p.w) { Y[((n * p.cout + co0 + ${i}u) * p.h + oh) * p.w + ow0 + ${j}u] = c${i}_${j}; }`);
  }
  return `
struct P { batch: u32, cin: u32, cout: u32, h: u32, w: u32, _p0: u32, _p1: u32, _p2: u32 }
@group(0) @binding(0) var<storage, read> X: array<f32>;
@group(0) @binding(1) var<storage, read> Wt: array<f32>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;
@group(0) @binding(3) var<uniform> p: P;
@compute @workgroup_size(${wx}, ${wy})
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  // x: column blocks of one output row; y: (n, oh); z: output-channel blocks
  let ow0 = g.x * ${tn}u;
  let n = g.y / p.h;
  let oh = g.y % p.h;
  let co0 = g.z * ${tm}u;
  let W = i32(p.w);
  let H = i32(p.h);
  let wStride = p.cin * 9u;
  ${acc.join(' ')}
  for (var ci = 0u; ci < p.cin; ci++) {
    for (var kh = 0u; kh < 3u; kh++) {
      let ih = i32(oh) + i32(kh) - 1;
      let rowOk = select(0.0, 1.0, ih >= 0 && ih < H);
      let rowBase = ((n * p.cin + ci) * p.h + u32(clamp(ih, 0, H - 1))) * p.w;
      let wBase = min(co0, p.cout - 1u) * wStride + ci * 9u + kh * 3u;
      ${body.join('\n      ')}
    }
  }
  ${stores.join('\n  ')}
}`;
}

const CONFIGS = [
  { tm: 4, tn: 8 },
  { tm: 4, tn: 4 },
  { tm: 8, tn: 8 },
];

const engine = await createDevice();
const raw = await makeRawDevice();
console.log(`adapter: ${raw.label}; batch ${batch}; GFLOP per CPU-second (×2 on two idle cores)`);
for (const s of SHAPES) {
  const flops = 2 * batch * s.cout * s.size * s.size * s.cin * 9;
  // the engine's conv2d, timed by CPU time around submit + wait
  const x = randn(engine, [batch, s.cin, s.size, s.size], { seed: 1 });
  const w = randn(engine, [s.cout, s.cin, 3, 3], { seed: 2 });
  const runEngine = async (): Promise<number> => {
    await engine.sync();
    const c0 = process.cpuUsage();
    noGrad(() => conv2d(x, w, null, { padding: 1 })).dispose();
    await engine.sync();
    const c = process.cpuUsage(c0);
    return (c.user + c.system) / 1e3;
  };
  await runEngine();
  const wantT = noGrad(() => conv2d(x, w, null, { padding: 1 }));
  const want = await wantT.toArray();
  wantT.dispose();
  let engineBest = Infinity;
  // the prototype on the raw device, same data
  const xs = await x.toArray();
  const ws = await w.toArray();
  const buf = (data: Float32Array | number, usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST): GPUBuffer => {
    const b = raw.device.createBuffer({ size: typeof data === 'number' ? data : data.byteLength, usage });
    if (typeof data !== 'number') raw.device.queue.writeBuffer(b, 0, data.buffer as ArrayBuffer, data.byteOffset, data.byteLength);
    return b;
  };
  const X = buf(xs);
  const Wt = buf(ws);
  const Y = buf(want.byteLength, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC);
  const readY = buf(want.byteLength, GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST);
  const P = buf(new Uint32Array([batch, s.cin, s.cout, s.size, s.size, 0, 0, 0]) as unknown as Float32Array, GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST);
  const results: string[] = [];
  const protos = CONFIGS.map((c) => {
    const wx = Math.max(1, Math.min(8, s.size / c.tn));
    const k = raw.kernel(source(c.tm, c.tn, wx, 64 / wx), [{ buffer: X }, { buffer: Wt }, { buffer: Y }, { buffer: P }], [
      Math.ceil(s.size / c.tn / wx), Math.ceil((batch * s.size) / (64 / wx)), Math.ceil(s.cout / c.tm),
    ]);
    return { c, k, best: Infinity };
  });
  for (const pr of protos) {
    await rawTime(raw, [pr.k], 1, 0);
    const enc = raw.device.createCommandEncoder();
    enc.copyBufferToBuffer(Y, 0, readY, 0, want.byteLength);
    raw.device.queue.submit([enc.finish()]);
    await readY.mapAsync(GPUMapMode.READ);
    const got = new Float32Array(readY.getMappedRange().slice(0));
    readY.unmap();
    let err = 0;
    for (let i = 0; i < got.length; i += 97) err = Math.max(err, Math.abs(got[i]! - want[i]!));
    if (err > 1e-3) console.log(`  ${pr.c.tm}×${pr.c.tn}: WRONG (max |err| ${err})`);
  }
  for (let r = 0; r < 3; r++) {
    engineBest = Math.min(engineBest, await runEngine());
    for (const pr of protos) pr.best = Math.min(pr.best, (await rawTime(raw, [pr.k], 1, 1)).cpuMs);
  }
  results.push(`engine conv2d ${(flops / (engineBest * 1e6)).toFixed(2)}`);
  for (const pr of protos) results.push(`direct ${pr.c.tm}×${pr.c.tn} ${(flops / (pr.best * 1e6)).toFixed(2)} (${(engineBest / pr.best).toFixed(1)}×)`);
  console.log(`${s.cin}→${s.cout} @${s.size}: ${results.join('   ')}`);
  [X, Wt, Y, readY, P].forEach((b) => b.destroy());
  x.dispose();
  w.dispose();
}
raw.destroy();
engine.destroy();
