/// <reference lib="dom" />
// The console page's script (bundled by esbuild into dist/console/app.js with uPlot): polls the server's
// /api every 2 s and renders devices, jobs with live progress, per-device telemetry charts and the registry.
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import type { TelemetryPoint, VersionWithDevices } from '../console-api.ts';
import type { DeviceState } from '../../fleet/fleet-inventory.ts';
import type { JobProgress } from '../../fleet/fleet-status.ts';
import type { JobHistoryEntry } from '../../fleet/job-history.ts';

const POLL_MS = 2000;
const token = document.querySelector<HTMLMetaElement>('meta[name="fleetlm-token"]')?.content ?? '';
const actions = token !== '' && !token.startsWith('{{');
let selectedDevice: string | null = null;
let selectedJob: string | null = null;

type Child = Node | string | number | null | undefined;

/** Creates an element; text goes through text nodes only (nothing from the API is parsed as HTML). */
function el(tag: string, attrs: Record<string, string> = {}, ...children: Child[]): HTMLElement {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  for (const c of children) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
  return e;
}

function num(v: number | null | undefined, digits = 1): string {
  return v === null || v === undefined ? '-' : Number.isInteger(v) ? String(v) : v.toFixed(digits);
}

function ago(ms: number | null): string {
  if (ms === null) return 'never';
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 5) return 'just now';
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

function badge(text: string, cls = text): HTMLElement {
  return el('span', { class: `state ${cls}` }, text);
}

async function getJson<T>(url: string, init?: RequestInit): Promise<T> {
  const r = await fetch(url, init);
  const body = (await r.json()) as T & { error?: string };
  if (!r.ok) throw new Error(body.error ?? `${url}: HTTP ${r.status}`);
  return body;
}

async function act(url: string, question: string): Promise<void> {
  if (!window.confirm(question)) return;
  try {
    await getJson(url, { method: 'POST', headers: { 'x-fleetlm-token': token } });
    await refresh();
  } catch (err) {
    showError(err);
  }
}

function showError(err: unknown): void {
  document.getElementById('error')!.textContent = err instanceof Error ? err.message : String(err);
}

function fill(tableId: string, rows: HTMLElement[]): void {
  document.querySelector(`#${tableId} tbody`)!.replaceChildren(...rows);
}

function renderDevices(data: { indexed: boolean; devices: DeviceState[] }): void {
  const online = data.devices.filter((d) => d.online).length;
  document.getElementById('device-summary')!.textContent = data.indexed
    ? `${online} of ${data.devices.length} online`
    : `${data.devices.length} devices; online state unknown (fleet indexing with connectivity is off)`;
  if (selectedDevice === null && data.devices.length > 0) selectedDevice = data.devices[0]!.thingName;
  fill(
    'devices',
    data.devices.map((d) => {
      const state = d.online === null ? 'unknown' : d.online ? 'online' : 'offline';
      const group = d.groups[0];
      const row = el(
        'tr',
        { class: `selectable${d.thingName === selectedDevice ? ' selected' : ''}`, 'data-thing': d.thingName, 'data-state': state },
        el('td', {}, d.thingName),
        el('td', {}, badge(state)),
        el('td', {}, d.online ? 'now' : ago(d.lastSeen)),
        el('td', {}, d.groups.join(', ') || '-'),
        el('td', {}, d.model ?? '-'),
        el('td', {}, d.job ? `${d.job.jobId} (${d.job.status})` : '-'),
        el('td', { class: 'num' }, num(d.temperatureC)),
        el('td', { class: 'num' }, num(d.powerW, 2)),
        el('td', { class: 'num' }, num(d.tokensPerSecondP50)),
        el('td', { class: 'num' }, num(d.firstTokenMsP50, 0)),
        el('td', { class: 'num' }, num(d.rssMb, 0)),
        el('td', {}, actions && group ? rollbackButton(group) : null),
      );
      row.addEventListener('click', () => {
        selectedDevice = d.thingName;
        void refresh();
      });
      return row;
    }),
  );
}

function rollbackButton(group: string): HTMLElement {
  const b = el('button', { 'data-rollback': group }, `roll back ${group}`);
  b.addEventListener('click', (ev) => {
    ev.stopPropagation();
    void act(`/api/groups/${encodeURIComponent(group)}/rollback`, `Roll group ${group} back to the last version that succeeded on it?`);
  });
  return b;
}

function renderJobs(jobs: JobHistoryEntry[]): void {
  if (selectedJob === null && jobs.length > 0) selectedJob = jobs[0]!.jobId;
  fill(
    'jobs',
    jobs.map((j) => {
      const c = j.counts;
      const bad = c.failed + c.rejected + c.timedOut;
      const finished = c.succeeded + bad + c.canceled + c.removed;
      const pct = j.total ? Math.round((100 * finished) / j.total) : 0;
      const fillBar = el('span', { class: bad ? 'bad' : '' });
      // Through CSSOM: the page's CSP blocks inline style attributes.
      fillBar.style.width = `${pct}%`;
      const bar = el('span', { class: 'bar', title: `${finished}/${j.total} finished` }, fillBar);
      const outcomes = Object.entries(c)
        .filter(([, v]) => v > 0)
        .map(([k, v]) => `${k} ${v}`)
        .join(', ');
      let cancel: HTMLElement | null = null;
      if (actions && (j.status === 'IN_PROGRESS' || j.status === 'SCHEDULED')) {
        cancel = el('button', { 'data-cancel': j.jobId }, 'cancel');
        cancel.addEventListener('click', (ev) => {
          ev.stopPropagation();
          void act(`/api/jobs/${encodeURIComponent(j.jobId)}/cancel`, `Cancel job ${j.jobId}? Devices already installing finish; queued ones do not start.`);
        });
      }
      const row = el(
        'tr',
        { class: `selectable${j.jobId === selectedJob ? ' selected' : ''}`, 'data-job': j.jobId, 'data-status': j.status },
        el('td', {}, j.jobId),
        el('td', {}, `${j.modelId}@${j.version}`),
        el('td', {}, j.group ?? '-'),
        el('td', {}, badge(j.status)),
        el('td', { class: 'progress' }, bar, ` ${finished}/${j.total}`),
        el('td', {}, outcomes || '-'),
        el('td', {}, j.createdAt ? new Date(j.createdAt).toLocaleString() : '-'),
        el('td', {}, cancel),
      );
      row.addEventListener('click', () => {
        selectedJob = j.jobId;
        void refresh();
      });
      return row;
    }),
  );
}

function renderJobDetail(p: JobProgress | null): void {
  const box = document.getElementById('job-detail')!;
  box.hidden = p === null;
  if (!p) return;
  document.getElementById('job-detail-id')!.textContent = p.jobId;
  document.getElementById('job-detail-status')!.textContent = `${p.status}${p.modelId ? ` ${p.modelId}@${p.version}` : ''}${p.reasonCode ? ` (${p.reasonCode})` : ''}`;
  fill(
    'job-devices',
    p.devices.map((d) => {
      const { step, percent, ...rest } = d.statusDetails;
      const seen = d.lastSeen ? `last seen ${ago(d.lastSeen)}` : 'never seen';
      const offline = d.online === false && (d.status === 'QUEUED' || d.status === 'IN_PROGRESS') ? ` (offline, ${seen})` : '';
      return el(
        'tr',
        { 'data-thing': d.thingName, 'data-status': d.status },
        el('td', {}, d.thingName),
        el('td', {}, badge(d.status), offline),
        el('td', {}, step ?? '-'),
        el('td', { class: 'num' }, percent ?? '-'),
        el('td', {}, Object.entries(rest).map(([k, v]) => `${k}=${v}`).join(' ') || '-'),
      );
    }),
  );
}

const CHARTS: Array<{ key: keyof Omit<TelemetryPoint, 't'>; title: string; color: string }> = [
  { key: 'tokensPerSecond', title: 'tokens/s (p50)', color: '#2f7d46' },
  { key: 'firstTokenMs', title: 'first-token latency ms (p50)', color: '#1b4da0' },
  { key: 'rssMb', title: 'memory RSS MB', color: '#7a4bb3' },
  { key: 'temperatureC', title: 'temperature °C', color: '#c2571a' },
  { key: 'powerW', title: 'power W', color: '#b3261e' },
];
const plots = new Map<string, uPlot>();
let plottedDevice: string | null = null;

function renderCharts(thing: string, points: TelemetryPoint[]): void {
  document.getElementById('telemetry-device')!.textContent = `${thing} (${points.length} messages)`;
  const box = document.getElementById('charts')!;
  const xs = points.map((p) => p.t / 1000);
  if (plottedDevice !== thing) {
    for (const p of plots.values()) p.destroy();
    plots.clear();
    box.replaceChildren();
    plottedDevice = thing;
  }
  for (const c of CHARTS) {
    const ys = points.map((p) => p[c.key]);
    const data: uPlot.AlignedData = [xs, ys];
    const existing = plots.get(c.key);
    if (existing) {
      existing.setData(data);
      continue;
    }
    const holder = el('div', { class: 'chart', 'data-metric': c.key }, el('h4', {}, c.title));
    box.append(holder);
    const measured = ys.some((y) => y !== null);
    if (!measured) holder.append(el('div', { class: 'muted' }, 'not measured by this device'));
    plots.set(
      c.key,
      new uPlot(
        { width: 420, height: 160, legend: { show: false }, series: [{}, { label: c.title, stroke: c.color, width: 2, spanGaps: true, points: { show: true, size: 5 } }] },
        data,
        holder,
      ),
    );
  }
}

function renderVersions(versions: VersionWithDevices[]): void {
  fill(
    'versions',
    versions.map((v) => {
      const q = v.quality;
      const quality = q
        ? badge(`${q.passed === false ? 'failed' : 'passed'}${q.totalChange === null ? '' : ` ${(q.totalChange * 100).toFixed(1)}% ppl`}`, q.passed === false ? 'failed' : 'passed')
        : '-';
      return el(
        'tr',
        { 'data-version': `${v.modelId}@${v.version}` },
        el('td', {}, v.modelId),
        el('td', {}, v.version),
        el('td', {}, new Date(v.createdAt).toLocaleString()),
        el('td', { class: 'num' }, (v.totalBytes / 2 ** 20).toFixed(2)),
        el('td', { class: 'num' }, v.files),
        el('td', {}, v.compression ?? 'none'),
        el('td', {}, quality),
        el('td', { class: 'num' }, num(v.perplexity, 2)),
        el('td', {}, v.devices.join(', ') || '-'),
        el('td', {}, v.deprecated ? badge('deprecated') : 'active'),
      );
    }),
  );
}

let refreshing = false;

/** Fetches everything the page shows and renders it; errors show in the header and the next poll retries. */
async function refresh(): Promise<void> {
  if (refreshing) return;
  refreshing = true;
  try {
    const [devices, jobs, versions] = await Promise.all([
      getJson<{ indexed: boolean; devices: DeviceState[] }>('/api/devices'),
      getJson<{ jobs: JobHistoryEntry[] }>('/api/jobs'),
      getJson<{ versions: VersionWithDevices[] }>('/api/versions'),
    ]);
    renderDevices(devices);
    renderJobs(jobs.jobs);
    renderVersions(versions.versions);
    renderJobDetail(selectedJob ? await getJson<JobProgress>(`/api/jobs/${encodeURIComponent(selectedJob)}`) : null);
    if (selectedDevice) {
      const t = await getJson<{ points: TelemetryPoint[] }>(`/api/telemetry/${encodeURIComponent(selectedDevice)}`);
      renderCharts(selectedDevice, t.points);
    }
    document.getElementById('refreshed')!.textContent = `updated ${new Date().toLocaleTimeString()}`;
    document.getElementById('error')!.textContent = '';
    document.body.dataset.loaded = 'true';
  } catch (err) {
    showError(err);
  } finally {
    refreshing = false;
  }
}

void refresh();
setInterval(() => void refresh(), POLL_MS);
