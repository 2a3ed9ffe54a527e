// One way to build a FleetLM Lambda: arm64, Node 24, esbuild bundling on this machine (never
// Docker), ESM output, and onnxruntime-node shipped beside the bundle for functions that run models.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Duration, RemovalPolicy, Size } from 'aws-cdk-lib';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import { NodejsFunction, OutputFormat } from 'aws-cdk-lib/aws-lambda-nodejs';
import type { Construct } from 'constructs';

/** Repository root (the directory holding package-lock.json). */
export const PROJECT_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

export interface FleetFunctionProps {
  /** Handler file under functions/, e.g. `search.ts`. */
  entry: string;
  memoryMb?: number;
  timeout?: Duration;
  /** Ship onnxruntime-node (linux/arm64 binaries only) as a real module next to the bundle. */
  onnxRuntime?: boolean;
  environment?: Record<string, string>;
  description?: string;
  ephemeralStorageMb?: number;
}

/**
 * Commands that copy onnxruntime-node from this checkout's node_modules into the bundle.
 * Why not `nodeModules`: that runs `npm ci` inside the bundle (needs the registry, so not offline)
 * and installs all platforms' binaries (288 MB, over Lambda's 250 MB limit); linux/arm64 is 25 MB.
 */
export function onnxRuntimeCopyCommands(inputDir: string, outputDir: string): string[] {
  const src = `${inputDir}/node_modules`;
  const dst = `${outputDir}/node_modules`;
  return [
    `mkdir -p "${dst}/onnxruntime-node/bin/napi-v6/linux"`,
    `cp "${src}/onnxruntime-node/package.json" "${dst}/onnxruntime-node/"`,
    `cp -R "${src}/onnxruntime-node/dist" "${dst}/onnxruntime-node/"`,
    `cp -R "${src}/onnxruntime-node/bin/napi-v6/linux/arm64" "${dst}/onnxruntime-node/bin/napi-v6/linux/"`,
    `cp -R "${src}/onnxruntime-common" "${dst}/"`,
  ];
}

/** A NodejsFunction with FleetLM's defaults and its own log group (30 days). */
export function fleetFunction(scope: Construct, id: string, props: FleetFunctionProps): NodejsFunction {
  const logGroup = new logs.LogGroup(scope, `${id}Logs`, {
    retention: logs.RetentionDays.ONE_MONTH,
    removalPolicy: RemovalPolicy.DESTROY,
  });
  return new NodejsFunction(scope, id, {
    entry: path.join(PROJECT_ROOT, 'functions', props.entry),
    handler: 'handler',
    projectRoot: PROJECT_ROOT,
    depsLockFilePath: path.join(PROJECT_ROOT, 'package-lock.json'),
    runtime: lambda.Runtime.NODEJS_24_X,
    architecture: lambda.Architecture.ARM_64,
    memorySize: props.memoryMb ?? 512,
    timeout: props.timeout ?? Duration.minutes(1),
    ephemeralStorageSize: props.ephemeralStorageMb ? Size.mebibytes(props.ephemeralStorageMb) : undefined,
    description: props.description,
    logGroup,
    tracing: lambda.Tracing.ACTIVE,
    environment: { NODE_OPTIONS: '--enable-source-maps', ...props.environment },
    bundling: {
      forceDockerBundling: false,
      format: OutputFormat.ESM,
      target: 'node24',
      platform: 'node',
      minify: true,
      // Step Functions Retry/Catch match the Lambda errorType, which is the error's name; FleetError
      // subclasses take their name from the class, so minified class names would never match.
      keepNames: true,
      sourceMap: true,
      // The SDK is bundled (not taken from the runtime) so every function runs the versions it was tested with.
      externalModules: props.onnxRuntime ? ['onnxruntime-node'] : [],
      mainFields: ['module', 'main'],
      // Bundled CommonJS dependencies call require(); ESM has none unless we make one.
      banner: "import { createRequire as __fleetlmCreateRequire } from 'node:module'; const require = __fleetlmCreateRequire(import.meta.url);",
      commandHooks: props.onnxRuntime
        ? {
            beforeBundling: () => [],
            beforeInstall: () => [],
            afterBundling: (inputDir: string, outputDir: string) => onnxRuntimeCopyCommands(inputDir, outputDir),
          }
        : undefined,
    },
  });
}
