// What one load costs on this adapter, by memory kind: a loop of vec4 loads
// (each feeding one vec4 fma) from a storage buffer, workgroup memory, a uniform
// buffer, a sampled texture and a read-only storage texture, against the same
// loop computing its value instead of loading it. Reported in CPU cycles per
// 8-lane vec4 load on software adapters (process CPU time × the clock given with
// --ghz, which is robust to other processes sharing the machine) and in ns of
// GPU time per invocation-load everywhere.
//
//   node --import tsx bench/experiments/lavapipe-loads.ts [--ghz 2.45] [--dawn-flag enable-dawn-features=disable_robustness]
//
// Findings on lavapipe (Mesa 25.0.7, LLVM 15, 2 cores AVX2; BENCHMARKS.md): every
// load is split into per-lane scalar accesses — storage buffer ~100 cycles per
// 8-lane vec4 (descriptor lookup and bounds check per lane), workgroup memory
// ~200, uniform buffer ~55 (a branch-free gather), read-only storage texture ~35.
import { makeRawDevice, rawTime } from './raw.ts';

const args = process.argv.slice(2);
const ghz = Number(args[args.indexOf('--ghz') + 1] ?? 0) || 2.45;
const flags = args.flatMap((a, i) => (args[i - 1] === '--dawn-flag' ? [a] : []));

const ITERS = 256;
const INVOCATIONS = 64 * 256;
const LOADS = 4; // per iteration

const DECL: Record<string, string> = {
  compute: '@group(0) @binding(0) var<storage, read> S: array<vec4<f32>>;',
  storage: '@group(0) @binding(0) var<storage, read> S: array<vec4<f32>>;',
  workgroup: 'var<workgroup> S: array<vec4<f32>, 1024>; @group(0) @binding(0) var<storage, read> D: array<vec4<f32>>;',
  uniform: '@group(0) @binding(0) var<uniform> S: array<vec4<f32>, 4096>;',
  texture: '@group(0) @binding(0) var T: texture_2d<f32>;',
  storageTexture: '@group(0) @binding(0) var T: texture_storage_2d<rgba32float, read>;',
  storageUniform: '@group(0) @binding(0) var<storage, read> S: array<vec4<f32>>;',
  storageTextureUniform: '@group(0) @binding(0) var T: texture_storage_2d<rgba32float, read>;',
  uniformUniform: '@group(0) @binding(0) var<uniform> S: array<vec4<f32>, 4096>;',
  workgroupUniform: 'var<workgroup> S: array<vec4<f32>, 1024>; @group(0) @binding(0) var<storage, read> D: array<vec4<f32>>;',
};

function load(kind: string, idx: string): string {
  switch (kind) {
    case 'storage': return `S[${idx}]`;
    case 'workgroup': return `S[(${idx}) & 1023u]`;
    case 'uniform': return `S[(${idx}) & 4095u]`;
    case 'texture': return `textureLoad(T, vec2<u32>((${idx}) & 1023u, ((${idx}) >> 10u) & 1023u), 0)`;
    case 'storageTexture': return `textureLoad(T, vec2<u32>((${idx}) & 1023u, ((${idx}) >> 10u) & 1023u))`;
    // the same address in every lane of the workgroup (derived from workgroup_id and the loop counter only)
    case 'storageUniform': return `S[(${idx.replace('li', 'wid.x')}) & 65535u]`;
    case 'uniformUniform': return `S[(${idx.replace('li', 'wid.x')}) & 4095u]`;
    case 'workgroupUniform': return `S[(${idx.replace('li', 'wid.x')}) & 1023u]`;
    case 'storageTextureUniform': return `textureLoad(T, vec2<u32>((${idx.replace('li', 'wid.x')}) & 1023u, 0u))`;
    default: return `vec4<f32>(f32(${idx}))`;
  }
}

function source(kind: string): string {
  const acc = Array.from({ length: LOADS }, (_, j) => `var a${j} = vec4<f32>(f32(li));`).join(' ');
  const body = Array.from({ length: LOADS }, (_, j) => `{ let v = ${load(kind, `li + i * 64u + ${j * 16}u`)}; a${j} = fma(a${j}, v, m); }`);
  return `${DECL[kind]}
@group(0) @binding(1) var<storage, read_write> out: array<vec4<f32>>;
@group(0) @binding(2) var<uniform> p: vec4<u32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  ${kind.startsWith('workgroup') ? 'S[li] = D[li]; S[li + 64u] = D[li]; workgroupBarrier();' : ''}
  let m = vec4<f32>(bitcast<f32>(p.y));
  ${acc}
  for (var i = 0u; i < p.x; i++) {
    ${body.join('\n    ')}
  }
  out[gid.x] = ${Array.from({ length: LOADS }, (_, j) => `a${j}`).join(' + ')}${kind === 'compute' ? ' + S[li]' : ''};
}`;
}

const dev = await makeRawDevice(flags);
const gpu = dev.device;
const storage = gpu.createBuffer({ size: 1 << 22, usage: GPUBufferUsage.STORAGE });
const uniform = gpu.createBuffer({ size: 65536, usage: GPUBufferUsage.UNIFORM });
const out = gpu.createBuffer({ size: INVOCATIONS * 16, usage: GPUBufferUsage.STORAGE });
const params = gpu.createBuffer({ size: 16, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
gpu.queue.writeBuffer(params, 0, new Uint32Array([ITERS, 0x3f7ff972, 0, 0]));
const tex = gpu.createTexture({ size: [1024, 1024], format: 'rgba32float', usage: GPUTextureUsage.TEXTURE_BINDING | GPUTextureUsage.STORAGE_BINDING });

const kinds = ['compute', 'storage', 'workgroup', 'uniform', 'texture', 'storageTexture', 'storageUniform', 'storageTextureUniform', 'uniformUniform', 'workgroupUniform'];
const best: Record<string, { cpu: number; gpu: number }> = {};
for (let round = 0; round < 3; round++) {
  for (const kind of kinds) {
    const first: GPUBindingResource = kind.startsWith('uniform') ? { buffer: uniform } : kind.includes('exture') ? tex.createView() : { buffer: storage };
    const k = dev.kernel(source(kind), [first, { buffer: out }, { buffer: params }], [INVOCATIONS / 64]);
    const t = await rawTime(dev, [k], 2);
    const per = INVOCATIONS * ITERS * LOADS;
    const prev = best[kind];
    best[kind] = { cpu: Math.min(prev?.cpu ?? Infinity, t.cpuMs), gpu: Math.min(prev?.gpu ?? Infinity, t.gpuMs) };
    void per;
  }
}
const per = INVOCATIONS * ITERS * LOADS;
const base = best.compute!;
console.log(`adapter: ${dev.label}${flags.length ? `; flags ${flags.join(' ')}` : ''}`);
console.log('kind             cycles/8-lane vec4 load (net of compute)   GPU ns per invocation-load (net)');
for (const kind of kinds) {
  const b = best[kind]!;
  const cycles = ((b.cpu - base.cpu) * 1e6 * ghz) / (per / 8);
  const ns = ((b.gpu - base.gpu) * 1e6) / per;
  console.log(`${kind.padEnd(16)} ${cycles.toFixed(1).padStart(10)}                                  ${ns.toFixed(3).padStart(8)}`);
}
dev.destroy();
