// The DBA page (/console/admin): the ingest and alert-evaluation charts of the last hour, and
// retention / compression changes through /api/admin/tiers after a confirmation that says what
// would be dropped (counted by the server with the retention's own cutoff).

import uPlot from "uplot";
import { followWidth } from "./charts";
import { send } from "./forms";
import * as fmt from "./format";
import { HttpError, json } from "./http";
import { registry } from "./registry";

interface Series { t: number[] }
interface Charts {
  ingest: Series & { rows_per_s: number[] };
  evaluation: Series & { duration_ms: (number | null)[]; pairs: (number | null)[] };
}
interface Preview { level: string; retention: string | null; rows: number; cutoff: string | null; oldest: string | null }

function plot(el: HTMLElement, label: string, stroke: string, xs: number[], ys: (number | null)[],
              unit: string, bars: boolean): uPlot {
  const end = Math.floor(Date.now() / 1000);
  const opts: uPlot.Options = {
    width: Math.max(260, el.clientWidth), height: 180,
    scales: { x: { time: true, range: () => [end - 3600, end] }, y: { range: (_u, _min, max) => [0, Math.max(1, max * 1.15)] } },
    axes: [{}, { size: 64, values: (_u, ticks) => ticks.map((v) => fmt.number(v, v < 10 ? 1 : 0)) }],
    series: [
      { value: (_u, v) => (v === null ? "–" : fmt.local(new Date(v * 1000).toISOString())) },
      { label, stroke, fill: `${stroke}33`, width: 1.5, paths: bars ? uPlot.paths.bars!({ size: [0.8, 12] }) : undefined,
        points: { show: !bars }, value: (_u, v) => (v === null ? "–" : `${fmt.number(v, 1)} ${unit}`) },
    ],
    legend: { live: true },
  };
  const chart = new uPlot(opts, [xs, ys], el);
  followWidth(el, () => chart, 180);
  return chart;
}

async function loadCharts(): Promise<void> {
  const data = await json<Charts>("/console/data/admin/charts");
  const ingest = document.querySelector<HTMLElement>("#ingest-chart .plot");
  const evaluation = document.querySelector<HTMLElement>("#evaluation-chart .plot");
  if (ingest) plot(ingest, "Rows/s", "#2563eb", data.ingest.t, data.ingest.rows_per_s, "rows/s", true);
  if (evaluation) plot(evaluation, "Cycle", "#b45309", data.evaluation.t, data.evaluation.duration_ms, "ms", false);
  (registry as unknown as Record<string, unknown>).adminCharts = data;
  document.body.dataset.charts = "ready";
}

function confirmThen(text: string, apply: () => Promise<void>): void {
  const dialog = document.getElementById("tier-confirm") as HTMLDialogElement;
  const error = document.getElementById("tier-confirm-error")!;
  document.getElementById("tier-confirm-what")!.textContent = text;
  error.hidden = true;
  const form = dialog.querySelector("form")!;
  const onSubmit = async (e: SubmitEvent): Promise<void> => {
    if ((e.submitter as HTMLButtonElement | null)?.value !== "confirm") {
      form.removeEventListener("submit", onSubmit);
      return;
    }
    e.preventDefault();
    try {
      await apply();
      form.removeEventListener("submit", onSubmit);
      location.reload();
    } catch (err) {
      error.hidden = false;
      error.textContent = err instanceof HttpError ? err.message : String(err);
    }
  };
  form.addEventListener("submit", onSubmit);
  dialog.showModal();
}

function whatIsDropped(p: Preview): string {
  if (p.retention === null) return `Keep every row of ${p.level} forever? Nothing is dropped.`;
  const cutoff = p.cutoff ? fmt.local(p.cutoff) : "";
  if (p.rows === 0) return `Keep ${p.level} for ${p.retention}? Nothing is older than ${cutoff} today, so nothing is dropped now; rows are dropped as they pass that age.`;
  const oldest = p.oldest ? ` (the oldest from ${fmt.local(p.oldest)})` : "";
  return `Keep ${p.level} for ${p.retention}? This drops ${fmt.number(p.rows, 0)} rows older than ${cutoff}${oldest}, for good, and keeps dropping rows as they pass that age.`;
}

export function initAdmin(): void {
  void loadCharts();
  const general = document.getElementById("tiers-error");
  const fail = (err: unknown): void => {
    if (!general) return;
    general.hidden = false;
    general.textContent = err instanceof Error ? err.message : String(err);
  };
  for (const form of document.querySelectorAll<HTMLFormElement>("form.retention")) {
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const level = form.dataset.level!;
      const retention = (form.elements.namedItem("retention") as HTMLInputElement).value.trim();
      try {
        const p = await json<Preview>(`/console/data/admin/retention-preview?${new URLSearchParams({ level, retention })}`);
        confirmThen(whatIsDropped(p), async () => {
          await send(`/api/admin/tiers/${encodeURIComponent(level)}/retention`, "PUT", { retention: retention || null });
        });
      } catch (err) {
        fail(err);
      }
    });
  }
  const compression = document.getElementById("compression") as HTMLFormElement | null;
  compression?.addEventListener("submit", (e) => {
    e.preventDefault();
    const after = (compression.elements.namedItem("compress_after") as HTMLInputElement).value.trim();
    confirmThen(after ? `Compress raw chunks older than ${after}? Nothing is dropped; compressed chunks are smaller and slower to change.`
      : "Stop compressing new raw chunks? Chunks already compressed stay compressed.", async () => {
      await send("/api/admin/tiers/compression", "PUT", { compress_after: after || null });
    });
  });
}
