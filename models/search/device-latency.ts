// Picks the device and the latency model a search costs designs with: the measured table when one
// is given (roofline fallback for what it lacks), else the device's roofline, else none.
import { ValidationError } from '../../common/errors.ts';
import { computeUnitOf, deviceProfile, type DeviceProfile } from './device-profiles.ts';
import type { LatencyModel } from './latency-model.ts';
import { MeasuredLatencyModel } from './measured-latency.ts';
import type { ResolvedOptions } from './options.ts';
import { RooflineLatencyModel } from './roofline-latency.ts';

/** The device a result was designed for and which latency model costed it. */
export interface SearchDevice {
  id: string;
  name: string;
  unit: 'gpu' | 'cpu';
  latencyModel: 'roofline' | 'measured';
}

/** Resolves the latency model of the options' device (or table); null model and device without either. */
export function resolveLatencyModel(o: ResolvedOptions, seqLen: number): { model: LatencyModel | null; device: SearchDevice | null } {
  let profile: DeviceProfile | undefined;
  if (typeof o.device === 'string') profile = deviceProfile(o.device);
  else if (o.device) profile = o.device;
  else if (o.latencyTable) profile = deviceProfile(o.latencyTable.device);
  if (!profile) {
    if (o.budgets.latencyMs !== undefined) {
      throw new ValidationError('a latency budget needs a device: pass device (jetson-nano, jetson-orin-nano, rpi4, rpi5) or a latency table');
    }
    return { model: null, device: null };
  }
  if (o.latencyTable && o.latencyTable.device !== profile.id) {
    throw new ValidationError(`layer latency table is for device '${o.latencyTable.device}' but the search targets '${profile.id}'`);
  }
  // A table measured at one weight width says nothing exact about another.
  if (o.latencyTable && o.weightBits !== undefined && o.latencyTable.bytesPerWeight * 8 !== o.weightBits) {
    throw new ValidationError(
      `layer latency table was measured at ${o.latencyTable.bytesPerWeight * 8}-bit weights (bytesPerWeight ${o.latencyTable.bytesPerWeight}) but the search ships ${o.weightBits}-bit weights; measure at ${o.weightBits} bits or drop weightBits`,
    );
  }
  const { kind, unit } = computeUnitOf(profile, o.computeUnit ?? o.latencyTable?.unit);
  const roofline = new RooflineLatencyModel(
    unit,
    o.storage ? { seqLen, weights: o.storage, kvBytesPerValue: o.kvBytesPerValue } : { seqLen, bytesPerWeight: o.bytesPerWeight },
  );
  const model = o.latencyTable ? new MeasuredLatencyModel(o.latencyTable, roofline) : roofline;
  return { model, device: { id: profile.id, name: profile.name, unit: kind, latencyModel: model.kind } };
}
