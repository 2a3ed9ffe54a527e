// Worker-thread entry for tt-row.ts: registers tsx so the TypeScript implementation loads without a build step.
import { register } from 'tsx/esm/api';

register();
await import('./tt-row-worker.ts');
