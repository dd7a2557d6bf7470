// Device charts with uPlot: one history-API request per chart, at an interval fitted to the
// chart's width (the server answers from the coarsest rollup tier that fits), gaps kept as gaps.

import uPlot from "uplot";
import * as fmt from "./format";
import { json } from "./http";

export type Unit = "percent" | "load" | "rate";

export interface SeriesSpec {
  key: string; // the field of a history row (e.g. "cpu_percent", "cpu_percent_max")
  sample: string; // the field of a live sample that continues it
  label: string;
  stroke: string;
  width?: number;
  dash?: number[];
}

export interface ChartSpec {
  name: string;
  metrics: string[];
  stats?: string;
  unit: Unit;
  series: SeriesSpec[];
}

export interface Range {
  start: number; // epoch seconds
  end: number;
  live: boolean; // ends now and follows new samples
  label: string;
}

export interface Timing {
  fetchMs: number;
  drawMs: number;
  totalMs: number;
}

type Data = [number[], ...(number | null)[][]];

// Chart intervals the API accepts that line up with the rollup tiers (5m, 1h, 1d) where they can.
const LADDER = [10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400];
const MAX_POINTS = 2000; // the history API's limit
const PX_PER_POINT = 2;

/** The finest ladder interval giving at most one point per PX_PER_POINT pixels, never finer than
 * the agent reports (finer buckets would be mostly empty and draw as gaps). */
/** Keep a chart as wide as its box when the window changes (a phone turned, a window resized):
 * uPlot draws at the width it was given. ``chart`` is read at each resize (a chart redrawn anew). */
export function followWidth(el: HTMLElement, chart: () => uPlot | null, height: number, min = 260): void {
  let timer = 0;
  window.addEventListener("resize", () => {
    window.clearTimeout(timer);
    timer = window.setTimeout(() => chart()?.setSize({ width: Math.max(min, el.clientWidth), height }), 150);
  });
}

export function fitInterval(rangeSeconds: number, widthPx: number, reportSeconds: number): number {
  const target = Math.max(20, Math.floor(widthPx / PX_PER_POINT));
  const want = Math.max(rangeSeconds / target, reportSeconds);
  for (const step of LADDER) {
    if (step >= want && rangeSeconds / step <= MAX_POINTS) return step;
  }
  return LADDER[LADDER.length - 1];
}

export function intervalText(seconds: number): string {
  if (seconds % 86400 === 0) return `${seconds / 86400}d`;
  if (seconds % 3600 === 0) return `${seconds / 3600}h`;
  if (seconds % 60 === 0) return `${seconds / 60}m`;
  return `${seconds}s`;
}

/** A missing bucket is a gap: where two points are more than two steps apart (one missed sample
 * is jitter, as the alert evaluator also allows), a null is put between them so uPlot breaks the
 * line there instead of drawing across. */
export function withGaps(xs: number[], columns: (number | null)[][], step: number): Data {
  const outX: number[] = [];
  const outY: (number | null)[][] = columns.map(() => []);
  for (let i = 0; i < xs.length; i++) {
    if (i > 0 && xs[i] - xs[i - 1] > 2 * step) {
      outX.push(xs[i - 1] + step);
      outY.forEach((col) => col.push(null));
    }
    outX.push(xs[i]);
    columns.forEach((col, j) => outY[j].push(col[i]));
  }
  return [outX, ...outY];
}

function formatValue(unit: Unit, value: number | null): string {
  if (value === null || value === undefined) return "–";
  if (unit === "percent") return fmt.percent(value);
  if (unit === "rate") return fmt.rate(value);
  return fmt.number(value, 2);
}

function axisValue(unit: Unit, value: number): string {
  if (unit === "percent") return `${value} %`;
  if (unit === "rate") return fmt.rate(value);
  return String(value);
}

function nextFrame(): Promise<void> {
  return new Promise((resolve) => requestAnimationFrame(() => resolve()));
}

export class Chart {
  plot: uPlot;
  data: Data;
  step = 300;
  range: Range | null = null;
  request: { url: string; interval: string } | null = null;
  timing: Timing | null = null;
  points = 0;
  private generation = 0;

  constructor(public spec: ChartSpec, public el: HTMLElement, private agentId: string,
              public reportSeconds: number) {
    this.data = [[], ...spec.series.map(() => [])];
    const unit = spec.unit;
    const opts: uPlot.Options = {
      width: Math.max(260, el.clientWidth),
      height: 180,
      scales: {
        x: { time: true, range: () => (this.range ? [this.range.start, this.range.end] : [0, 1]) },
        y: unit === "percent" ? { range: [0, 100] } : { range: (_u, _min, max) => [0, Math.max(max * 1.1, unit === "load" ? 1 : 1000)] },
      },
      axes: [
        {},
        { values: (_u, ticks) => ticks.map((t) => axisValue(unit, t)), size: unit === "rate" ? 76 : 58 },
      ],
      series: [
        { value: (_u, v) => (v === null ? "–" : `${fmt.local(new Date(v * 1000).toISOString())} (${fmt.utc(new Date(v * 1000).toISOString()).slice(11)})`) },
        ...spec.series.map((s) => ({
          label: s.label, stroke: s.stroke, width: s.width ?? 1.5, dash: s.dash, spanGaps: false,
          value: (_u: uPlot, v: number | null) => formatValue(unit, v),
        })),
      ],
      cursor: { focus: { prox: 16 } },
      legend: { live: true },
    };
    this.plot = new uPlot(opts, this.data, el);
  }

  /** One request to the history API for ``range``; resolves once the chart is drawn. */
  async load(range: Range): Promise<void> {
    const generation = ++this.generation;
    this.range = range;
    const seconds = range.end - range.start;
    this.step = fitInterval(seconds, this.el.clientWidth || 600, this.reportSeconds);
    const params = new URLSearchParams({
      start: new Date(range.start * 1000).toISOString(),
      end: new Date(range.end * 1000).toISOString(),
      interval: intervalText(this.step),
      metric: this.spec.metrics.join(","),
    });
    if (this.spec.stats) params.set("stats", this.spec.stats);
    const url = `/api/agents/${this.agentId}/metrics/history?${params.toString()}`;
    this.request = { url, interval: intervalText(this.step) };
    const t0 = performance.now();
    const body = await json<{ metrics: Record<string, number | null | string>[] }>(url);
    if (generation !== this.generation) return; // a newer range was asked for meanwhile
    const t1 = performance.now();
    const rows = body.metrics;
    const xs = rows.map((r) => Date.parse(String(r.timestamp)) / 1000);
    const columns = this.spec.series.map((s) => rows.map((r) => (r[s.key] === undefined ? null : (r[s.key] as number | null))));
    this.data = withGaps(xs, columns, this.step);
    this.points = rows.length;
    this.plot.setData(this.data);
    this.el.dataset.points = String(rows.length);
    this.el.classList.toggle("no-data", rows.length === 0);
    this.el.dataset.empty = range.live
      ? `No samples in ${range.label}: the agent reports every ${fmt.duration(this.reportSeconds)} while it is online.`
      : "No samples in this range: pick a range when the agent was online.";
    await nextFrame();
    const t2 = performance.now();
    this.timing = { fetchMs: t1 - t0, drawMs: t2 - t1, totalMs: t2 - t0 };
  }

  /** A sample that arrived live, on a live range fine enough to show single samples. */
  append(sample: Record<string, unknown>): boolean {
    if (!this.range || !this.range.live || this.step > 300) return false;
    const x = Date.parse(String(sample.at)) / 1000;
    const xs = this.data[0];
    const last = xs.length ? xs[xs.length - 1] : -Infinity;
    if (!(x > last)) return false;
    const values = this.spec.series.map((s) => {
      const v = sample[s.sample];
      return typeof v === "number" ? v : null;
    });
    if (xs.length && x - last > 2 * this.step) {
      xs.push(last + this.step);
      this.columns().forEach((col) => col.push(null));
    }
    xs.push(x);
    values.forEach((v, j) => this.columns()[j].push(v));
    const span = this.range.end - this.range.start;
    this.range = { ...this.range, end: Math.max(this.range.end, x), start: Math.max(this.range.end, x) - span };
    this.points += 1;
    this.el.dataset.points = String(this.points);
    this.el.classList.remove("no-data");
    this.plot.setData(this.data);
    return true;
  }

  private columns(): (number | null)[][] {
    return this.data.slice(1) as (number | null)[][];
  }

  resize(): void {
    this.plot.setSize({ width: Math.max(260, this.el.clientWidth), height: 180 });
  }

  last(key: string): number | null {
    const j = this.spec.series.findIndex((s) => s.key === key);
    const col = this.data[j + 1] as (number | null)[] | undefined;
    if (!col) return null;
    for (let i = col.length - 1; i >= 0; i--) if (col[i] !== null) return col[i];
    return null;
  }
}

export const SPECS: ChartSpec[] = [
  { name: "cpu", metrics: ["cpu_percent"], stats: "avg,max", unit: "percent", series: [
    { key: "cpu_percent", sample: "cpu_percent", label: "Average", stroke: "#2563eb", width: 2 },
    { key: "cpu_percent_max", sample: "cpu_percent", label: "Peak", stroke: "#93c5fd", width: 1 },
  ] },
  { name: "memory", metrics: ["memory_percent"], unit: "percent", series: [
    { key: "memory_percent", sample: "memory_percent", label: "Used", stroke: "#7c3aed", width: 2 },
  ] },
  { name: "disk", metrics: ["disk_percent"], unit: "percent", series: [
    { key: "disk_percent", sample: "disk_percent", label: "Used", stroke: "#0e7490", width: 2 },
  ] },
  { name: "load", metrics: ["load_average_1m", "load_average_5m", "load_average_15m"], unit: "load", series: [
    { key: "load_average_1m", sample: "load_average_1m", label: "1 min", stroke: "#ea580c", width: 2 },
    { key: "load_average_5m", sample: "load_average_5m", label: "5 min", stroke: "#d97706" },
    { key: "load_average_15m", sample: "load_average_15m", label: "15 min", stroke: "#78716c", dash: [4, 3] },
  ] },
  { name: "network", metrics: ["network_rx_rate", "network_tx_rate"], unit: "rate", series: [
    { key: "network_rx_rate", sample: "network_rx_rate", label: "In", stroke: "#16a34a", width: 2 },
    { key: "network_tx_rate", sample: "network_tx_rate", label: "Out", stroke: "#2563eb", width: 2 },
  ] },
];
