// onnxruntime-node, as every Cleave module loads it: with onnxruntime's own telemetry off.
//
// From 1.30 on Linux, onnxruntime records usage events (sessions, runs, errors, a device id) for
// upload to Microsoft's collector, and until it can upload them (never, offline) it keeps them in a
// SQLite database under ~/.cache/Microsoft/DeveloperTools/.onnxruntime, shared by every process and
// growing (5.4 MB after one `cleave bench pipeline`), plus a log per process in /tmp/mat-debug-<pid>.log
// ("database is locked": the executors contend for it). An inference runtime must not phone home with
// its users' workloads, so it is off unless the user set ORT_DISABLE_TELEMETRY themselves (to 0, say).
// onnxruntime reads the variable when its environment is created, at the first session, after this
// module has run; worker threads and child processes inherit it.
import ort from 'onnxruntime-node';

process.env.ORT_DISABLE_TELEMETRY ??= '1';

export default ort;
/** The same, by name: what `await import('./ort.js')` callers use (runtime/graph/probe.ts). */
export const { InferenceSession, Tensor, env } = ort;
