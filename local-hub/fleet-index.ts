// SearchIndex over the hub's things: the subset of the AWS IoT fleet indexing query language operators use
// (`*`, `thingName:`, `thingGroupNames:`, `connectivity.connected:`, `attributes.X:`, joined by AND), answering
// ThingDocuments with the `connectivity` field. https://docs.aws.amazon.com/iot/latest/developerguide/query-syntax.html
import type { ThingConnectivity } from './connectivity.ts';
import type { GroupRecord, ThingRecord } from './job-store.ts';

/** A fleet-index ThingDocument (the fields the local hub indexes). */
export interface ThingDocument {
  thingName: string;
  thingId: string;
  thingGroupNames: string[];
  attributes: Record<string, string>;
  /** Absent when connectivity is not indexed (an external broker); no timestamp when never connected since the hub started. */
  connectivity?: { connected: boolean; timestamp?: number; disconnectReason?: string };
}

type Term = { field: string; value: string };

/** Thrown for a query outside the supported subset; the control plane answers InvalidQueryException. */
export class InvalidQueryError extends Error {}

/** Parses `a:b AND c:d` (also space-separated terms); `*` alone matches every thing. */
export function parseQuery(queryString: string): Term[] {
  const text = queryString.trim();
  if (text === '' ) throw new InvalidQueryError('queryString must not be empty; use * for every thing');
  if (text === '*') return [];
  const terms: Term[] = [];
  for (const token of text.split(/\s+/)) {
    if (token === 'AND') continue;
    if (token === 'OR' || token === 'NOT' || token.startsWith('(')) {
      throw new InvalidQueryError(`the local hub supports only AND of field:value terms; got "${token}" in "${queryString}"`);
    }
    const colon = token.indexOf(':');
    if (colon <= 0 || colon === token.length - 1) throw new InvalidQueryError(`term "${token}" must be field:value`);
    const field = token.slice(0, colon);
    if (!['thingName', 'thingId', 'thingGroupNames', 'connectivity.connected'].includes(field) && !field.startsWith('attributes.')) {
      throw new InvalidQueryError(`field "${field}" is not indexed by the local hub; use thingName, thingGroupNames, connectivity.connected or attributes.NAME`);
    }
    terms.push({ field, value: token.slice(colon + 1) });
  }
  return terms;
}

function matchesValue(actual: string | undefined, pattern: string): boolean {
  if (actual === undefined) return false;
  if (pattern === '*') return true;
  return pattern.endsWith('*') ? actual.startsWith(pattern.slice(0, -1)) : actual === pattern;
}

function matches(doc: ThingDocument, term: Term): boolean {
  switch (term.field) {
    case 'thingName':
      return matchesValue(doc.thingName, term.value);
    case 'thingId':
      return matchesValue(doc.thingId, term.value);
    case 'thingGroupNames':
      return doc.thingGroupNames.some((g) => matchesValue(g, term.value));
    case 'connectivity.connected':
      return String(doc.connectivity?.connected ?? false) === term.value;
    default:
      return matchesValue(doc.attributes[term.field.slice('attributes.'.length)], term.value);
  }
}

/** The ThingDocuments of `things` that match `queryString`, sorted by name. */
export function searchThings(
  things: ThingRecord[],
  groups: GroupRecord[],
  connectivityOf: ((thing: string) => ThingConnectivity | undefined) | undefined,
  queryString: string,
): ThingDocument[] {
  const terms = parseQuery(queryString);
  const groupsOf = new Map<string, string[]>();
  for (const g of groups) for (const t of g.things) groupsOf.set(t, [...(groupsOf.get(t) ?? []), g.thingGroupName]);
  return things
    .map((t): ThingDocument => {
      const c = connectivityOf ? (connectivityOf(t.thingName) ?? { connected: false }) : undefined;
      return {
        thingName: t.thingName,
        thingId: t.thingId,
        thingGroupNames: (groupsOf.get(t.thingName) ?? []).sort(),
        attributes: t.attributes,
        ...(c ? { connectivity: c } : {}),
      };
    })
    .filter((doc) => terms.every((term) => matches(doc, term)))
    .sort((a, b) => a.thingName.localeCompare(b.thingName));
}
