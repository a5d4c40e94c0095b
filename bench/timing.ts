// Timing: GPU timestamp queries around recorded work where the adapter has them,
// the wall clock (record + submit + onSubmittedWorkDone) always; warm-up, rounds,
// median and spread.
//
// A round records `reps` repetitions of a case between two empty compute passes
// that write the begin and end timestamps, so the GPU figure is the queue's time
// for the work itself, without JavaScript recording or the submit. The wall clock
// of the same round includes both: on a software adapter (lavapipe) the two
// differ by the recording cost, on a discrete GPU also by the launch latency.
//
// Several sides (ours, the peer's) of one case are measured in interleaved
// rounds, so a change in machine load during the case hits all of them alike and
// their ratio stays meaningful on a shared, noisy machine.
//
// Dawn quantises timestamps (to defeat timing attacks) unless the
// `timestamp_quantization` toggle is disabled, which bench/main.ts does with the
// instance flag `disable-dawn-features=timestamp_quantization`.
import type { Device } from '../gpu/device.ts';

export interface Stats {
  /** milliseconds per repetition */
  median: number;
  min: number;
  max: number;
  /** (max − min) / median over the rounds */
  spread: number;
  rounds: number;
  /** repetitions per round */
  reps: number;
}

export function summarise(samples: number[], reps: number): Stats {
  const s = [...samples].sort((a, b) => a - b);
  const n = s.length;
  const median = n % 2 ? s[(n - 1) / 2]! : (s[n / 2 - 1]! + s[n / 2]!) / 2;
  return { median, min: s[0]!, max: s[n - 1]!, spread: median > 0 ? (s[n - 1]! - s[0]!) / median : 0, rounds: n, reps };
}

export interface TimingOptions {
  /** rounds measured after warm-up */
  rounds: number;
  /** warm-up rounds of one repetition (the first also compiles pipelines) */
  warmup: number;
  /** aim for a round to last about this long, in ms (sets the repetitions) */
  targetMs: number;
  /** at most this many repetitions per round */
  maxReps: number;
}

export interface Measured {
  /** queue time from timestamp queries (null without the feature) */
  gpu: Stats | null;
  /** record + submit + wait */
  wall: Stats;
}

export interface RoundResult {
  gpuMs: number | null;
  wallMs: number;
}

/** One thing to time: a round runs `reps` repetitions and reports per-repetition times. */
export type Round = (reps: number) => Promise<RoundResult>;

/** Two timestamp queries around work recorded through an engine Device. */
export class GpuTimer {
  private querySet: GPUQuerySet;
  private resolve: GPUBuffer;
  private readback: GPUBuffer;
  // A 4-byte copy ends the engine's open compute pass (Device.copy does that),
  // so the closing empty pass can be recorded on the same encoder.
  private scratch: [GPUBuffer, GPUBuffer];

  constructor(private device: Device) {
    const gpu = device.gpu;
    this.querySet = gpu.createQuerySet({ type: 'timestamp', count: 2 });
    this.resolve = gpu.createBuffer({ size: 16, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
    this.readback = gpu.createBuffer({ size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    const scratch = (): GPUBuffer => gpu.createBuffer({ size: 16, usage: GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST });
    this.scratch = [scratch(), scratch()];
  }

  /** Flushes what is pending, then records the begin timestamp. */
  begin(): void {
    this.device.flush();
    this.device
      .commandEncoder()
      .beginComputePass({ timestampWrites: { querySet: this.querySet, beginningOfPassWriteIndex: 0 } })
      .end();
  }

  /** Records the end timestamp and its resolve, and submits. */
  end(): void {
    this.device.copy(this.scratch[0], 0, this.scratch[1], 0, 4);
    const enc = this.device.commandEncoder();
    enc.beginComputePass({ timestampWrites: { querySet: this.querySet, endOfPassWriteIndex: 1 } }).end();
    enc.resolveQuerySet(this.querySet, 0, 2, this.resolve, 0);
    enc.copyBufferToBuffer(this.resolve, 0, this.readback, 0, 16);
    this.device.flush();
  }

  /** Nanoseconds between begin and end (after the work completed). */
  async elapsedNs(): Promise<number> {
    await this.readback.mapAsync(GPUMapMode.READ);
    const t = new BigUint64Array(this.readback.getMappedRange().slice(0));
    this.readback.unmap();
    return Number(t[1]! - t[0]!);
  }

  destroy(): void {
    this.querySet.destroy();
    this.resolve.destroy();
    this.readback.destroy();
    for (const b of this.scratch) b.destroy();
  }
}

/** What a case does on the engine: `record` records one repetition; `prepare` records untimed set-up for a round. */
export interface EngineWork {
  prepare?: (reps: number) => void;
  record: (i: number) => void;
}

/** A Round over engine work: timestamps around the repetitions, wall clock around record + submit + wait. */
export function engineRound(device: Device, timer: GpuTimer | null, work: EngineWork): Round {
  return async (reps) => {
    if (work.prepare) work.prepare(reps);
    await device.sync();
    const t0 = performance.now();
    if (timer) timer.begin();
    for (let i = 0; i < reps; i++) work.record(i);
    if (timer) timer.end();
    else device.flush();
    await device.gpu.queue.onSubmittedWorkDone();
    const wallMs = (performance.now() - t0) / reps;
    await device.checkErrors();
    const gpuMs = timer ? (await timer.elapsedNs()) / 1e6 / reps : null;
    return { gpuMs, wallMs };
  };
}

/**
 * Warms up and calibrates every side, then measures them in interleaved rounds
 * (side 0, side 1, …, side 0, …). Each side gets its own repetition count.
 */
export async function interleave(sides: Round[], o: TimingOptions): Promise<Measured[]> {
  const reps: number[] = [];
  for (const round of sides) {
    // one warm-up round at least, to calibrate the repetitions, unless there is nothing to calibrate
    const warmups = o.maxReps === 1 ? o.warmup : Math.max(1, o.warmup);
    let last: RoundResult | null = null;
    for (let i = 0; i < warmups; i++) last = await round(1);
    const one = last ? (last.gpuMs ?? last.wallMs) : o.targetMs;
    reps.push(Math.max(1, Math.min(o.maxReps, Math.round(o.targetMs / Math.max(one, 1e-3)))));
  }
  const gpu: number[][] = sides.map(() => []);
  const wall: number[][] = sides.map(() => []);
  for (let r = 0; r < o.rounds; r++) {
    for (let s = 0; s < sides.length; s++) {
      const res = await sides[s]!(reps[s]!);
      if (res.gpuMs !== null) gpu[s]!.push(res.gpuMs);
      wall[s]!.push(res.wallMs);
    }
  }
  return sides.map((_, s) => ({
    gpu: gpu[s]!.length ? summarise(gpu[s]!, reps[s]!) : null,
    wall: summarise(wall[s]!, reps[s]!),
  }));
}
