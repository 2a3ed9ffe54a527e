import { defineConfig } from 'vitest/config';

// Tests run against real parts (brokers, S3 servers, onnxruntime), so timeouts are generous
// and files run in forked processes to keep native modules isolated.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Spawned CLI and agent processes run the bundles: build them first when stale.
    globalSetup: ['test/global-setup.ts'],
    pool: 'forks',
    testTimeout: 60_000,
    hookTimeout: 60_000,
    reporters: ['default'],
  },
});
