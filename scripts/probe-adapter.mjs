// Prints the adapter Dawn finds (vendor/architecture/device), or exits 1.
// Plain JavaScript so the set-up step runs before anything is compiled.
import { create, globals } from 'webgpu';
Object.assign(globalThis, globals);
const gpu = create([]);
const adapter = await gpu.requestAdapter();
if (!adapter) { console.error('no adapter'); process.exit(1); }
const info = adapter.info ?? {};
const device = await adapter.requestDevice();
console.log(`${info.vendor ?? '?'} ${info.architecture ?? ''} ${info.device ?? ''} ${info.description ?? ''}`.replace(/\s+/g, ' ').trim());
device.destroy();
process.exit(0);
