// SGD with momentum whose learning rate and momentum are schedules: the
// optimizer owns the step counter and asks each schedule for its value at every
// step, so nothing patches hyperparameters from outside (unlike Keras callbacks
// or PyTorch's LR schedulers).
import type { Schedule } from '../schedules/index.ts';
import { type SgdForm, type SgdSlot, sgdUpdate } from '../kernels/sgd.ts';
import { type Tensor, keep, zeros } from './tensor.ts';
import { zeroGrad } from './autograd.ts';

/** A number is a constant schedule. */
export type ScheduleLike = number | Schedule;

export interface SgdOptions {
  /** parameters, or [name, parameter] pairs (names let `noDecay` see them) */
  params: Iterable<Tensor> | Iterable<readonly [string, Tensor]>;
  lr: ScheduleLike;
  momentum?: ScheduleLike;
  weightDecay?: number;
  dampening?: number;
  nesterov?: boolean;
  /** 'pytorch' (default): v = μv + g; w −= ηv. 'caffe' (Smith's experiments): v = μv − ηg; w += v. */
  form?: SgdForm;
  /** decoupled weight decay (SGDW): w −= ηλw, not added to the gradient */
  decoupledWeightDecay?: boolean;
  /**
   * Parameters excluded from weight decay: 'bias-and-norm' excludes every 1-D
   * parameter (biases, batchnorm γ and β, the usual fastai/timm rule); a function
   * decides per named parameter. Default: none excluded (PyTorch's default).
   */
  noDecay?: 'none' | 'bias-and-norm' | ((name: string, p: Tensor) => boolean);
}

export interface SgdState {
  step: number;
  /** velocity of each parameter, in parameter order; null before its first update */
  velocities: (Float32Array | null)[];
}

function asSchedule(s: ScheduleLike, what: string): Schedule {
  if (typeof s === 'function') return s;
  if (!Number.isFinite(s) || s < 0) throw new Error(`SGD: ${what} must be a finite number ≥ 0 or a schedule, got ${s}`);
  return () => s;
}

export class SGD {
  readonly params: Tensor[];
  readonly names: string[];
  readonly lr: Schedule;
  readonly momentum: Schedule;
  readonly weightDecay: number;
  readonly dampening: number;
  readonly nesterov: boolean;
  readonly form: SgdForm;
  readonly decoupledWeightDecay: boolean;
  private decays: boolean[];
  private velocities: (Tensor | null)[];
  private steps = 0;

  constructor(o: SgdOptions) {
    const entries = [...o.params].map((p, i): [string, Tensor] => (Array.isArray(p) ? [p[0], p[1]] : [String(i), p as Tensor]));
    if (entries.length === 0) throw new Error('SGD: no parameters given');
    this.names = entries.map((e) => e[0]);
    this.params = entries.map((e) => e[1]);
    this.lr = asSchedule(o.lr, 'lr');
    this.momentum = asSchedule(o.momentum ?? 0, 'momentum');
    this.weightDecay = o.weightDecay ?? 0;
    this.dampening = o.dampening ?? 0;
    this.nesterov = o.nesterov ?? false;
    this.form = o.form ?? 'pytorch';
    this.decoupledWeightDecay = o.decoupledWeightDecay ?? false;
    if (!(this.weightDecay >= 0)) throw new Error(`SGD: weightDecay must be ≥ 0, got ${this.weightDecay}`);
    if (!(this.dampening >= 0 && this.dampening <= 1)) throw new Error(`SGD: dampening must be in [0, 1], got ${this.dampening}`);
    if (this.nesterov && this.dampening !== 0) throw new Error('SGD: Nesterov momentum requires zero dampening (as in PyTorch)');
    if (this.nesterov && this.form === 'caffe') throw new Error("SGD: Nesterov is only implemented for the 'pytorch' form");
    const rule = o.noDecay ?? 'none';
    this.decays = entries.map(([name, p]) =>
      rule === 'none' ? true : rule === 'bias-and-norm' ? p.rank > 1 : !rule(name, p),
    );
    this.velocities = this.params.map(() => null);
  }

  /** Steps taken so far; the next update uses the schedules' values at this step. */
  get stepCount(): number {
    return this.steps;
  }

  /** The learning rate the next step() will use. */
  lrAt(step = this.steps): number {
    return this.lr(step);
  }

  /** The momentum the next step() will use. */
  momentumAt(step = this.steps): number {
    return this.momentum(step);
  }

  /**
   * Applies one update to every parameter that has a gradient (recorded, not submitted).
   * `gate`: a loss scaler's state buffer (engine/gradScaler.ts); the update is skipped on
   * the GPU when it flags non-finite gradients. The step counter advances either way, so
   * the schedules move on as PyTorch's do when GradScaler skips optimizer.step().
   */
  step(gate?: GPUBuffer): void {
    const lr = this.lrAt();
    const momentum = this.momentumAt();
    if (!Number.isFinite(lr) || !Number.isFinite(momentum)) {
      throw new Error(`SGD: schedule gave lr=${lr}, momentum=${momentum} at step ${this.steps}`);
    }
    // every parameter with a gradient, several per dispatch (kernels/sgd.ts)
    const slots: SgdSlot[] = [];
    this.params.forEach((p, i) => {
      if (!p.grad) return;
      let v = this.velocities[i];
      const first = v === null;
      if (!v) v = this.velocities[i] = keep(zeros(p.device, p.shape));
      // the caffe form has no special first step: v starts at zero
      slots.push({ w: p, g: p.grad, v, weightDecay: this.decays[i] ? this.weightDecay : 0, first: first && this.form === 'pytorch' });
    });
    if (slots.length) {
      sgdUpdate(this.params[0]!.device, slots, {
        lr,
        momentum,
        dampening: this.dampening,
        nesterov: this.nesterov,
        decoupled: this.decoupledWeightDecay,
        form: this.form,
      }, gate);
    }
    this.steps++;
  }

  zeroGrad(): void {
    zeroGrad(this.params);
  }

  /** Step counter and velocities, read back for a checkpoint. */
  async state(): Promise<SgdState> {
    const velocities = await Promise.all(this.velocities.map((v) => (v ? v.toArray() : Promise.resolve(null))));
    return { step: this.steps, velocities };
  }

  /** Restores a saved state, so a resumed run continues bit-exactly. */
  loadState(s: SgdState): void {
    if (s.velocities.length !== this.params.length) {
      throw new Error(`SGD.loadState: state has ${s.velocities.length} velocities, optimizer has ${this.params.length} parameters`);
    }
    if (!Number.isInteger(s.step) || s.step < 0) throw new Error(`SGD.loadState: invalid step ${s.step}`);
    s.velocities.forEach((data, i) => {
      const p = this.params[i]!;
      if (data && data.length !== p.size) {
        throw new Error(`SGD.loadState: velocity ${i} (${this.names[i]}) has ${data.length} values, parameter has ${p.size}`);
      }
    });
    this.velocities.forEach((v) => v?.dispose());
    this.velocities = s.velocities.map((data, i) => {
      if (!data) return null;
      const v = keep(zeros(this.params[i]!.device, this.params[i]!.shape));
      v.device.write(v.buffer, data);
      return v;
    });
    this.steps = s.step;
  }

  dispose(): void {
    this.velocities.forEach((v) => v?.dispose());
    this.velocities = this.params.map(() => null);
  }
}
