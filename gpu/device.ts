// gpu/: the bottom layer. The WebGPU device through Dawn's Node bindings (npm
// `webgpu`), with what an engine needs around it: a size-bucketed buffer pool, a
// pipeline cache keyed by specialisation, bind groups reused across steps, one command
// encoder and one compute pass per submit, a uniform arena so no dispatch creates a
// buffer for its parameters, what the adapter is (software or not, subgroups), and
// errors that surface as JavaScript exceptions naming the kernel. Imports nothing of
// the project: kernels/ (WGSL and dispatch over buffers) sit on it, engine/ on those.
import { create, globals } from 'webgpu';
import { type KernelPolicy, defaultKernelPolicy } from './policy.ts';
import { paceDawnPolling } from './poll.ts';

export interface CreateDeviceOptions {
  /** Dawn toggles/instance flags passed to `create()`, e.g. `['enable-dawn-features=...']`. */
  dawnFlags?: string[];
  powerPreference?: GPUPowerPreference;
  /** the kernel policy (gpu/policy.ts); default: what production runs */
  policy?: KernelPolicy;
  /**
   * How often dawn.node polls the device while one of its promises is pending, in ms
   * (gpu/poll.ts). Default: 1 on software adapters, whose kernels run on the cores the
   * binding's continuous polling would spin on; 0 (continuously, as the binding does) on GPUs.
   */
  pollIntervalMs?: number;
}

export interface MemoryStats {
  /** bytes held by live tensors' buffers (bucket sizes, not logical sizes) */
  liveBytes: number;
  /** bytes sitting in the pool, ready for reuse */
  pooledBytes: number;
  liveBuffers: number;
  pooledBuffers: number;
  /** GPU buffers ever created by the pool */
  createdBuffers: number;
  /** storage textures ever created by the texture pool (their bytes count in liveBytes/pooledBytes) */
  createdTextures: number;
  /** the most liveBytes ever held since the device was created or resetPeakMemory() */
  peakLiveBytes: number;
  /** the largest single buffer (bucket) acquired since then: what the binding-size limit caps */
  largestBufferBytes: number;
}

export interface ExecutionStats {
  dispatches: number;
  submits: number;
  /** bind groups created (the rest of the dispatches found theirs in the cache) */
  bindGroupsCreated: number;
}

/** A storage buffer from the pool; `size` is its bucket size. */
export interface PooledBuffer {
  readonly buffer: GPUBuffer;
  readonly size: number;
}

/** An rgba32float storage texture (2-D array) from the pool, with the view kernels bind. */
export interface PooledTexture {
  readonly texture: GPUTexture;
  readonly view: GPUTextureView;
  readonly key: string;
  readonly bytes: number;
}

/** What a dispatch binds: a whole buffer, a buffer range, or a texture view. */
export type Binding = GPUBuffer | GPUBufferBinding | GPUTextureView;

/**
 * Bytes a dispatch reads and writes beyond what its bindings say (Device.dispatch): a
 * kernel that accumulates into its output (`read`: the output's bytes, read back), or
 * one that touches only part of a binding (negative values take the rest off).
 */
export interface TrafficAdjust {
  read?: number;
  write?: number;
}

/** Bytes read and written by the dispatches (and copies) of one kernel label while Device.countTraffic ran. */
export interface TrafficRow {
  label: string;
  read: number;
  write: number;
  count: number;
}

const UNIFORM_ALIGN = 256; // minUniformBufferOffsetAlignment on every adapter we target
const UNIFORM_ARENA_BYTES = 1 << 20;
const MIN_BUCKET = 256;
/** bind groups kept for reuse (a ResNet-110 step has ~1,500 distinct ones) */
const BIND_GROUP_CACHE = 16384;

let globalsInstalled = false;

/** Buckets grow by powers of two up to 1 MiB, then in quarter steps, so large tensors waste ≤ 25%. */
export function bucketSize(bytes: number): number {
  const b = Math.max(MIN_BUCKET, bytes);
  const p = 2 ** Math.ceil(Math.log2(b));
  if (p <= 1 << 20) return p;
  const quarter = p / 8; // between p/2 and p, steps of p/8
  return Math.ceil(b / quarter) * quarter;
}

/**
 * What the planners in kernels/ decide from: what the adapter is and the kernel policy.
 * A Device is one; tests give a plain object to plan for an adapter they do not have
 * (a discrete GPU's limits and subgroups of 32, say).
 */
export type AdapterProfile = Pick<Device, 'isSoftwareAdapter' | 'hasSubgroups' | 'subgroupSize' | 'limits' | 'policy'>;

/** Dawn's experimental subgroup-matrix feature. */
const SUBGROUP_MATRIX = 'chromium-experimental-subgroup-matrix';

/** One subgroup-matrix shape the adapter offers: left M×K times right K×N into an M×N result. */
export interface SubgroupMatrixConfig {
  M: number;
  N: number;
  K: number;
  componentType: string;
  resultComponentType: string;
}

export class GpuError extends Error {
  override name = 'GpuError';
}

export class Device {
  readonly gpu: GPUDevice;
  readonly adapterInfo: GPUAdapterInfo;
  readonly limits: GPUSupportedLimits;
  readonly hasTimestampQuery: boolean;
  /** Whether the device was created with the 'subgroups' feature (WGSL `enable subgroups;`). */
  readonly hasSubgroups: boolean;
  /** Whether the device was created with 'shader-f16' (WGSL `enable f16;`: the f16-operand kernels). */
  readonly hasShaderF16: boolean;
  /**
   * The subgroup-matrix (tensor core) shapes of Dawn's experimental feature, where the
   * device has it: only when the adapter lists it, which takes the allow_unsafe_apis
   * toggle (kernels/matmulSubgroupMatrix.ts). Empty otherwise (lavapipe).
   */
  readonly subgroupMatrixConfigs: readonly SubgroupMatrixConfig[];
  /** The adapter's subgroup size when it has only one (8 on lavapipe with AVX2), else 0. */
  readonly subgroupSize: number;
  /**
   * A CPU rasteriser (lavapipe/llvmpipe, SwiftShader), where kernels want other shapes
   * than on GPUs. Decided once here: kernels ask per dispatch.
   */
  readonly isSoftwareAdapter: boolean;

  private pool = new Map<number, GPUBuffer[]>();
  private liveBytes = 0;
  private peakLiveBytes = 0;
  private largestBufferBytes = 0;
  private liveBuffers = 0;
  private pooledBytes = 0;
  private pooledBuffers = 0;
  private createdBuffers = 0;
  private texturePool = new Map<string, PooledTexture[]>();
  private createdTextures = 0;

  private pipelines = new Map<string, { pipeline: GPUComputePipeline; label: string }>();
  private layouts = new WeakMap<GPUComputePipeline, GPUBindGroupLayout>();
  private bindGroups = new Map<string, GPUBindGroup>();
  private objectIds = new WeakMap<object, number>();
  private nextObjectId = 1;
  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  /** the pipeline the current pass last set */
  private passPipeline: GPUComputePipeline | null = null;
  private pendingLabels: string[] = [];

  // Uniform arena: parameters of each dispatch are written into a CPU mirror at
  // 256-byte aligned offsets and uploaded with one writeBuffer just before submit.
  private uniformArenas: GPUBuffer[] = [];
  private uniformArenaIndex = 0;
  private uniformMirror = new ArrayBuffer(UNIFORM_ARENA_BYTES);
  private uniformOffset = 0;

  private errors: Promise<GPUError | null>[] = [];
  private uncaptured: string[] = [];
  private destroyed = false;

  private stats: ExecutionStats = { dispatches: 0, submits: 0, bindGroupsCreated: 0 };
  private profiler: KernelProfiler | null = null;
  // Traffic accounting (countTraffic): the bytes each buffer was acquired for (its
  // logical size, not its bucket), each texture view's bytes, and how each pipeline's
  // bindings are declared in its WGSL (read, written, or a uniform block).
  private acquiredBytes = new WeakMap<GPUBuffer, number>();
  private viewBytes = new WeakMap<GPUTextureView, number>();
  private bindingAccess = new WeakMap<GPUComputePipeline, ('r' | 'w' | 'u')[]>();
  private traffic: Map<string, TrafficRow> | null = null;
  // The Dawn instance must outlive the device: if it is garbage-collected, dawn.node's
  // event processing runs on a freed instance and the process crashes at random.
  private instance: GPU | null;

  /** Which kernel variants the kernels may choose (gpu/policy.ts); replaced, never mutated in place, by tests and the bench. */
  policy: KernelPolicy;

  /** ms between dawn.node's device ticks while a promise is pending; 0: continuous (gpu/poll.ts) */
  readonly pollIntervalMs: number;
  private readonly releasePolling: () => void;

  constructor(instance: GPU, gpu: GPUDevice, adapterInfo: GPUAdapterInfo, policy: KernelPolicy = defaultKernelPolicy(), pollIntervalMs?: number) {
    this.policy = policy;
    this.instance = instance;
    this.gpu = gpu;
    this.adapterInfo = adapterInfo;
    this.limits = gpu.limits;
    this.hasTimestampQuery = gpu.features.has('timestamp-query');
    this.hasSubgroups = gpu.features.has('subgroups' as GPUFeatureName);
    this.hasShaderF16 = gpu.features.has('shader-f16');
    const configs = (adapterInfo as GPUAdapterInfo & { subgroupMatrixConfigs?: ArrayLike<Record<string, unknown>> }).subgroupMatrixConfigs;
    this.subgroupMatrixConfigs = gpu.features.has(SUBGROUP_MATRIX as GPUFeatureName)
      ? Array.from(configs ?? [], (c) => ({ M: Number(c.M), N: Number(c.N), K: Number(c.K), componentType: String(c.componentType), resultComponentType: String(c.resultComponentType) }))
      : [];
    const info = adapterInfo as GPUAdapterInfo & { subgroupMinSize?: number; subgroupMaxSize?: number };
    this.subgroupSize = this.hasSubgroups && info.subgroupMinSize === info.subgroupMaxSize ? (info.subgroupMinSize ?? 0) : 0;
    this.isSoftwareAdapter = /llvmpipe|lavapipe|swiftshader/i.test(
      `${adapterInfo.vendor} ${adapterInfo.architecture} ${adapterInfo.device} ${adapterInfo.description}`,
    );
    // software adapters run their kernels on the CPU the binding's polling would spin on
    this.pollIntervalMs = pollIntervalMs ?? (this.isSoftwareAdapter ? 1 : 0);
    this.releasePolling = paceDawnPolling(this.pollIntervalMs);
    gpu.addEventListener('uncapturederror', (ev: Event) => {
      const e = (ev as GPUUncapturedErrorEvent).error;
      this.uncaptured.push(e.message);
    });
  }

  get label(): string {
    const i = this.adapterInfo;
    return [i.vendor, i.architecture, i.device, i.description].filter((s) => s).join(' ');
  }

  // ---------------------------------------------------------------- buffers

  /** A storage buffer of at least `bytes` bytes from the pool (contents undefined). */
  acquire(bytes: number): PooledBuffer {
    const size = bucketSize(bytes);
    if (size > this.limits.maxStorageBufferBindingSize) {
      throw new GpuError(
        `buffer of ${bytes} bytes exceeds the adapter's maxStorageBufferBindingSize (${this.limits.maxStorageBufferBindingSize})`,
      );
    }
    const free = this.pool.get(size);
    let buffer = free?.pop();
    if (buffer) {
      this.pooledBytes -= size;
      this.pooledBuffers--;
    } else {
      buffer = this.gpu.createBuffer({
        size,
        // on software adapters UNIFORM too: the row kernels read per-channel data as a uniform array
        // (kernels/conv2dRows.ts's batchnorm + relu prologue, planned there only)
        usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST | (this.isSoftwareAdapter ? GPUBufferUsage.UNIFORM : 0),
      });
      this.createdBuffers++;
    }
    this.liveBytes += size;
    this.peakLiveBytes = Math.max(this.peakLiveBytes, this.liveBytes);
    this.largestBufferBytes = Math.max(this.largestBufferBytes, size);
    this.liveBuffers++;
    this.acquiredBytes.set(buffer, bytes);
    return { buffer, size };
  }

  /** Returns a buffer to the pool. Safe while queued work still uses it: the queue orders reuse after it. */
  release(b: PooledBuffer): void {
    this.liveBytes -= b.size;
    this.liveBuffers--;
    if (this.destroyed) return;
    let free = this.pool.get(b.size);
    if (!free) this.pool.set(b.size, (free = []));
    this.pushByAge(free, b.buffer);
    this.pooledBytes += b.size;
    this.pooledBuffers++;
  }

  /**
   * An rgba32float 2-D array texture of exactly width × height × layers texels
   * from the pool (contents undefined), usable as a read-only or write-only
   * storage texture, and as a copy's destination or source (a raw texture a kernel
   * wrote, copied into a buffer: kernels/rawTexture.ts). Kernels on software adapters
   * read textures about twice as fast as buffers (kernels/conv2dTexture.ts).
   */
  acquireTexture(width: number, height: number, layers: number): PooledTexture {
    const key = `${width}x${height}x${layers}`;
    let t = this.texturePool.get(key)?.pop();
    const bytes = width * height * layers * 16;
    if (t) {
      this.pooledBytes -= bytes;
    } else {
      const texture = this.gpu.createTexture({
        size: [width, height, layers],
        format: 'rgba32float',
        usage: GPUTextureUsage.STORAGE_BINDING | GPUTextureUsage.COPY_DST | GPUTextureUsage.COPY_SRC,
      });
      t = { texture, view: texture.createView({ dimension: '2d-array' }), key, bytes };
      this.viewBytes.set(t.view, bytes);
      this.createdTextures++;
    }
    this.liveBytes += bytes;
    this.peakLiveBytes = Math.max(this.peakLiveBytes, this.liveBytes);
    return t;
  }

  /** Returns a texture to the pool; like release(), safe while queued work still reads it. */
  releaseTexture(t: PooledTexture): void {
    this.liveBytes -= t.bytes;
    if (this.destroyed) return;
    let free = this.texturePool.get(t.key);
    if (!free) this.texturePool.set(t.key, (free = []));
    this.pushByAge(free, t); // the pooled record itself is kept for the texture's life
    this.pooledBytes += t.bytes;
  }

  /**
   * Puts a freed buffer (or texture) into its free list, which is kept oldest last so
   * acquire() always hands out the oldest free one. Which buffer a tensor gets is then
   * a function of the set that is free, not of the order things were released in, so
   * every training step gets the same buffers as the one before (a plain stack
   * permutes them from step to step) and its bind groups are found in the cache.
   */
  private pushByAge<T extends object>(free: T[], item: T): void {
    // ids descend along the list: binary search for the first one below this id (a release is on the hot path)
    const id = this.objectId(item);
    let lo = 0;
    let hi = free.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.objectId(free[mid]!) > id) lo = mid + 1;
      else hi = mid;
    }
    free.splice(lo, 0, item);
  }

  /** Destroys every pooled (unused) buffer and texture. */
  trimPool(): void {
    for (const free of this.pool.values()) for (const b of free) b.destroy();
    this.pool.clear();
    for (const free of this.texturePool.values()) for (const t of free) t.texture.destroy();
    this.texturePool.clear();
    this.pooledBytes = 0;
    this.pooledBuffers = 0;
    this.bindGroups.clear(); // they hold the destroyed buffers
  }

  memoryStats(): MemoryStats {
    return {
      liveBytes: this.liveBytes,
      pooledBytes: this.pooledBytes,
      liveBuffers: this.liveBuffers,
      pooledBuffers: this.pooledBuffers,
      createdBuffers: this.createdBuffers,
      createdTextures: this.createdTextures,
      peakLiveBytes: this.peakLiveBytes,
      largestBufferBytes: this.largestBufferBytes,
    };
  }

  /** Starts a new high-water mark of live bytes (memoryStats().peakLiveBytes) from what is live now. */
  resetPeakMemory(): void {
    this.peakLiveBytes = this.liveBytes;
    this.largestBufferBytes = 0;
  }

  executionStats(): ExecutionStats {
    return { ...this.stats };
  }

  /**
   * Uploads host data into a buffer, ordered after everything recorded so far:
   * queue.writeBuffer would otherwise overtake commands still in the open encoder
   * (a pooled buffer released by them and reused here would be overwritten early).
   */
  write(buffer: GPUBuffer, data: ArrayBufferView, byteOffset = 0): void {
    if (this.encoder) this.flush();
    this.gpu.queue.writeBuffer(buffer, byteOffset, data.buffer, data.byteOffset, data.byteLength);
  }

  // -------------------------------------------------------------- pipelines

  /**
   * The compute pipeline for `key`, compiled once from `source()`.
   * `label` names the kernel in every error message Dawn produces for it.
   */
  pipeline(key: string, label: string, source: () => string): GPUComputePipeline {
    const hit = this.pipelines.get(key);
    if (hit) return hit.pipeline;
    const code = source();
    this.gpu.pushErrorScope('validation');
    const module = this.gpu.createShaderModule({ label, code });
    const pipeline = this.gpu.createComputePipeline({
      label,
      layout: 'auto',
      compute: { module, entryPoint: 'main' },
    });
    const err = this.gpu.popErrorScope();
    this.errors.push(
      err.then(async (e) => {
        if (!e) return null;
        const info = await module.getCompilationInfo();
        const msgs = info.messages.map((m) => `  ${m.type} at ${m.lineNum}:${m.linePos}: ${m.message}`).join('\n');
        return { message: `kernel '${label}' failed to compile: ${e.message}\n${msgs}` } as GPUError;
      }),
    );
    this.pipelines.set(key, { pipeline, label });
    this.bindingAccess.set(pipeline, bindingAccess(code));
    return pipeline;
  }

  // --------------------------------------------------------------- dispatch

  /** Reserves space for one dispatch's parameters; returns the binding resource. */
  uniforms(data: ArrayBuffer | ArrayBufferView): GPUBufferBinding {
    const bytes = data instanceof ArrayBuffer ? new Uint8Array(data) : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    if (bytes.byteLength > UNIFORM_ALIGN) throw new GpuError(`uniform block of ${bytes.byteLength} bytes is too large`);
    if (this.uniformOffset + UNIFORM_ALIGN > UNIFORM_ARENA_BYTES) this.flush();
    const arena = this.currentArena();
    const offset = this.uniformOffset;
    new Uint8Array(this.uniformMirror, offset, bytes.byteLength).set(bytes);
    this.uniformOffset += UNIFORM_ALIGN;
    return { buffer: arena, offset, size: Math.max(16, Math.ceil(bytes.byteLength / 16) * 16) };
  }

  private currentArena(): GPUBuffer {
    let a = this.uniformArenas[this.uniformArenaIndex];
    if (!a) {
      a = this.gpu.createBuffer({
        label: 'uniform arena',
        size: UNIFORM_ARENA_BYTES,
        usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
      });
      this.uniformArenas[this.uniformArenaIndex] = a;
    }
    return a;
  }

  /**
   * Records one dispatch into the current compute pass. `bindings` are bound in
   * order to @group(0) @binding(0..n-1); a GPUBuffer binds whole.
   */
  dispatch(
    pipeline: GPUComputePipeline,
    bindings: Binding[],
    workgroups: [number, number?, number?],
    traffic?: TrafficAdjust,
  ): void {
    if (this.destroyed) throw new GpuError('device was destroyed');
    const [x, y = 1, z = 1] = workgroups;
    const max = this.limits.maxComputeWorkgroupsPerDimension;
    if (x > max || y > max || z > max) {
      throw new GpuError(`kernel '${pipeline.label}': dispatch (${x}, ${y}, ${z}) exceeds ${max} workgroups per dimension`);
    }
    if (x === 0 || y === 0 || z === 0) return;
    // profiling: every dispatch in a pass of its own between timestamps (a new submit when the query set is full)
    if (this.profiler?.full) this.flush();
    if (this.profiler) this.endPass();
    const pass = this.profiler
      ? (this.pass = this.commandEncoder().beginComputePass({ timestampWrites: this.profiler.next(pipeline.label) }))
      : this.computePass(); // first, so the bind group's validation lands in this batch's error scope
    const group = this.bindGroup(pipeline, bindings);
    // consecutive dispatches of one kernel (per-parameter updates, split reductions) set it once
    if (this.passPipeline !== pipeline) {
      pass.setPipeline(pipeline);
      this.passPipeline = pipeline;
    }
    pass.setBindGroup(0, group);
    pass.dispatchWorkgroups(x, y, z);
    if (this.profiler) this.endPass();
    this.pendingLabels.push(pipeline.label);
    this.stats.dispatches++;
    if (this.traffic) this.countDispatch(pipeline, bindings, traffic);
  }

  /**
   * Counts bytes read and written per kernel label while `record` runs: each binding's
   * bytes (a buffer's logical size, a range's size, a texture's bytes) as read or
   * written according to its WGSL declaration (storage read / read_write, storage
   * texture read / write; uniforms not counted), plus what the dispatch declares beyond
   * that (TrafficAdjust), plus copies. A pass over memory, not cache traffic: what
   * fusion saves (bench/profile.ts --traffic).
   */
  async countTraffic(record: () => void | Promise<void>): Promise<TrafficRow[]> {
    const rows = (this.traffic = new Map());
    try {
      await record();
      this.flush();
    } finally {
      this.traffic = null;
    }
    await this.sync();
    return [...rows.values()].sort((a, b) => b.read + b.write - (a.read + a.write));
  }

  private countDispatch(pipeline: GPUComputePipeline, bindings: Binding[], adjust?: TrafficAdjust): void {
    const access = this.bindingAccess.get(pipeline) ?? [];
    let read = adjust?.read ?? 0;
    let write = adjust?.write ?? 0;
    bindings.forEach((b, i) => {
      const a = access[i] ?? 'r';
      if (a === 'u') return;
      let bytes: number;
      if (b instanceof GPUTextureView) bytes = this.viewBytes.get(b) ?? 0;
      else if ('buffer' in b) bytes = b.size ?? (this.acquiredBytes.get(b.buffer) ?? b.buffer.size) - (b.offset ?? 0);
      else bytes = this.acquiredBytes.get(b) ?? b.size;
      if (a === 'w') write += bytes;
      else read += bytes;
    });
    this.addTraffic(pipeline.label, read, write);
  }

  private addTraffic(label: string, read: number, write: number): void {
    if (!this.traffic) return;
    const row = this.traffic.get(label) ?? { label, read: 0, write: 0, count: 0 };
    row.read += read;
    row.write += write;
    row.count++;
    this.traffic.set(label, row);
  }

  /**
   * The bind group of these bindings for this pipeline, made once and reused: a
   * training step dispatches the same kernels over the same pooled buffers (and the
   * same uniform-arena offsets) every step, and creating a bind group is most of a
   * dispatch's host cost (measured on the H200: ~55 µs per dispatch recorded, against
   * 19 ms of GPU time for ResNet-56's 756 dispatches). Keys name each resource by
   * object identity, so a buffer made later never meets a group of an older one.
   */
  private bindGroup(pipeline: GPUComputePipeline, bindings: Binding[]): GPUBindGroup {
    let key = String(this.objectId(pipeline));
    for (const b of bindings) {
      if (b instanceof GPUTextureView) key += `|t${this.objectId(b)}`;
      else if ('buffer' in b) key += `|${this.objectId(b.buffer)}:${b.offset ?? 0}:${b.size ?? -1}`;
      else key += `|${this.objectId(b)}`;
    }
    let group = this.bindGroups.get(key);
    if (group) return group;
    // getBindGroupLayout makes a new native object on every call: one per pipeline is enough
    let layout = this.layouts.get(pipeline);
    if (!layout) this.layouts.set(pipeline, (layout = pipeline.getBindGroupLayout(0)));
    const entries: GPUBindGroupEntry[] = bindings.map((b, i) => ({
      binding: i,
      resource: b instanceof GPUTextureView || 'buffer' in b ? b : { buffer: b },
    }));
    group = this.gpu.createBindGroup({ label: pipeline.label, layout, entries });
    this.stats.bindGroupsCreated++;
    // bounded: a long run over changing shapes (eval batches, range tests) starts afresh
    if (this.bindGroups.size >= BIND_GROUP_CACHE) this.bindGroups.clear();
    this.bindGroups.set(key, group);
    return group;
  }

  private objectId(o: object): number {
    let id = this.objectIds.get(o);
    if (id === undefined) this.objectIds.set(o, (id = this.nextObjectId++));
    return id;
  }

  /** Records a buffer-to-buffer copy (ends the current pass; a new one starts lazily). */
  copy(src: GPUBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, bytes: number): void {
    this.endPass();
    this.commandEncoder().copyBufferToBuffer(src, srcOffset, dst, dstOffset, bytes);
    this.addTraffic('copy buffer', bytes, bytes);
  }

  /**
   * Records a copy of `layers` images of `height` rows of `width` texels from a buffer
   * into a pooled texture: a packing kernel's work where the buffer already holds the
   * texture's layout. By default the buffer's rows are `width`·16 bytes apart (a
   * multiple of 256) and its images `height` rows apart; `from` takes a region of a
   * wider buffer instead (a column panel of a row-major matrix: byte offset, row pitch
   * a multiple of 256) into layers from `toLayer`.
   */
  copyToTexture(
    src: GPUBuffer,
    dst: PooledTexture,
    width: number,
    height: number,
    layers: number,
    from: { offset: number; bytesPerRow: number; toLayer: number } = { offset: 0, bytesPerRow: width * 16, toLayer: 0 },
  ): void {
    this.endPass();
    this.commandEncoder().copyBufferToTexture(
      { buffer: src, offset: from.offset, bytesPerRow: from.bytesPerRow, rowsPerImage: height },
      { texture: dst.texture, origin: [0, 0, from.toLayer] },
      [width, height, layers],
    );
    this.addTraffic('copy buffer to texture', width * height * layers * 16, width * height * layers * 16);
  }

  /**
   * Records the inverse of copyToTexture (whole layers, rows `width`·16 bytes apart): a
   * texture a kernel wrote in a buffer's layout (a raw copy) into the buffer.
   */
  copyFromTexture(src: PooledTexture, dst: GPUBuffer, width: number, height: number, layers: number): void {
    this.endPass();
    this.commandEncoder().copyTextureToBuffer(
      { texture: src.texture },
      { buffer: dst, offset: 0, bytesPerRow: width * 16, rowsPerImage: height },
      [width, height, layers],
    );
    this.addTraffic('copy texture to buffer', width * height * layers * 16, width * height * layers * 16);
  }

  /** The current command encoder, for callers that record their own commands (timestamp queries). */
  commandEncoder(): GPUCommandEncoder {
    if (!this.encoder) {
      // Every device call until the submit (bind groups, passes, copies) reports into
      // these scopes, popped in flush(), so an error is tied to this batch's kernels.
      this.gpu.pushErrorScope('out-of-memory');
      this.gpu.pushErrorScope('validation');
      this.encoder = this.gpu.createCommandEncoder();
    }
    return this.encoder;
  }

  private computePass(): GPUComputePassEncoder {
    if (!this.pass) this.pass = this.commandEncoder().beginComputePass();
    return this.pass;
  }

  private endPass(): void {
    if (this.pass) {
      this.pass.end();
      this.pass = null;
      this.passPipeline = null;
    }
  }

  /** Submits everything recorded so far as one command buffer. */
  flush(): void {
    if (!this.encoder) return;
    this.endPass();
    if (this.uniformOffset > 0) {
      this.gpu.queue.writeBuffer(this.currentArena(), 0, this.uniformMirror, 0, this.uniformOffset);
    }
    const labels = this.pendingLabels;
    this.pendingLabels = [];
    this.profiler?.resolve(this.encoder);
    const cb = this.encoder.finish();
    this.gpu.queue.submit([cb]);
    const named = (e: GPUError | null): GPUError | null =>
      e ? ({ message: `${e.message}\n  (in a submit of kernels: ${[...new Set(labels)].join(', ')})` } as GPUError) : null;
    this.errors.push(this.gpu.popErrorScope().then(named), this.gpu.popErrorScope().then(named));
    this.encoder = null;
    this.stats.submits++;
    // Arenas rotate so the next batch's writeBuffer never races a pending one's reads
    // (the queue orders them anyway; rotation keeps the mirror simple to reason about).
    this.uniformOffset = 0;
    this.uniformArenaIndex = (this.uniformArenaIndex + 1) % 2;
  }

  /**
   * Runs `record` with every dispatch timed on its own (one compute pass each,
   * timestamps around it) and returns GPU milliseconds per kernel label, in order
   * of total time. For finding where a step's time goes; needs 'timestamp-query'.
   */
  async profile(record: () => void | Promise<void>): Promise<{ label: string; ms: number; count: number }[]> {
    if (!this.hasTimestampQuery) throw new GpuError('profiling needs the timestamp-query feature');
    await this.sync();
    const profiler = new KernelProfiler(this.gpu);
    this.profiler = profiler;
    try {
      await record();
      this.flush();
    } finally {
      this.profiler = null;
    }
    await this.sync();
    return profiler.collect();
  }

  /** Waits for all submitted work and throws the first GPU error, naming its kernel. */
  async sync(): Promise<void> {
    this.flush();
    await this.gpu.queue.onSubmittedWorkDone();
    await this.checkErrors();
  }

  /** Throws the first recorded GPU error, if any. */
  async checkErrors(): Promise<void> {
    const pending = this.errors;
    this.errors = [];
    const results = await Promise.all(pending);
    const first = results.find((e) => e);
    if (first) throw new GpuError(first.message);
    if (this.uncaptured.length) {
      const msg = this.uncaptured.join('\n');
      this.uncaptured = [];
      throw new GpuError(msg);
    }
  }

  /** Copies `bytes` from `src` into host memory. Submits pending work first. */
  async read(src: GPUBuffer, byteOffset: number, bytes: number): Promise<ArrayBuffer> {
    const size = Math.ceil(bytes / 4) * 4;
    const staging = this.gpu.createBuffer({ size: Math.max(4, size), usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    try {
      if (size > 0) this.copy(src, byteOffset, staging, 0, size);
      this.flush();
      await this.checkErrors();
      await staging.mapAsync(GPUMapMode.READ);
      return staging.getMappedRange(0, bytes).slice(0);
    } finally {
      staging.destroy();
    }
  }

  /**
   * Waits for submitted work and every pending error scope, then destroys the
   * device: the orderly end, also after an error. Destroying a device whose
   * error-scope promises are still pending makes dawn.node abort
   * (`__pthread_tpp_change_priority` assertion, exit 134) or hang at exit in
   * about one run in three; an error thrown between two readbacks leaves such
   * promises behind. GPU errors found here are dropped: the caller is already
   * ending, usually with a better message.
   */
  async close(): Promise<void> {
    if (this.destroyed) return;
    try {
      this.flush();
      await this.gpu.queue.onSubmittedWorkDone();
    } catch {
      // a lost device: nothing left to wait for
    }
    await Promise.allSettled(this.errors);
    this.errors = [];
    this.uncaptured = [];
    this.destroy();
  }

  /** Frees the GPU device so the process can exit (dawn.node keeps the loop alive while it lives). Prefer close(). */
  destroy(): void {
    if (this.destroyed) return;
    if (this.encoder) this.flush();
    this.trimPool();
    for (const a of this.uniformArenas) a.destroy();
    this.uniformArenas = [];
    this.pipelines.clear();
    this.destroyed = true;
    this.gpu.destroy();
    this.instance = null;
    this.releasePolling();
  }

  get isDestroyed(): boolean {
    return this.destroyed;
  }
}

/**
 * Acquires an adapter and a device through dawn.node, requesting the adapter's
 * real limits so CIFAR-sized tensors fit.
 */
export async function createDevice(options: CreateDeviceOptions = {}): Promise<Device> {
  if (!globalsInstalled) {
    Object.assign(globalThis, globals);
    globalsInstalled = true;
  }
  const gpu = create(options.dawnFlags ?? []);
  const adapter = await gpu.requestAdapter(options.powerPreference ? { powerPreference: options.powerPreference } : undefined);
  if (!adapter) {
    throw new GpuError(
      'No WebGPU adapter found. Install your GPU\'s Vulkan driver, or on a machine without a GPU Mesa\'s software ' +
        'Vulkan driver (lavapipe, Mesa >= 24; on Debian 12: apt-get install -t bookworm-backports mesa-vulkan-drivers). ' +
        'Run `npm run setup` to do this automatically on Debian/Ubuntu.',
    );
  }
  const l = adapter.limits;
  const requiredLimits: Record<string, number> = {
    maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
    maxBufferSize: l.maxBufferSize,
    maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
    maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
    maxComputeWorkgroupSizeX: l.maxComputeWorkgroupSizeX,
    maxComputeWorkgroupSizeY: l.maxComputeWorkgroupSizeY,
    maxComputeWorkgroupSizeZ: l.maxComputeWorkgroupSizeZ,
    maxComputeWorkgroupsPerDimension: l.maxComputeWorkgroupsPerDimension,
    maxStorageBuffersPerShaderStage: l.maxStorageBuffersPerShaderStage,
    // storage textures of activations and matmul operands (kernels/conv2dTexture.ts, matmulTexture.ts)
    maxTextureDimension2D: l.maxTextureDimension2D,
    maxTextureArrayLayers: l.maxTextureArrayLayers,
  };
  const requiredFeatures: GPUFeatureName[] = [];
  if (adapter.features.has('timestamp-query')) requiredFeatures.push('timestamp-query');
  // subgroup operations let the lanes of a SIMD group share loaded values (kernels/conv2dTexture.ts)
  if (adapter.features.has('subgroups')) requiredFeatures.push('subgroups' as GPUFeatureName);
  // f16 operands with f32 accumulation (kernels/matmulLarge.ts, conv2dLarge.ts)
  if (adapter.features.has('shader-f16')) requiredFeatures.push('shader-f16');
  // tensor cores, listed only under Dawn's allow_unsafe_apis toggle (kernels/matmulSubgroupMatrix.ts)
  if (adapter.features.has(SUBGROUP_MATRIX)) requiredFeatures.push(SUBGROUP_MATRIX as GPUFeatureName);
  let device: GPUDevice;
  try {
    device = await adapter.requestDevice({ requiredLimits, requiredFeatures });
  } catch (e) {
    throw new GpuError(`requesting a device from adapter '${adapter.info.description}' failed: ${(e as Error).message}`);
  }
  return new Device(gpu, device, adapter.info, options.policy ?? defaultKernelPolicy(), options.pollIntervalMs);
}

/**
 * How a kernel's WGSL declares each @binding(n) of group 0: 'r' read (storage read,
 * read-only storage or sampled textures), 'w' written (storage read_write, write-only
 * storage textures), 'u' a uniform block. What Device.countTraffic counts by.
 */
export function bindingAccess(code: string): ('r' | 'w' | 'u')[] {
  const out: ('r' | 'w' | 'u')[] = [];
  for (const m of code.matchAll(/@binding\((\d+)\)\s*var(<[^>]*>)?\s*\w+\s*:\s*([^;]*);/g)) {
    const decl = `${m[2] ?? ''} ${m[3]}`;
    out[Number(m[1])] = /uniform/.test(decl) ? 'u' : /read_write|,\s*write\s*>/.test(decl) ? 'w' : 'r';
  }
  return out;
}

/** Timestamp pairs around single dispatches (Device.profile). */
class KernelProfiler {
  private static readonly CAPACITY = 2048; // query pairs per submit (WebGPU allows 4096 queries per set)
  private set: GPUQuerySet;
  private used = 0;
  private labels: string[] = [];
  private pending: { labels: string[]; resolved: GPUBuffer; readback: GPUBuffer }[] = [];

  constructor(private gpu: GPUDevice) {
    this.set = gpu.createQuerySet({ type: 'timestamp', count: 2 * KernelProfiler.CAPACITY });
  }

  get full(): boolean {
    return this.used >= KernelProfiler.CAPACITY;
  }

  next(label: string): GPUComputePassTimestampWrites {
    if (this.used >= KernelProfiler.CAPACITY) throw new GpuError(`profile: more than ${KernelProfiler.CAPACITY} dispatches in one submit`);
    const i = this.used++;
    this.labels.push(label);
    return { querySet: this.set, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 };
  }

  resolve(encoder: GPUCommandEncoder): void {
    if (this.used === 0) return;
    const bytes = 16 * this.used;
    const resolved = this.gpu.createBuffer({ size: bytes, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
    const readback = this.gpu.createBuffer({ size: bytes, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    encoder.resolveQuerySet(this.set, 0, 2 * this.used, resolved, 0);
    encoder.copyBufferToBuffer(resolved, 0, readback, 0, bytes);
    this.pending.push({ labels: this.labels, resolved, readback });
    this.labels = [];
    this.used = 0;
  }

  async collect(): Promise<{ label: string; ms: number; count: number }[]> {
    const totals = new Map<string, { ms: number; count: number }>();
    for (const { labels, resolved, readback } of this.pending) {
      await readback.mapAsync(GPUMapMode.READ);
      const t = new BigInt64Array(readback.getMappedRange());
      labels.forEach((label, i) => {
        const e = totals.get(label) ?? { ms: 0, count: 0 };
        e.ms += Number(t[2 * i + 1]! - t[2 * i]!) / 1e6;
        e.count++;
        totals.set(label, e);
      });
      readback.destroy();
      resolved.destroy();
    }
    this.set.destroy();
    return [...totals].map(([label, e]) => ({ label, ...e })).sort((a, b) => b.ms - a.ms);
  }
}
