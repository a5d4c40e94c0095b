// The peer: TensorFlow.js 4.22's WebGPU backend on dawn.node, on the same
// adapter, in the same process, so every figure in the bench has a ratio
// measured minutes apart under the same load.
//
// What Node 20 needs (the backend was written for browsers):
// - dawn.node's `globals` (GPUBufferUsage, …) on globalThis, and
//   `globalThis.navigator = { gpu }` defined BEFORE the backend is imported: it
//   registers itself only if `navigator.gpu` exists at load, hence a dynamic
//   import();
// - a reference to the `create()` instance kept for as long as the device lives
//   (if it is garbage-collected, dawn.node crashes at random in ProcessEvents);
// - @tensorflow/tfjs-layers imported so gradients are registered;
// - results read with `await t.data()` (the sync readers need OffscreenCanvas);
// - WEBGPU_CPU_FORWARD off: by default TF.js runs ops whose inputs are small
//   and not yet on the GPU on the CPU, which would time the wrong thing;
// - TF.js never checks WebGPU errors, so `uncapturederror` is listened to and
//   any error fails the case (a broken kernel must not be timed as a fast one).
import { create, globals } from 'webgpu';
import type * as TfCore from '@tensorflow/tfjs-core';
import type * as TfLayers from '@tensorflow/tfjs-layers';
import type { Round } from './timing.ts';

export type Tf = typeof TfCore;
export type Tfl = typeof TfLayers;
export type TfTensor = TfCore.Tensor;

/** The parts of tfjs-backend-webgpu's WebGPUBackend the bench touches. */
interface WebGpuBackendLike {
  device: GPUDevice;
  commandEncoder: GPUCommandEncoder | null;
  submitQueue(): void;
  endComputePassEncoder(): void;
  supportTimestampQuery: boolean;
}

export interface TfPeer {
  tf: Tf;
  layers: Tfl;
  device: GPUDevice;
  hasTimestampQuery: boolean;
  /** WebGPU errors seen since the last check */
  takeErrors(): string[];
  /** Submits what TF.js has recorded and waits for the queue. */
  sync(): Promise<void>;
  destroy(): void;
}

// Kept alive for the life of the process: see the header.
let instance: GPU | null = null;

/** Loads TF.js with its WebGPU backend on a dawn.node instance made with `dawnFlags`; null with the reason on failure. */
export async function loadTf(dawnFlags: string[]): Promise<{ peer: TfPeer | null; why?: string }> {
  try {
    Object.assign(globalThis, globals);
    instance = create(dawnFlags);
    Object.defineProperty(globalThis, 'navigator', { value: { gpu: instance }, configurable: true, writable: true });
    const tf = (await import('@tensorflow/tfjs-core')) as Tf;
    await import('@tensorflow/tfjs-backend-webgpu');
    const layers = (await import('@tensorflow/tfjs-layers')) as Tfl;
    tf.env().set('WEBGPU_CPU_FORWARD', false);
    if (!(await tf.setBackend('webgpu'))) return { peer: null, why: 'tf.setBackend("webgpu") failed' };
    await tf.ready();
    const backend = tf.backend() as unknown as WebGpuBackendLike;
    const device = backend.device;
    const errors: string[] = [];
    device.addEventListener('uncapturederror', (ev: Event) => {
      errors.push((ev as GPUUncapturedErrorEvent).error.message);
    });
    const peer: TfPeer = {
      tf,
      layers,
      device,
      hasTimestampQuery: backend.supportTimestampQuery,
      takeErrors: () => errors.splice(0),
      sync: async () => {
        if (backend.commandEncoder) {
          backend.endComputePassEncoder();
          backend.submitQueue();
        }
        await device.queue.onSubmittedWorkDone();
      },
      destroy: () => {
        tf.engine().reset();
        device.destroy();
      },
    };
    return { peer };
  } catch (e) {
    return { peer: null, why: (e as Error).message };
  }
}

/**
 * Rounds for one TF.js op (`run` returns the op's outputs, disposed here).
 * `wall`: a batch of repetitions without profiling, submitted once and waited
 * for. `gpu`: the same under tf.time, which makes TF.js time every program in its
 * own compute pass with timestamp queries; kernelMs is their sum (null when the
 * device has no timestamp queries). Any WebGPU error fails the round.
 */
export function tfRounds(peer: TfPeer, run: () => TfTensor | TfTensor[]): { wall: Round; gpu: Round | null } {
  const { tf } = peer;
  const once = (): void => {
    const out = run();
    for (const t of Array.isArray(out) ? out : [out]) t.dispose();
  };
  const check = (): void => {
    const errs = peer.takeErrors();
    if (errs.length) throw new Error(`TF.js WebGPU error: ${errs[0]}`);
  };
  const wall: Round = async (reps) => {
    await peer.sync();
    const t0 = performance.now();
    for (let i = 0; i < reps; i++) once();
    await peer.sync();
    const wallMs = (performance.now() - t0) / reps;
    check();
    return { gpuMs: null, wallMs };
  };
  const gpu: Round = async (reps) => {
    await peer.sync();
    const t0 = performance.now();
    const info = await tf.time(() => {
      for (let i = 0; i < reps; i++) once();
    });
    const wallMs = (performance.now() - t0) / reps;
    check();
    const k = info.kernelMs;
    if (typeof k !== 'number') throw new Error(`tf.time gave no kernel time: ${JSON.stringify(k)}`);
    return { gpuMs: k / reps, wallMs };
  };
  return { wall, gpu: peer.hasTimestampQuery ? gpu : null };
}
