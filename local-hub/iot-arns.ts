// ARNs of the local hub's things, thing groups and jobs, in the one account and region it pretends to be.
// https://docs.aws.amazon.com/service-authorization/latest/reference/list_awsiot.html#awsiot-resources-for-iam-policies

export type TargetKind = 'thing' | 'thinggroup';

/** Builds and parses the IoT ARNs of one account in one region. */
export class IotArns {
  readonly region: string;
  readonly accountId: string;

  constructor(region: string, accountId: string) {
    this.region = region;
    this.accountId = accountId;
  }

  private arn(resource: string): string {
    return `arn:aws:iot:${this.region}:${this.accountId}:${resource}`;
  }

  thing(name: string): string {
    return this.arn(`thing/${name}`);
  }

  group(name: string): string {
    return this.arn(`thinggroup/${name}`);
  }

  job(id: string): string {
    return this.arn(`job/${id}`);
  }

  /** Parses a thing or thing-group ARN of this account and region; null for anything else. */
  parseTarget(arn: string): { kind: TargetKind; name: string } | null {
    const m = /^arn:aws:iot:([a-z0-9-]+):(\d{12}):(thing|thinggroup)\/([a-zA-Z0-9:_-]{1,128})$/.exec(arn);
    if (!m || m[1] !== this.region || m[2] !== this.accountId) return null;
    return { kind: m[3] as TargetKind, name: m[4]! };
  }
}
