// The fleet page: filters that apply as you type (the server renders the table; one request per
// change, never one per row), live rows and counts, keyboard navigation, bulk actions for staff.

import * as fmt from "./format";
import { HttpError, json, request } from "./http";
import { connect, LiveEvent } from "./live";
import { registry } from "./registry";

interface BulkResult {
  agent_id: string;
  ok: boolean;
  outcome?: string;
  error?: { status: number; code: string; message: string };
}

interface BulkResponse {
  action: string;
  requested: number;
  succeeded: number;
  failed: number;
  results: BulkResult[];
}

const TITLES: Record<string, string> = {
  pause_monitoring: "Pause monitoring",
  resume_monitoring: "Resume monitoring",
  set_intervals: "Change reporting intervals",
  delete: "Delete devices",
};

const VERBS: Record<string, string> = {
  pause_monitoring: "Pause monitoring on",
  resume_monitoring: "Resume monitoring on",
  set_intervals: "Change the reporting intervals of",
  delete: "Delete",
};

function devices(n: number): string {
  return `${n.toLocaleString("en-US")} device${n === 1 ? "" : "s"}`;
}

function meter(value: number | null | undefined): HTMLElement {
  const span = document.createElement("span");
  if (value === null || value === undefined) {
    span.className = "muted";
    span.textContent = "–";
    return span;
  }
  span.className = "meter";
  span.dataset.level = value >= 90 ? "high" : value >= 75 ? "mid" : "ok";
  span.textContent = fmt.percent(value);
  return span;
}

export function initFleet(): void {
  const form = document.getElementById("fleet-filters") as HTMLFormElement | null;
  const holder = document.getElementById("fleet-results");
  if (!form || !holder) return;
  document.documentElement.classList.add("js");
  const staff = document.body.dataset.staff === "true";
  const selected = new Set<string>();
  let closeLive: (() => void) | null = null;
  let liveAgents = "";
  let loading: AbortController | null = null;

  const results = (): HTMLElement => holder.querySelector<HTMLElement>(".fleet-results")!;

  function formQuery(): URLSearchParams {
    const params = new URLSearchParams();
    for (const [key, value] of new FormData(form!)) {
      const text = String(value).trim();
      if (text && !(key === "per" && text === form!.dataset.defaultPer)) params.set(key, text);
    }
    return params;
  }

  async function load(query: string, push: "push" | "replace" | "none"): Promise<void> {
    loading?.abort();
    loading = new AbortController();
    holder!.setAttribute("aria-busy", "true");
    try {
      const response = await request(`/console/?${query}`, { headers: { "X-Console-Fragment": "fleet" },
        signal: loading.signal });
      holder!.innerHTML = await response.text(); // server-rendered, autoescaped HTML
      const url = query ? `/console/?${query}` : "/console/";
      if (push === "push") history.pushState(null, "", url);
      else if (push === "replace") history.replaceState(null, "", url);
      afterRender();
    } catch (error) {
      if (error instanceof DOMException && error.name === "AbortError") return;
      showError(error);
    } finally {
      holder!.removeAttribute("aria-busy");
    }
  }

  function showError(error: unknown): void {
    const p = document.createElement("p");
    p.className = "error";
    p.setAttribute("role", "alert");
    p.textContent = error instanceof HttpError ? error.message : "The list could not be loaded; try again.";
    holder!.querySelector(".error")?.remove();
    holder!.prepend(p);
  }

  function afterRender(): void {
    fmt.refreshTimes(holder!);
    const agents = results()?.dataset.agents ?? "";
    if (agents !== liveAgents || !closeLive) subscribe(agents);
    syncSelection();
    registry.timings.fleetRenderedAt = performance.now();
  }

  function subscribe(agents: string): void {
    closeLive?.();
    liveAgents = agents;
    const params = new URLSearchParams({ fleet_page: "1" });
    if (agents) params.set("agents", agents);
    closeLive = connect(params, {
      onEvents: onLive,
      onResync: () => void load(location.search.slice(1), "none"),
    });
  }

  // --- live ----------------------------------------------------------------------------------
  let countsTimer = 0;
  let reloadTimer = 0;
  function refreshCountsSoon(): void {
    if (countsTimer) return;
    countsTimer = window.setTimeout(async () => {
      countsTimer = 0;
      const counts = await json<Record<string, number>>(`/console/data/counts?${results()?.dataset.query ?? ""}`);
      let total = 0;
      for (const [health, n] of Object.entries(counts)) {
        total += n;
        for (const el of holder!.querySelectorAll<HTMLElement>(`[data-count="${health}"]`)) el.textContent = n.toLocaleString("en-US");
      }
      for (const el of holder!.querySelectorAll<HTMLElement>('[data-count="total"]')) el.textContent = total.toLocaleString("en-US");
    }, 1000);
  }

  function reloadSoon(): void {
    window.clearTimeout(reloadTimer);
    reloadTimer = window.setTimeout(() => void load(location.search.slice(1), "none"), 500);
  }

  function onLive(events: LiveEvent[]): void {
    for (const event of events) {
      const row = event.agent ? holder!.querySelector<HTMLElement>(`tr[data-agent="${event.agent}"]`) : null;
      if (event.kind === "counts") refreshCountsSoon();
      else if (event.kind === "sample" && row) {
        for (const field of ["cpu_percent", "memory_percent", "disk_percent"]) {
          row.querySelector(`[data-field="${field}"]`)?.replaceChildren(meter(event[field] as number | null));
        }
        row.querySelector('[data-field="last_seen"]')?.replaceChildren(fmt.timeElement(String(event.last_seen ?? event.at), true));
        row.classList.add("flash");
        window.setTimeout(() => row.classList.remove("flash"), 1200);
      } else if (event.kind === "status" && row) {
        const to = String(event.to);
        const health = to === "error" ? "critical" : to === "online" && ["warning", "critical"].includes(row.dataset.health ?? "")
          ? row.dataset.health! : to;
        row.dataset.health = health;
        const badge = document.createElement("span");
        badge.className = `badge b-${health}`;
        badge.textContent = health;
        row.querySelector('[data-field="health"]')?.replaceChildren(badge);
        refreshCountsSoon();
      } else if (event.kind === "alert" && row) {
        reloadSoon(); // alerts are rare: re-read the rows (open alerts, health) and counts
      }
    }
  }

  // --- filters, paging, history ----------------------------------------------------------------
  let typing = 0;
  form.addEventListener("input", (e) => {
    if (!(e.target instanceof HTMLInputElement) || e.target.type !== "search") return;
    window.clearTimeout(typing);
    typing = window.setTimeout(() => {
      const q = formQuery();
      q.delete("page");
      void load(q.toString(), "replace");
    }, 250);
  });
  form.addEventListener("change", (e) => {
    const target = e.target as HTMLInputElement | HTMLSelectElement;
    if (target.type === "search") return;
    if (target.name === "business") {
      const location = form.querySelector<HTMLSelectElement>('select[name="location"]');
      if (location) location.value = "";
    }
    const q = formQuery();
    q.delete("page");
    void load(q.toString(), "push").then(() => {
      if (target.name === "business") void refreshLocations();
    });
  });
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    void load(formQuery().toString(), "push");
  });

  async function refreshLocations(): Promise<void> {
    // The location options depend on the business: take them from a fresh render of the page.
    const response = await request(`/console/?${location.search.slice(1)}`);
    const doc = new DOMParser().parseFromString(await response.text(), "text/html");
    const fresh = doc.querySelector('select[name="location"]');
    const old = form!.querySelector('select[name="location"]');
    if (fresh && old) old.replaceWith(fresh);
  }

  holder.addEventListener("click", (e) => {
    const link = (e.target as Element).closest<HTMLAnchorElement>("a[href^='/console/?'], a[href='/console/']");
    if (!link || e.metaKey || e.ctrlKey || e.shiftKey || e.button !== 0) return;
    e.preventDefault();
    const query = link.href.split("?")[1] ?? "";
    syncForm(new URLSearchParams(query));
    void load(query, "push");
  });
  window.addEventListener("popstate", () => {
    syncForm(new URLSearchParams(location.search));
    void load(location.search.slice(1), "none");
  });

  function syncForm(params: URLSearchParams): void {
    for (const el of form!.querySelectorAll<HTMLInputElement | HTMLSelectElement>("input[name], select[name]")) {
      if (el instanceof HTMLInputElement && el.type === "checkbox") el.checked = params.get(el.name) === el.value;
      else if (el instanceof HTMLInputElement && el.type === "hidden") continue;
      else el.value = params.get(el.name) ?? "";
    }
  }

  // --- keyboard ----------------------------------------------------------------------------------
  document.addEventListener("keydown", (e) => {
    const target = e.target as HTMLElement;
    if (e.metaKey || e.ctrlKey || e.altKey) return;
    if (target instanceof HTMLInputElement && target.type !== "checkbox" || target instanceof HTMLSelectElement
        || target instanceof HTMLTextAreaElement) {
      if (e.key === "Escape") target.blur();
      return;
    }
    const rows = [...holder!.querySelectorAll<HTMLTableRowElement>("tr.agent")];
    const current = rows.findIndex((r) => r.classList.contains("current"));
    const move = (i: number): void => {
      rows.forEach((r) => r.classList.remove("current"));
      const row = rows[Math.max(0, Math.min(rows.length - 1, i))];
      if (!row) return;
      row.classList.add("current");
      row.querySelector<HTMLAnchorElement>("a.agent-link")?.focus();
      row.scrollIntoView({ block: "nearest" });
    };
    if (e.key === "/") {
      e.preventDefault();
      form!.querySelector<HTMLInputElement>('input[type="search"]')?.focus();
    } else if (e.key === "j") move(current + 1);
    else if (e.key === "k") move(current < 0 ? 0 : current - 1);
    else if (e.key === "x" && staff && current >= 0) {
      const box = rows[current].querySelector<HTMLInputElement>("input.select");
      if (box) {
        box.checked = !box.checked;
        box.dispatchEvent(new Event("change", { bubbles: true }));
      }
    } else if (e.key === "[" || e.key === "]") {
      holder!.querySelector<HTMLAnchorElement>(`a[data-key="${e.key}"]`)?.click();
    }
  });

  // --- bulk actions (staff) ----------------------------------------------------------------------
  const bar = document.getElementById("bulk");
  const confirmDialog = document.getElementById("bulk-confirm") as HTMLDialogElement | null;
  const resultDialog = document.getElementById("bulk-result") as HTMLDialogElement | null;

  function syncSelection(): void {
    for (const box of holder!.querySelectorAll<HTMLInputElement>("input.select")) box.checked = selected.has(box.value);
    updateBar();
  }

  function updateBar(): void {
    if (!bar) return;
    bar.hidden = selected.size === 0;
    document.getElementById("bulk-count")!.textContent = selected.size.toLocaleString("en-US");
    const page = holder!.querySelector<HTMLInputElement>("#select-page");
    const boxes = [...holder!.querySelectorAll<HTMLInputElement>("input.select")];
    if (page) {
      page.checked = boxes.length > 0 && boxes.every((b) => b.checked);
      page.indeterminate = !page.checked && boxes.some((b) => b.checked);
    }
  }

  holder.addEventListener("change", (e) => {
    const box = e.target as HTMLInputElement;
    if (box.id === "select-page") {
      for (const b of holder!.querySelectorAll<HTMLInputElement>("input.select")) {
        b.checked = box.checked;
        if (box.checked) selected.add(b.value);
        else selected.delete(b.value);
      }
    } else if (box.classList.contains("select")) {
      if (box.checked) selected.add(box.value);
      else selected.delete(box.value);
    }
    updateBar();
  });

  document.getElementById("bulk-clear")?.addEventListener("click", () => {
    selected.clear();
    syncSelection();
  });
  document.getElementById("bulk-all")?.addEventListener("click", async () => {
    const body = await json<{ ids: string[]; limit: number }>(`/console/data/ids?${results()?.dataset.query ?? ""}`);
    body.ids.forEach((id) => selected.add(id));
    syncSelection();
  });

  for (const button of bar?.querySelectorAll<HTMLButtonElement>("[data-action]") ?? []) {
    button.addEventListener("click", () => openConfirm(button.dataset.action!));
  }

  function openConfirm(action: string): void {
    if (!confirmDialog || selected.size === 0) return;
    const n = selected.size;
    document.getElementById("bulk-title")!.textContent = TITLES[action];
    const question = document.getElementById("bulk-question")!;
    question.textContent = `${VERBS[action]} ${devices(n)}?` + (action === "delete"
      ? " Their agents are cut off at once (their tokens are revoked); to monitor them again they must be re-enrolled."
      : "");
    document.getElementById("bulk-intervals")!.hidden = action !== "set_intervals";
    document.getElementById("bulk-error")!.hidden = true;
    const go = document.getElementById("bulk-go") as HTMLButtonElement;
    go.textContent = action === "delete" ? `Delete ${devices(n)}` : `Apply to ${devices(n)}`;
    go.classList.toggle("danger", action === "delete");
    confirmDialog.dataset.action = action;
    confirmDialog.returnValue = "";
    confirmDialog.showModal();
  }

  confirmDialog?.addEventListener("close", async () => {
    if (confirmDialog.returnValue !== "confirm") return;
    const action = confirmDialog.dataset.action!;
    const body: Record<string, unknown> = { action, agent_ids: [...selected] };
    if (action === "set_intervals") {
      for (const name of ["metrics_interval_seconds", "heartbeat_interval_seconds"]) {
        const input = confirmDialog.querySelector<HTMLInputElement>(`input[name="${name}"]`)!;
        body[name] = input.value ? Number(input.value) : null;
      }
    }
    try {
      const result = await json<BulkResponse>("/api/agents/bulk", {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
      showResult(result);
      selected.clear();
      void load(location.search.slice(1), "none");
    } catch (error) {
      const p = document.getElementById("bulk-error")!;
      p.textContent = error instanceof HttpError ? error.message : String(error);
      p.hidden = false;
      confirmDialog.showModal();
    }
  });

  function showResult(result: BulkResponse): void {
    if (!resultDialog) return;
    document.getElementById("bulk-summary")!.textContent =
      `${result.succeeded.toLocaleString("en-US")} of ${devices(result.requested)} done` +
      (result.failed ? `; ${result.failed.toLocaleString("en-US")} failed:` : ".");
    const list = document.getElementById("bulk-failures")!;
    const names = new Map([...holder!.querySelectorAll<HTMLElement>("tr[data-agent]")]
      .map((r) => [r.dataset.agent!, r.querySelector("a.agent-link")?.textContent ?? ""]));
    list.replaceChildren(...result.results.filter((r) => !r.ok).slice(0, 50).map((r) => {
      const li = document.createElement("li");
      li.textContent = `${names.get(r.agent_id) || r.agent_id}: ${r.error?.message ?? "failed"}`;
      return li;
    }));
    resultDialog.showModal();
  }

  window.setInterval(() => fmt.refreshTimes(holder!), 30_000);
  afterRender();
}
