// Things and thing groups of the local hub (CreateThing, CreateThingGroup, group membership), kept in the
// hub's durable state. Jobs that follow a group's membership are the job engine's business, not this one's.
import { randomUUID } from 'node:crypto';
import { HubApiError } from './hub-api-error.ts';
import type { IotArns } from './iot-arns.ts';
import type { GroupRecord, HubState, ThingRecord } from './job-store.ts';

/** The registry over the things and groups of a hub state. */
export class ThingRegistry {
  private readonly state: HubState;
  private readonly arns: IotArns;
  private readonly now: () => number;

  constructor(state: HubState, arns: IotArns, now: () => number) {
    this.state = state;
    this.arns = arns;
    this.now = now;
  }

  hasThing(name: string): boolean {
    return Object.hasOwn(this.state.things, name);
  }

  /** CreateThing: idempotent when the attributes are the same. */
  createThing(name: string, attributes: Record<string, string> = {}): ThingRecord {
    const existing = this.state.things[name];
    if (existing) {
      if (JSON.stringify(existing.attributes) !== JSON.stringify(attributes)) {
        throw new HubApiError('ResourceAlreadyExists', `Thing ${name} already exists with different attributes`);
      }
      return existing;
    }
    const thing: ThingRecord = {
      thingName: name,
      thingId: randomUUID(),
      thingArn: this.arns.thing(name),
      attributes,
      version: 1,
      createdAt: this.now(),
    };
    this.state.things[name] = thing;
    return thing;
  }

  getThing(name: string): ThingRecord {
    const thing = this.state.things[name];
    if (!thing) throw new HubApiError('ResourceNotFound', `Thing ${name} cannot be found.`);
    return thing;
  }

  listThings(): ThingRecord[] {
    return Object.values(this.state.things).sort((a, b) => a.thingName.localeCompare(b.thingName));
  }

  /** CreateThingGroup: idempotent when description and attributes are the same. */
  createThingGroup(name: string, description: string | undefined, attributes: Record<string, string> = {}): GroupRecord {
    const existing = this.state.groups[name];
    if (existing) {
      if (existing.description !== description || JSON.stringify(existing.attributes) !== JSON.stringify(attributes)) {
        throw new HubApiError('ResourceAlreadyExists', `Thing group ${name} already exists with different properties`);
      }
      return existing;
    }
    const group: GroupRecord = {
      thingGroupName: name,
      thingGroupId: randomUUID(),
      thingGroupArn: this.arns.group(name),
      description,
      attributes,
      version: 1,
      createdAt: this.now(),
      things: [],
    };
    this.state.groups[name] = group;
    return group;
  }

  hasGroup(name: string): boolean {
    return Object.hasOwn(this.state.groups, name);
  }

  getGroup(name: string): GroupRecord {
    const group = this.state.groups[name];
    if (!group) throw new HubApiError('ResourceNotFound', `Thing group ${name} cannot be found.`);
    return group;
  }

  listGroups(): GroupRecord[] {
    return Object.values(this.state.groups).sort((a, b) => a.thingGroupName.localeCompare(b.thingGroupName));
  }

  /** Adds a member; returns the group when it changed, undefined when the thing was already in it. */
  addThingToGroup(groupName: string, thingName: string): GroupRecord | undefined {
    const group = this.getGroup(groupName);
    this.getThing(thingName);
    if (group.things.includes(thingName)) return undefined;
    group.things.push(thingName);
    group.version += 1;
    return group;
  }

  /** Removes a member; returns the group when it changed, undefined when the thing was not in it. */
  removeThingFromGroup(groupName: string, thingName: string): GroupRecord | undefined {
    const group = this.getGroup(groupName);
    this.getThing(thingName);
    const at = group.things.indexOf(thingName);
    if (at < 0) return undefined;
    group.things.splice(at, 1);
    group.version += 1;
    return group;
  }

  /** Things a list of target ARNs names now, in rollout order; unknown things and foreign ARNs are left out. */
  resolveTargets(targets: readonly string[]): Set<string> {
    const things = new Set<string>();
    for (const target of targets) {
      const parsed = this.arns.parseTarget(target);
      if (!parsed) continue;
      if (parsed.kind === 'thing') {
        if (this.hasThing(parsed.name)) things.add(parsed.name);
      } else {
        for (const t of this.state.groups[parsed.name]?.things ?? []) things.add(t);
      }
    }
    return things;
  }
}
