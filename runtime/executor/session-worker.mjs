// Worker entry for OrtRunner: loads session-worker.ts through tsx. Node 20 workers inherit neither
// `--import tsx` nor tsx's register() hooks from their parent, and tsImport's scoped loader cannot clash
// with hooks a later Node might pass down.
import { tsImport } from 'tsx/esm/api';

await tsImport('./session-worker.ts', import.meta.url);
