// MQTT topic filter matching (MQTT 3.1.1 section 4.7): one client connection carries every subscription, so
// the agent routes each incoming message to the handlers whose filters match its topic. Hand-written because
// the rule is short and fixed by the spec, and mqtt.js, which the agent uses, does not export its own.

/** Whether `topic` matches the subscription `filter` ('+' one level, '#' this level and all below). */
export function topicMatchesFilter(filter: string, topic: string): boolean {
  // Topics starting with '$' (e.g. $aws/...) are not matched by filters starting with a wildcard (4.7.2).
  if (topic.startsWith('$') && (filter.startsWith('+') || filter.startsWith('#'))) return false;
  const f = filter.split('/');
  const t = topic.split('/');
  for (let i = 0; i < f.length; i++) {
    const level = f[i]!;
    if (level === '#') return i === f.length - 1;
    if (i >= t.length) return false;
    if (level !== '+' && level !== t[i]) return false;
  }
  return f.length === t.length;
}
