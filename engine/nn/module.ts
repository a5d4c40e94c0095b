// Module: parameters, buffers and children by name, a training flag that
// reaches every child, and state dicts under PyTorch's key names
// (`layer1.0.conv1.weight`, `bn1.running_mean`, `bn1.num_batches_tracked`), so a
// checkpoint maps one to one onto a PyTorch model's state_dict().
//
// Children are registered by name with `register` (Sequential names them '0',
// '1', …); a field holding a Module that was not registered is found too and
// named after the field, after the registered ones, in field order (PyTorch
// registers in assignment order; registering explicitly keeps the order exact).
// Parameters and buffers are always registered explicitly: a Tensor field alone
// does not say which of the two it is.
import type { Device } from '../../gpu/device.ts';
import { Tensor, keep, shapeStr } from '../tensor.ts';
import { zeroGrad } from '../autograd.ts';

/** What loadStateDict accepts per key: a tensor of the same shape and dtype, or the values. */
export type StateValue = Tensor | ArrayLike<number> | BigInt64Array;

export interface LoadStateDictOptions {
  /** throw on missing or unexpected keys (default true, as PyTorch) */
  strict?: boolean;
}

export interface LoadStateDictResult {
  missingKeys: string[];
  unexpectedKeys: string[];
}

export abstract class Module {
  /** true: training mode (batch statistics, running-stat updates); false: eval mode */
  training = true;
  private readonly registeredParameters = new Map<string, Tensor | null>();
  private readonly registeredBuffers = new Map<string, Tensor | null>();
  private readonly registeredModules = new Map<string, Module>();

  abstract forward(x: Tensor): Tensor;

  /** Registers a parameter (a leaf with requiresGrad); null records an absent one (bias=False). */
  protected registerParameter<T extends Tensor | null>(name: string, t: T): T {
    this.checkName(name);
    if (t) keep(t).requireGrad(); // a model built inside tidy() keeps its state
    this.registeredParameters.set(name, t);
    return t;
  }

  /** Registers a buffer: state saved in the state dict but not trained (running statistics). */
  protected registerBuffer<T extends Tensor | null>(name: string, t: T): T {
    this.checkName(name);
    if (t) keep(t);
    this.registeredBuffers.set(name, t);
    return t;
  }

  /** Registers a child module under `name` and returns it. */
  register<M extends Module>(name: string, m: M): M {
    this.checkName(name);
    this.registeredModules.set(name, m);
    return m;
  }

  private checkName(name: string): void {
    if (!name || name.includes('.')) throw new Error(`${this.constructor.name}: invalid name '${name}' (non-empty, no '.')`);
    if (this.registeredParameters.has(name) || this.registeredBuffers.has(name) || this.registeredModules.has(name)) {
      throw new Error(`${this.constructor.name}: '${name}' is already registered`);
    }
  }

  /** Direct children, registered ones first, then unregistered Module fields. */
  namedChildren(): [string, Module][] {
    const out: [string, Module][] = [...this.registeredModules];
    const seen = new Set<Module>(this.registeredModules.values());
    for (const [key, value] of Object.entries(this)) {
      if (value instanceof Module && !seen.has(value) && value !== this) {
        seen.add(value);
        out.push([key, value]);
      }
    }
    return out;
  }

  children(): Module[] {
    return this.namedChildren().map(([, m]) => m);
  }

  /** This module and every descendant, depth first, with dotted names ('' for this one). */
  namedModules(prefix = ''): [string, Module][] {
    const out: [string, Module][] = [];
    const seen = new Set<Module>();
    const visit = (m: Module, name: string): void => {
      if (seen.has(m)) return;
      seen.add(m);
      out.push([name, m]);
      for (const [k, c] of m.namedChildren()) visit(c, name ? `${name}.${k}` : k);
    };
    visit(this, prefix);
    return out;
  }

  modules(): Module[] {
    return this.namedModules().map(([, m]) => m);
  }

  /** Calls fn on every module (children before parents, as PyTorch's apply) and returns this. */
  apply(fn: (m: Module) => void): this {
    for (const c of this.children()) c.apply(fn);
    fn(this);
    return this;
  }

  private namedTensors(kind: 'parameters' | 'buffers', prefix: string): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    const seen = new Set<Tensor>();
    for (const [name, m] of this.namedModules(prefix)) {
      const own = kind === 'parameters' ? m.registeredParameters : m.registeredBuffers;
      for (const [k, t] of own) {
        if (!t || seen.has(t)) continue;
        seen.add(t);
        out.push([name ? `${name}.${k}` : k, t]);
      }
    }
    return out;
  }

  /** Every parameter with its dotted name, each once, in registration order depth first. */
  namedParameters(prefix = ''): [string, Tensor][] {
    return this.namedTensors('parameters', prefix);
  }

  parameters(): Tensor[] {
    return this.namedParameters().map(([, t]) => t);
  }

  namedBuffers(prefix = ''): [string, Tensor][] {
    return this.namedTensors('buffers', prefix);
  }

  buffers(): Tensor[] {
    return this.namedBuffers().map(([, t]) => t);
  }

  /** Sets training mode on this module and every descendant. */
  train(mode = true): this {
    for (const m of this.modules()) m.training = mode;
    return this;
  }

  /** train(false). */
  eval(): this {
    return this.train(false);
  }

  /** Frees every parameter's gradient (PyTorch's zero_grad(set_to_none=True)). */
  zeroGrad(): void {
    zeroGrad(this.parameters());
  }

  /**
   * The module's state under PyTorch's key names: for each module depth first, its
   * parameters then its buffers. The values are the live tensors (not copies).
   */
  stateDict(): Record<string, Tensor> {
    const out: Record<string, Tensor> = {};
    const seen = new Set<Tensor>();
    for (const [name, m] of this.namedModules()) {
      for (const own of [m.registeredParameters, m.registeredBuffers]) {
        for (const [k, t] of own) {
          if (!t || seen.has(t)) continue;
          seen.add(t);
          out[name ? `${name}.${k}` : k] = t;
        }
      }
    }
    return out;
  }

  /**
   * Copies values into this module's parameters and buffers (in place, so
   * optimizers holding them stay valid). Tensors must match in shape and dtype;
   * arrays must have the right length and are converted to the tensor's dtype.
   */
  loadStateDict(state: Record<string, StateValue>, options: LoadStateDictOptions = {}): LoadStateDictResult {
    const strict = options.strict ?? true;
    const own = this.stateDict();
    const missingKeys = Object.keys(own).filter((k) => !(k in state));
    const unexpectedKeys = Object.keys(state).filter((k) => !(k in own));
    if (strict && (missingKeys.length || unexpectedKeys.length)) {
      throw new Error(
        `loadStateDict (${this.constructor.name}): ` +
          [missingKeys.length ? `missing keys ${missingKeys.join(', ')}` : '', unexpectedKeys.length ? `unexpected keys ${unexpectedKeys.join(', ')}` : '']
            .filter((s) => s)
            .join('; '),
      );
    }
    // validate everything before writing anything
    const writes: (() => void)[] = [];
    for (const [key, dst] of Object.entries(own)) {
      if (!(key in state)) continue;
      const src = state[key]!;
      const device: Device = dst.device;
      if (src instanceof Tensor) {
        const sameShape = src.rank === dst.rank && src.shape.every((d, i) => d === dst.shape[i]);
        if (!sameShape && !(src.size === 1 && dst.size === 1)) {
          throw new Error(`loadStateDict: '${key}' has shape ${shapeStr(src.shape)}, the module expects ${shapeStr(dst.shape)}`);
        }
        if (src.dtype !== dst.dtype) throw new Error(`loadStateDict: '${key}' is ${src.dtype}, the module expects ${dst.dtype}`);
        if (src !== dst) writes.push(() => device.copy(src.buffer, 0, dst.buffer, 0, dst.size * 4));
      } else {
        if (src.length !== dst.size) {
          throw new Error(`loadStateDict: '${key}' has ${src.length} values, the module expects ${dst.size} (shape ${shapeStr(dst.shape)})`);
        }
        const values = Array.from(src as ArrayLike<number | bigint>, Number);
        const data = dst.dtype === 'i32' ? Int32Array.from(values) : Float32Array.from(values);
        writes.push(() => device.write(dst.buffer, data));
      }
    }
    for (const w of writes) w();
    return { missingKeys, unexpectedKeys };
  }

  /** Returns every parameter's and buffer's GPU memory (and gradients) to the pool. */
  dispose(): void {
    for (const t of this.parameters()) {
      t.grad?.dispose();
      t.grad = null;
      t.dispose();
    }
    for (const t of this.buffers()) t.dispose();
  }

  /** A one-line-per-module summary, PyTorch's repr style. */
  toString(): string {
    const lines: string[] = [];
    const walk = (m: Module, name: string, depth: number): void => {
      const pad = '  '.repeat(depth);
      const own = [...m.registeredParameters].filter(([, t]) => t).map(([k, t]) => `${k}: ${shapeStr(t!.shape)}`);
      lines.push(`${pad}${name ? `(${name}): ` : ''}${m.constructor.name}${m.describe()}${own.length ? ` {${own.join(', ')}}` : ''}`);
      for (const [k, c] of m.namedChildren()) walk(c, k, depth + 1);
    };
    walk(this, '', 0);
    return lines.join('\n');
  }

  /** Extra description for toString, e.g. '(3, 16, kernel 3×3)'. */
  protected describe(): string {
    return '';
  }
}

/** Modules applied in order; children named '0', '1', … as PyTorch's nn.Sequential. */
export class Sequential extends Module {
  private readonly layers: Module[] = [];

  constructor(...modules: Module[]) {
    super();
    for (const m of modules) this.append(m);
  }

  append(m: Module): this {
    this.register(String(this.layers.length), m);
    this.layers.push(m);
    return this;
  }

  get length(): number {
    return this.layers.length;
  }

  at(i: number): Module {
    const m = this.layers[i];
    if (!m) throw new Error(`Sequential: no layer ${i} (length ${this.layers.length})`);
    return m;
  }

  forward(x: Tensor): Tensor {
    let y = x;
    for (const m of this.layers) y = m.forward(y);
    return y;
  }
}
