// MQTT topic names of the AWS IoT Jobs device API, shared by the agent and the local hub.
// https://docs.aws.amazon.com/iot/latest/developerguide/jobs-mqtt-api.html

const THING_NAME = /^[a-zA-Z0-9:_-]{1,128}$/;
const JOB_ID = /^[a-zA-Z0-9_-]{1,64}$/;

/** True for a valid AWS IoT thing name (1-128 of [a-zA-Z0-9:_-]). */
export function isThingName(name: string): boolean {
  return THING_NAME.test(name);
}

/** True for a valid AWS IoT job id (1-64 of [a-zA-Z0-9_-]). */
export function isJobId(id: string): boolean {
  return JOB_ID.test(id);
}

/** Topic builders for one thing's jobs API. */
export function jobsTopics(thingName: string) {
  const base = `$aws/things/${thingName}/jobs`;
  return {
    base,
    get: `${base}/get`,
    getAccepted: `${base}/get/accepted`,
    getRejected: `${base}/get/rejected`,
    startNext: `${base}/start-next`,
    startNextAccepted: `${base}/start-next/accepted`,
    startNextRejected: `${base}/start-next/rejected`,
    notify: `${base}/notify`,
    notifyNext: `${base}/notify-next`,
    describe: (jobId: string) => `${base}/${jobId}/get`,
    describeAccepted: (jobId: string) => `${base}/${jobId}/get/accepted`,
    describeRejected: (jobId: string) => `${base}/${jobId}/get/rejected`,
    update: (jobId: string) => `${base}/${jobId}/update`,
    updateAccepted: (jobId: string) => `${base}/${jobId}/update/accepted`,
    updateRejected: (jobId: string) => `${base}/${jobId}/update/rejected`,
  } as const;
}

/** Topic a device publishes its telemetry on. */
export function telemetryTopic(thingName: string): string {
  return `fleetlm/${thingName}/telemetry`;
}

/** Topic filter matching every device's telemetry (the IoT rule and the local sink use it). */
export const TELEMETRY_TOPIC_FILTER = 'fleetlm/+/telemetry';
