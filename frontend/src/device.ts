// The device page: charts over a chosen range, live samples, the online/offline timeline,
// sections refreshed on alerts and after a reconnect, the searchable software list.

import { Chart, Range, SPECS } from "./charts";
import * as fmt from "./format";
import { json, request } from "./http";
import { connect, LiveEvent } from "./live";
import { registry } from "./registry";

const RANGES: Record<string, number> = { "1h": 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400 };
const LABELS: Record<string, string> = { "1h": "the last hour", "24h": "the last 24 hours", "7d": "the last 7 days",
  "30d": "the last 30 days" };

interface Transition { changed_at: string; from_status: string | null; to_status: string; reason: string }
interface Current { status: string; since: string | null; created_at: string | null }

function setField(root: ParentNode, field: string, text: string): void {
  for (const el of root.querySelectorAll<HTMLElement>(`[data-field="${field}"]`)) el.textContent = text;
}

function setBadge(root: ParentNode, field: string, status: string): void {
  for (const el of root.querySelectorAll<HTMLElement>(`[data-field="${field}"]`)) {
    const badge = document.createElement("span");
    badge.className = `badge b-${status}`;
    badge.textContent = status;
    el.replaceChildren(badge);
  }
}

function setTime(root: ParentNode, field: string, iso: string | null): void {
  for (const el of root.querySelectorAll<HTMLElement>(`[data-field="${field}"]`)) el.replaceChildren(fmt.timeElement(iso, true));
}

export function initDevice(): void {
  const head = document.getElementById("device");
  if (!head) return;
  const agentId = head.dataset.agent!;
  const reportSeconds = Number(head.dataset.metricsInterval) || 300;
  const charts = new Map<string, Chart>();
  for (const spec of SPECS) {
    const figure = document.querySelector<HTMLElement>(`[data-chart="${spec.name}"]`);
    const plot = figure?.querySelector<HTMLElement>(".plot");
    if (!figure || !plot) continue;
    const chart = new Chart(spec, plot, agentId, reportSeconds);
    charts.set(spec.name, chart);
    registry.charts[spec.name] = chart;
  }
  let current: Range = rangeOf("24h");
  let currentKey = "24h";
  const note = document.getElementById("range-note");

  function rangeOf(key: string): Range {
    const end = Math.floor(Date.now() / 1000);
    return { start: end - RANGES[key], end, live: true, label: LABELS[key] };
  }

  async function loadAll(range: Range): Promise<void> {
    current = range;
    const started = performance.now();
    document.body.dataset.charts = "loading";
    await Promise.all([...charts.values()].map((c) => c.load(range).catch((e: unknown) => showChartError(c, e))));
    const network = charts.get("network");
    if (network && range.live) {
      setField(document, "network_rx_rate", fmt.rate(network.last("network_rx_rate")));
      setField(document, "network_tx_rate", fmt.rate(network.last("network_tx_rate")));
    }
    const step = charts.get("cpu")?.request?.interval ?? "";
    if (note) note.textContent = `Showing ${range.label}, one point per ${step}${range.live ? ", updating live" : ""}.`;
    registry.timings.chartsMs = performance.now() - started;
    document.body.dataset.charts = "ready";
    void loadTimeline(range);
  }

  function showChartError(chart: Chart, error: unknown): void {
    chart.el.classList.add("no-data");
    chart.el.dataset.error = error instanceof Error ? error.message : String(error);
  }

  async function loadTimeline(range: Range): Promise<void> {
    const params = new URLSearchParams({ start: new Date(range.start * 1000).toISOString(),
      end: new Date(range.end * 1000).toISOString() });
    const body = await json<{ transitions: Transition[]; current: Current }>(
      `/console/data/agents/${agentId}/timeline?${params}`);
    drawTimeline(range, body.transitions, body.current);
  }

  function select(key: string): void {
    currentKey = key;
    for (const b of document.querySelectorAll<HTMLButtonElement>("[data-range]")) {
      b.setAttribute("aria-pressed", String(b.dataset.range === key));
    }
    void loadAll(rangeOf(key));
  }

  for (const b of document.querySelectorAll<HTMLButtonElement>("[data-range]")) {
    b.addEventListener("click", () => select(b.dataset.range!));
  }
  document.addEventListener("keydown", (e) => {
    if (e.target instanceof HTMLInputElement || e.target instanceof HTMLSelectElement || e.metaKey || e.ctrlKey || e.altKey) return;
    const key = { "1": "1h", "2": "24h", "3": "7d", "4": "30d" }[e.key];
    if (key) select(key);
  });
  const custom = document.getElementById("custom-range") as HTMLFormElement | null;
  custom?.addEventListener("submit", (e) => {
    e.preventDefault();
    const data = new FormData(custom);
    const from = Date.parse(String(data.get("from")));
    const to = Date.parse(String(data.get("to")));
    if (!(from < to)) {
      if (note) note.textContent = "The range needs a start before its end.";
      return;
    }
    currentKey = "custom";
    for (const b of document.querySelectorAll<HTMLButtonElement>("[data-range]")) b.setAttribute("aria-pressed", "false");
    void loadAll({ start: Math.floor(from / 1000), end: Math.floor(to / 1000), live: false,
      label: `${fmt.local(new Date(from).toISOString())} to ${fmt.local(new Date(to).toISOString())}` });
  });

  let resizeTimer = 0;
  window.addEventListener("resize", () => {
    window.clearTimeout(resizeTimer);
    resizeTimer = window.setTimeout(() => charts.forEach((c) => c.resize()), 150);
  });

  function onSample(event: LiveEvent): void {
    const s = event as Record<string, unknown> & LiveEvent;
    setField(document, "cpu_percent", fmt.percent(s.cpu_percent as number | null));
    setField(document, "memory_percent", fmt.percent(s.memory_percent as number | null));
    setField(document, "memory_used_gb", fmt.gigabytes(s.memory_used_gb as number | null));
    setField(document, "disk_percent", fmt.percent(s.disk_percent as number | null));
    setField(document, "disk_used_gb", fmt.gigabytes(s.disk_used_gb as number | null));
    for (const key of ["load_average_1m", "load_average_5m", "load_average_15m"]) {
      setField(document, key, fmt.number(s[key] as number | null, 2));
    }
    setField(document, "uptime", fmt.duration(s.uptime_seconds as number | null));
    setField(document, "network_rx_rate", fmt.rate(s.network_rx_rate as number | null));
    setField(document, "network_tx_rate", fmt.rate(s.network_tx_rate as number | null));
    setTime(document, "last_sample", String(s.at));
    if (typeof s.status === "string") setBadge(head!, "status", s.status);
    charts.forEach((c) => c.append(s));
    registry.samplesShown.push({ at: String(s.at), shownAt: Date.now() });
  }

  async function refreshSections(ids: string[]): Promise<void> {
    const response = await request(location.pathname);
    const doc = new DOMParser().parseFromString(await response.text(), "text/html");
    for (const id of ids) {
      const fresh = doc.getElementById(id);
      const old = document.getElementById(id);
      if (fresh && old) {
        fmt.refreshTimes(fresh);
        if (id === "device") {  // keep the live fields' element identity out of it: swap the facts only
          old.querySelector(".facts")?.replaceWith(fresh.querySelector(".facts")!);
          old.querySelector(".title")?.replaceWith(fresh.querySelector(".title")!);
        } else {
          old.replaceWith(fresh);
        }
      }
    }
  }

  connect(new URLSearchParams({ agents: agentId }), {
    onEvents(events) {
      let alerts = false;
      let commands = false;
      for (const event of events) {
        if (event.kind === "sample" && event.agent === agentId) onSample(event);
        else if (event.kind === "status" && event.agent === agentId) {
          setBadge(head!, "status", String(event.to));
          void loadTimeline(current);
        } else if (event.kind === "alert" && event.agent === agentId) alerts = true;
        else if (event.kind === "command" && event.agent === agentId) commands = true;
      }
      if (alerts) void refreshSections(["alerts", "device"]);
      if (commands) void refreshSections(["commands"]);
    },
    onResync() {
      void refreshSections(["alerts", "services", "commands", "device"]);
      void loadAll(currentKey === "custom" ? current : rangeOf(currentKey));
    },
  });
  void loadAll(current);
  initSoftwareFilter();
}

const COLORS: Record<string, string> = { online: "s-online", offline: "s-offline", error: "s-error", disabled: "s-disabled" };

function drawTimeline(range: Range, transitions: Transition[], current: Current): void {
  const bar = document.getElementById("timeline");
  const list = document.getElementById("transitions");
  if (!bar || !list) return;
  const span = range.end - range.start;
  const segments: HTMLElement[] = [];
  const points = transitions.map((t) => ({ at: Date.parse(t.changed_at) / 1000, t }));
  const inRange = points.filter((p) => p.at > range.start);
  const before = points.filter((p) => p.at <= range.start).pop();
  // The status at the range's start: the last change before it, else what the first change in
  // the range changed from, else (nothing ever recorded in or before it) the status the device
  // has now, from when it got it (or was created); before that it is not known.
  let status: string | null = null;
  let from = range.start;
  const epoch = (iso: string | null): number => (iso ? Date.parse(iso) / 1000 : range.start);
  if (before) status = before.t.to_status;
  else if (inRange.length && inRange[0].t.from_status) status = inRange[0].t.from_status;
  else if (!inRange.length) {
    status = current.status;
    from = Math.max(range.start, epoch(current.since ?? current.created_at));
  } else from = inRange[0].at;
  const push = (until: number): void => {
    if (status === null || until <= from) return;
    const seg = document.createElement("span");
    seg.className = `seg ${COLORS[status] ?? "s-unknown"}`;
    seg.style.left = `${((from - range.start) / span) * 100}%`;
    seg.style.width = `${((Math.min(until, range.end) - from) / span) * 100}%`;
    seg.title = `${status} from ${fmt.local(new Date(from * 1000).toISOString())}`;
    segments.push(seg);
  };
  for (const p of inRange) {
    push(p.at);
    status = p.t.to_status;
    from = p.at;
  }
  push(range.end);
  bar.replaceChildren(...segments);
  bar.classList.toggle("no-data", segments.length === 0);
  const items = [...inRange].reverse().map((p) => {
    const li = document.createElement("li");
    li.append(fmt.timeElement(p.t.changed_at, false), " ");
    const badge = document.createElement("span");
    badge.className = `badge b-${p.t.to_status}`;
    badge.textContent = p.t.to_status;
    const reason = document.createElement("span");
    reason.className = "muted";
    reason.textContent = p.t.reason;
    li.append(badge, " ", reason);
    return li;
  });
  if (!items.length) {
    const li = document.createElement("li");
    li.className = "muted";
    li.textContent = `No status changes in ${range.label}.`;
    items.push(li);
  }
  list.replaceChildren(...items);
}

function initSoftwareFilter(): void {
  const input = document.getElementById("software-filter") as HTMLInputElement | null;
  const table = document.getElementById("software-table");
  const none = document.getElementById("software-none");
  if (!input || !table) return;
  const rows = [...table.querySelectorAll<HTMLTableRowElement>("tbody tr")];
  const texts = rows.map((r) => (r.textContent || "").toLowerCase());
  input.addEventListener("input", () => {
    const needle = input.value.trim().toLowerCase();
    let shown = 0;
    rows.forEach((r, i) => {
      const hit = !needle || texts[i].includes(needle);
      r.hidden = !hit;
      if (hit) shown += 1;
    });
    if (none) none.hidden = shown > 0;
  });
}
