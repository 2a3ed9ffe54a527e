// MQTT 3.1.1 topic filter matching (section 4.7), which routes the agent's incoming messages to handlers.
import { describe, expect, it } from 'vitest';
import { topicMatchesFilter } from '../../edge-agent/mqtt-topic-filter.ts';

describe('topicMatchesFilter', () => {
  it('matches exact topics, + for one level and # for a level and everything below', () => {
    const cases: Array<[string, string, boolean]> = [
      ['a/b/c', 'a/b/c', true],
      ['a/b/c', 'a/b', false],
      ['a/b', 'a/b/c', false],
      ['a/+/c', 'a/x/c', true],
      ['a/+/c', 'a/x/y/c', false],
      ['a/+', 'a/', true], // an empty level is a level
      ['+/+', '/x', true],
      ['a/#', 'a', true], // '#' includes the parent level (4.7.1.2)
      ['a/#', 'a/b/c', true],
      ['a/#', 'ab', false],
      ['#', 'a/b', true],
      ['$aws/things/t1/jobs/+/get/accepted', '$aws/things/t1/jobs/j-1/get/accepted', true],
      ['$aws/things/t1/jobs/+/get/accepted', '$aws/things/t2/jobs/j-1/get/accepted', false],
      ['$aws/things/t1/jobs/notify-next', '$aws/things/t1/jobs/notify-next', true],
    ];
    for (const [filter, topic, want] of cases) expect(topicMatchesFilter(filter, topic), `${filter} ~ ${topic}`).toBe(want);
  });

  it('keeps $-topics away from filters that start with a wildcard (4.7.2)', () => {
    expect(topicMatchesFilter('#', '$aws/things/t1/jobs/notify-next')).toBe(false);
    expect(topicMatchesFilter('+/things/#', '$aws/things/t1')).toBe(false);
    expect(topicMatchesFilter('$aws/#', '$aws/things/t1')).toBe(true);
  });
});
