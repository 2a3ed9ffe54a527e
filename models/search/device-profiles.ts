// Device classes the search can target (Jetson Nano, Jetson Orin Nano, Raspberry Pi 4 and 5): the
// published peak compute and memory bandwidth a roofline latency model needs, with their sources.
import { z } from 'zod';
import { parseWith } from '../../common/validate.ts';
import { ValidationError } from '../../common/errors.ts';

/** One processor of a device (GPU or CPU cluster) as the roofline model sees it. */
export const ComputeUnitSchema = z
  .object({
    description: z.string().min(1),
    /** Theoretical peak FP32 FLOP/s. FleetLM runs float32 models. */
    peakFlops: z.number().positive(),
    /** Theoretical peak DRAM bandwidth in bytes/s. */
    memoryBandwidth: z.number().positive(),
    /** Fraction of peak compute a tuned kernel reaches (an assumption, replace with measurements). */
    computeEfficiency: z.number().positive().max(1),
    /** Fraction of peak bandwidth a streaming kernel reaches (an assumption). */
    memoryEfficiency: z.number().positive().max(1),
    /** Fixed cost per operator (kernel launch or thread dispatch), seconds. */
    opOverheadS: z.number().nonnegative(),
  })
  .strict();

export const DeviceProfileSchema = z
  .object({
    id: z.string().regex(/^[a-z0-9][a-z0-9-]*$/, 'lower-case letters, digits and dashes'),
    name: z.string().min(1),
    memoryBytes: z.number().positive(),
    defaultUnit: z.enum(['gpu', 'cpu']),
    units: z.object({ gpu: ComputeUnitSchema.optional(), cpu: ComputeUnitSchema }).strict(),
    sources: z.array(z.object({ claim: z.string(), url: z.string().url() }).strict()).min(1),
  })
  .strict()
  .superRefine((p, ctx) => {
    if (p.defaultUnit === 'gpu' && !p.units.gpu) ctx.addIssue({ code: 'custom', path: ['units', 'gpu'], message: 'defaultUnit is gpu but no gpu unit is given' });
  });

export type ComputeUnit = z.output<typeof ComputeUnitSchema>;
export type DeviceProfile = z.output<typeof DeviceProfileSchema>;
export type ComputeUnitKind = 'gpu' | 'cpu';

const GB = 1e9;
const GIB = 2 ** 30;
// Assumed attained fractions of peak; telemetry-measured tables (latency-table.ts) replace them.
const GPU_EFF = { computeEfficiency: 0.5, memoryEfficiency: 0.7, opOverheadS: 10e-6 };
const CPU_EFF = { computeEfficiency: 0.5, memoryEfficiency: 0.6, opOverheadS: 2e-6 };

/** The shipped profiles. Peak figures are theoretical; the arithmetic is in each description. */
export const DEVICE_PROFILES: Readonly<Record<string, DeviceProfile>> = {
  'jetson-nano': {
    id: 'jetson-nano',
    name: 'NVIDIA Jetson Nano (4 GB)',
    memoryBytes: 4 * GIB,
    defaultUnit: 'gpu',
    units: {
      gpu: { description: '128-core Maxwell GPU, 921.6 MHz: 128 x 2 x 0.9216 GHz = 236 GFLOPS FP32 (472 GFLOPS FP16)', peakFlops: 235.9e9, memoryBandwidth: 25.6 * GB, ...GPU_EFF },
      cpu: { description: '4x Cortex-A57 at 1.43 GHz, one 128-bit FMA per cycle: 4 x 1.43 GHz x 8 = 45.8 GFLOPS FP32', peakFlops: 45.8e9, memoryBandwidth: 25.6 * GB, ...CPU_EFF },
    },
    sources: [
      { claim: '472 GFLOPS (FP16), 128-core Maxwell GPU, 4 GB 64-bit LPDDR4 at 25.6 GB/s, 4x Cortex-A57 at 1.43 GHz', url: 'https://developer.nvidia.com/embedded/jetson-nano-developer-kit' },
      { claim: 'Jetson Nano module data sheet (GPU 921 MHz, LPDDR4 1600 MHz x 64 bit)', url: 'https://developer.nvidia.com/embedded/downloads#?search=Jetson%20Nano%20Data%20Sheet' },
    ],
  },
  'jetson-orin-nano': {
    id: 'jetson-orin-nano',
    name: 'NVIDIA Jetson Orin Nano 8 GB (JetPack 5 clocks; the "Super" mode raises GPU clock to 1.02 GHz and bandwidth to 102 GB/s)',
    memoryBytes: 8 * GIB,
    defaultUnit: 'gpu',
    units: {
      gpu: { description: '1024-core Ampere GPU at 625 MHz: 1024 x 2 x 0.625 GHz = 1.28 TFLOPS FP32', peakFlops: 1.28e12, memoryBandwidth: 68 * GB, ...GPU_EFF },
      cpu: { description: '6x Cortex-A78AE at 1.5 GHz, two 128-bit FMA per cycle: 6 x 1.5 GHz x 16 = 144 GFLOPS FP32', peakFlops: 144e9, memoryBandwidth: 68 * GB, ...CPU_EFF },
    },
    sources: [
      { claim: '1024-core Ampere GPU with 32 Tensor Cores, 6-core Cortex-A78AE, 8 GB 128-bit LPDDR5 at 68 GB/s', url: 'https://www.nvidia.com/en-us/autonomous-machines/embedded-systems/jetson-orin/' },
      { claim: 'Jetson Orin Nano Series data sheet (GPU max 625 MHz, CPU max 1.5 GHz)', url: 'https://developer.nvidia.com/embedded/downloads#?search=Jetson%20Orin%20Nano%20Series%20Data%20Sheet' },
      { claim: 'Super mode: 1.02 GHz GPU, 102 GB/s', url: 'https://developer.nvidia.com/blog/nvidia-jetson-orin-nano-developer-kit-gets-a-super-boost/' },
    ],
  },
  rpi4: {
    id: 'rpi4',
    name: 'Raspberry Pi 4 Model B',
    memoryBytes: 4 * GIB,
    defaultUnit: 'cpu',
    units: {
      cpu: { description: '4x Cortex-A72 at 1.5 GHz, one 128-bit FMA per cycle: 4 x 1.5 GHz x 8 = 48 GFLOPS FP32', peakFlops: 48e9, memoryBandwidth: 12.8 * GB, ...CPU_EFF },
    },
    sources: [
      { claim: 'BCM2711 quad Cortex-A72 (ARM v8) 64-bit SoC at 1.5 GHz, LPDDR4-3200 SDRAM (32 bit: 12.8 GB/s)', url: 'https://datasheets.raspberrypi.com/rpi4/raspberry-pi-4-product-brief.pdf' },
      { claim: 'Cortex-A72 ASIMD FP multiply-accumulate throughput (Q form)', url: 'https://developer.arm.com/documentation/uan0016/latest/' },
    ],
  },
  rpi5: {
    id: 'rpi5',
    name: 'Raspberry Pi 5',
    memoryBytes: 8 * GIB,
    defaultUnit: 'cpu',
    units: {
      cpu: { description: '4x Cortex-A76 at 2.4 GHz, two 128-bit FMA per cycle: 4 x 2.4 GHz x 16 = 153.6 GFLOPS FP32', peakFlops: 153.6e9, memoryBandwidth: 17.07 * GB, ...CPU_EFF },
    },
    sources: [
      { claim: 'BCM2712 quad Cortex-A76 at 2.4 GHz, LPDDR4X-4267 SDRAM (32 bit: 17.1 GB/s)', url: 'https://datasheets.raspberrypi.com/rpi5/raspberry-pi-5-product-brief.pdf' },
      { claim: 'Cortex-A76 ASIMD FP multiply-accumulate throughput (Q form, 2 pipes)', url: 'https://developer.arm.com/documentation/pjdoc466751330-7215/latest/' },
    ],
  },
};

/** Names of the shipped profiles. */
export const DEVICE_IDS: readonly string[] = Object.keys(DEVICE_PROFILES);

/** Looks up a shipped profile; unknown names fail listing the known ones. */
export function deviceProfile(id: string): DeviceProfile {
  const p = DEVICE_PROFILES[id];
  if (!p) throw new ValidationError(`unknown device '${id}'; known devices: ${DEVICE_IDS.join(', ')}`);
  return p;
}

/** Validates a profile from a file (a device class not shipped here). */
export function parseDeviceProfile(value: unknown): DeviceProfile {
  return parseWith(DeviceProfileSchema, value, 'device profile');
}

/** The compute unit a profile runs on: the requested one, else its default. */
export function computeUnitOf(profile: DeviceProfile, kind?: ComputeUnitKind): { kind: ComputeUnitKind; unit: ComputeUnit } {
  const k = kind ?? profile.defaultUnit;
  const unit = profile.units[k];
  if (!unit) {
    const have = Object.keys(profile.units).join(', ');
    throw new ValidationError(`device '${profile.id}' has no ${k} unit; available: ${have}`);
  }
  return { kind: k, unit };
}
