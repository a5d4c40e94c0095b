// Public API of the engine.
export { createDevice, Device, GpuError, type CreateDeviceOptions, type MemoryStats, type ExecutionStats } from '../gpu/device.ts';
export {
  Tensor, tensor, empty, zeros, ones, full, randn, uniform, tidy, keep, noGrad, isGradEnabled, recordOp,
  sizeOf, shapeStr, trace, traceOp, type Shape, type DType, type BackwardFn, type TracedOp, type TraceAttr,
} from './tensor.ts';
export { zeroGrad } from './autograd.ts';
export { Rng, type RngState } from './random.ts';
export * from './ops/index.ts';
export { SGD, type SgdOptions, type SgdState, type ScheduleLike } from './optim.ts';
export { GradScaler, type GradScalerOptions, type GradScalerState } from './gradScaler.ts';
export * as nn from './nn/index.ts';
export { defineModel, type ModelSpec, type ModelFactory } from './nn/define.ts';
