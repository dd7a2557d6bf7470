// The rule editor's preview: POST /api/alerts/rules/backtest with the rule as it stands in the
// form, before it is saved; the answer's totals, and per device a chart of the metric (from the
// history API, as the answer says) with the threshold and clear lines and the would-be episodes
// shaded. Device names are set as text.

import uPlot from "uplot";
import { followWidth } from "./charts";
import { clearErrors, send, showError } from "./forms";
import * as fmt from "./format";
import { json } from "./http";
import { registry } from "./registry";
import { ruleBody } from "./rules";

interface BtEpisode { start: string; end: string | null; value: number; peak: number; ticket: boolean }
interface BtDevice { agent_device_id: string; device_name: string; episodes: BtEpisode[]; time_in_alert_seconds: number }
interface BtResult {
  since: string; until: string; agent_device_id: string | null;
  chart: { metric: string; aggregation: string; operator: string; threshold: number; clear_threshold: number;
    history_path: string; history_params: Record<string, string> };
  totals: { episodes: number; devices_affected: number; devices_evaluated: number; time_in_alert_seconds: number; tickets: number };
  devices: BtDevice[];
}

const PERIODS: Record<string, number> = { "1d": 86400, "7d": 7 * 86400, "30d": 30 * 86400 };

function secs(iso: string): number {
  return Date.parse(iso) / 1000;
}

export function initBacktest(): void {
  const form = document.getElementById("rule-form") as HTMLFormElement | null;
  const box = document.getElementById("backtest");
  if (!form || !box) return;
  const run = document.getElementById("backtest-run") as HTMLButtonElement;
  const period = document.getElementById("backtest-period") as HTMLSelectElement;
  const summary = document.getElementById("backtest-summary")!;
  const picker = document.getElementById("backtest-device") as HTMLSelectElement;
  const plotEl = document.querySelector<HTMLElement>("#backtest-chart .plot")!;
  const list = document.getElementById("backtest-episodes")!;
  const general = document.getElementById("rule-error");
  let result: BtResult | null = null;
  let plot: uPlot | null = null;
  followWidth(plotEl, () => plot, 220, 300);

  async function draw(device: BtDevice | undefined, agentId: string): Promise<void> {
    if (!result) return;
    const c = result.chart;
    const params = new URLSearchParams(c.history_params);
    const history = await json<{ metrics: Record<string, number | string | null>[] }>(
      `${c.history_path.replace("{agent_id}", encodeURIComponent(agentId))}?${params}`);
    const xs = history.metrics.map((p) => secs(String(p.timestamp)));
    const column = c.aggregation === "avg" ? c.metric : `${c.metric}_${c.aggregation}`;
    const ys = history.metrics.map((p) => (p[column] ?? p[c.metric]) as number | null);
    const data: uPlot.AlignedData = [xs, ys, xs.map(() => c.threshold), xs.map(() => c.clear_threshold)];
    const bands = (device?.episodes ?? []).map((e) => [secs(e.start), e.end ? secs(e.end) : secs(result!.until)]);
    plot?.destroy();
    plotEl.replaceChildren();
    plot = new uPlot({
      width: Math.max(300, plotEl.clientWidth), height: 220,
      scales: { x: { time: true, range: () => [secs(result!.since), secs(result!.until)] } },
      axes: [{}, { size: 64 }],
      series: [
        { value: (_u, v) => (v === null ? "–" : fmt.local(new Date(v * 1000).toISOString())) },
        { label: `${c.aggregation} ${c.metric}`, stroke: "#2563eb", width: 1.5, spanGaps: false },
        { label: `threshold ${c.operator} ${c.threshold}`, stroke: "#b91c1c", width: 1.5, dash: [6, 4], points: { show: false } },
        { label: `clears at ${c.clear_threshold}`, stroke: "#15803d", width: 1, dash: [2, 4], points: { show: false } },
      ],
      hooks: {
        drawClear: [(u: uPlot) => {
          const ctx = u.ctx;
          ctx.save();
          ctx.fillStyle = "rgba(220, 38, 38, 0.16)";
          for (const [a, b] of bands) {
            const x0 = u.valToPos(a, "x", true);
            const x1 = u.valToPos(b, "x", true);
            ctx.fillRect(x0, u.bbox.top, Math.max(2, x1 - x0), u.bbox.height);
          }
          // the threshold and clear lines across the whole period, not just where data was drawn
          for (const [value, colour] of [[c.threshold, "#b91c1c"], [c.clear_threshold, "#15803d"]] as const) {
            const y = u.valToPos(value, "y", true);
            if (!Number.isFinite(y)) continue;
            ctx.strokeStyle = colour;
            ctx.setLineDash([6, 4]);
            ctx.beginPath();
            ctx.moveTo(u.bbox.left, y);
            ctx.lineTo(u.bbox.left + u.bbox.width, y);
            ctx.stroke();
          }
          ctx.restore();
        }],
      },
      legend: { live: true },
    }, data, plotEl);
    list.replaceChildren(...(device?.episodes ?? []).map((e) => {
      const li = document.createElement("li");
      li.textContent = `${fmt.local(e.start)} → ${e.end ? fmt.local(e.end) : "still open at the end"}: opened at ${fmt.number(e.value, 2)}, peak ${fmt.number(e.peak, 2)}${e.ticket ? ", a ticket" : ""}`;
      return li;
    }));
    (registry as unknown as Record<string, unknown>).backtest = { result, bands, points: xs.length, agent: agentId };
    box!.dataset.state = "ready";
  }

  picker.addEventListener("change", () => {
    const device = result?.devices.find((d) => d.agent_device_id === picker.value);
    void draw(device, picker.value);
  });

  run.addEventListener("click", async () => {
    clearErrors(form, general);
    box.dataset.state = "loading";
    const until = new Date();
    const since = new Date(until.getTime() - PERIODS[period.value] * 1000);
    try {
      result = await send<BtResult>("/api/alerts/rules/backtest", "POST", {
        rule: ruleBody(form, true), since: since.toISOString(), until: until.toISOString() });
    } catch (err) {
      box.dataset.state = "error";
      showError(form, general, err);
      return;
    }
    const t = result.totals;
    summary.textContent = t.episodes === 0
      ? `Over this period the rule would not have opened any alert on the ${t.devices_evaluated} device(s) it covers.`
      : `Over this period the rule would have opened ${t.episodes} alert(s) on ${t.devices_affected} of ${t.devices_evaluated} device(s), ${fmt.duration(t.time_in_alert_seconds)} in alert in all${t.tickets ? `, ${t.tickets} ticket(s)` : ""}.`;
    const options = result.devices.map((d) => new Option(`${d.device_name} (${d.episodes.length})`, d.agent_device_id));
    const scoped = result.agent_device_id;
    if (scoped && !result.devices.some((d) => d.agent_device_id === scoped)) options.unshift(new Option("this device (0)", scoped));
    picker.replaceChildren(...options);
    picker.hidden = options.length === 0;
    if (options.length) await draw(result.devices.find((d) => d.agent_device_id === picker.value), picker.value);
    else {
      plot?.destroy();
      plot = null;
      list.replaceChildren();
      (registry as unknown as Record<string, unknown>).backtest = { result, bands: [], points: 0 };
      box.dataset.state = "ready";
    }
  });
}
