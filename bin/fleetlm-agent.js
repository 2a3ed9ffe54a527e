#!/usr/bin/env node
// Device agent entry: loads the TypeScript sources through tsx so no build step is needed.
import { register } from 'tsx/esm/api';
register();
await import('../edge-agent/main.ts');
