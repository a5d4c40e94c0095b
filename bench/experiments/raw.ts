// Raw WebGPU for kernel experiments that the engine's Device cannot express yet
// (texture bindings, the subgroups feature): a device on dawn.node, kernels with
// their own bind groups, and a timer giving GPU time (timestamp queries) and the
// process's CPU time per repetition. On a software adapter CPU time is the work
// itself and barely moves when other processes load the machine, so experiments
// compare it rather than wall or GPU time.
import { create, globals } from 'webgpu';

export interface RawKernel {
  pipeline: GPUComputePipeline;
  group: GPUBindGroup;
  grid: [number, number, number];
}

export interface RawDevice {
  device: GPUDevice;
  label: string;
  hasSubgroups: boolean;
  kernel(code: string, resources: GPUBindingResource[], grid: [number, number?, number?]): RawKernel;
  destroy(): void;
}

// dawn.node crashes if its instance is collected while a device lives
let instance: GPU | null = null;

export async function makeRawDevice(extraFlags: string[] = [], wantSubgroups = false): Promise<RawDevice> {
  Object.assign(globalThis, globals);
  instance = create(['disable-dawn-features=timestamp_quantization', ...extraFlags]);
  const adapter = await instance.requestAdapter();
  if (!adapter) throw new Error('no WebGPU adapter');
  const features: GPUFeatureName[] = ['timestamp-query'];
  const hasSubgroups = wantSubgroups && adapter.features.has('subgroups');
  if (hasSubgroups) features.push('subgroups' as GPUFeatureName);
  const device = await adapter.requestDevice({
    requiredFeatures: features,
    requiredLimits: { maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize, maxBufferSize: adapter.limits.maxBufferSize, maxTextureDimension2D: adapter.limits.maxTextureDimension2D, maxTextureArrayLayers: adapter.limits.maxTextureArrayLayers },
  });
  const i = adapter.info;
  const errors: string[] = [];
  device.addEventListener('uncapturederror', (e: Event) => errors.push((e as GPUUncapturedErrorEvent).error.message));
  return {
    device,
    label: [i.vendor, i.architecture, i.device, i.description].filter((s) => s).join(' '),
    hasSubgroups,
    kernel(code, resources, grid) {
      const module = device.createShaderModule({ code });
      const pipeline = device.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: 'main' } });
      const group = device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries: resources.map((r, b) => ({ binding: b, resource: r })) });
      if (errors.length) throw new Error(errors.join('\n'));
      return { pipeline, group, grid: [grid[0], grid[1] ?? 1, grid[2] ?? 1] };
    },
    destroy() {
      device.destroy();
      instance = null;
    },
  };
}

/**
 * Runs the kernels in sequence `reps` times per round (one compute pass, timestamps
 * at its ends), one warm-up round then `rounds` rounds; the best round's GPU time
 * and CPU time per repetition, in ms.
 */
export async function rawTime(dev: RawDevice, kernels: RawKernel[], reps: number, rounds = 3): Promise<{ gpuMs: number; cpuMs: number }> {
  const { device } = dev;
  const qs = device.createQuerySet({ type: 'timestamp', count: 2 });
  const resolve = device.createBuffer({ size: 16, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
  const readback = device.createBuffer({ size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  let gpuMs = Infinity;
  let cpuMs = Infinity;
  try {
    for (let r = 0; r <= rounds; r++) {
      const n = r === 0 ? 1 : reps;
      const cpu0 = process.cpuUsage();
      const enc = device.createCommandEncoder();
      const pass = enc.beginComputePass({ timestampWrites: { querySet: qs, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 } });
      for (let i = 0; i < n; i++) {
        for (const k of kernels) {
          pass.setPipeline(k.pipeline);
          pass.setBindGroup(0, k.group);
          pass.dispatchWorkgroups(...k.grid);
        }
      }
      pass.end();
      enc.resolveQuerySet(qs, 0, 2, resolve, 0);
      enc.copyBufferToBuffer(resolve, 0, readback, 0, 16);
      device.queue.submit([enc.finish()]);
      await readback.mapAsync(GPUMapMode.READ);
      const t = new BigUint64Array(readback.getMappedRange().slice(0));
      readback.unmap();
      const cu = process.cpuUsage(cpu0);
      if (r === 0) continue;
      gpuMs = Math.min(gpuMs, Number(t[1]! - t[0]!) / 1e6 / n);
      cpuMs = Math.min(cpuMs, (cu.user + cu.system) / 1e3 / n);
    }
  } finally {
    qs.destroy();
    resolve.destroy();
    readback.destroy();
  }
  return { gpuMs, cpuMs };
}
