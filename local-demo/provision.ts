// Registers demo devices with the IoT control plane (things in a thing group), through
// @aws-sdk/client-iot exactly as an operator would against AWS.
import { AddThingToThingGroupCommand, CreateThingCommand, CreateThingGroupCommand, type IoTClient } from '@aws-sdk/client-iot';
import { TransportError } from '../common/errors.ts';

function alreadyExists(err: unknown): boolean {
  return (err as { name?: string })?.name === 'ResourceAlreadyExistsException';
}

/** Creates the group (if missing) and each thing in it. */
export async function provisionThings(iot: IoTClient, group: string, things: readonly string[]): Promise<void> {
  try {
    await iot.send(new CreateThingGroupCommand({ thingGroupName: group }));
  } catch (err) {
    if (!alreadyExists(err)) throw new TransportError(`CreateThingGroup ${group} failed: ${(err as Error).message}`, { cause: err });
  }
  for (const thingName of things) {
    try {
      await iot.send(new CreateThingCommand({ thingName }));
    } catch (err) {
      if (!alreadyExists(err)) throw new TransportError(`CreateThing ${thingName} failed: ${(err as Error).message}`, { cause: err });
    }
    await iot.send(new AddThingToThingGroupCommand({ thingGroupName: group, thingName }));
  }
}
