// Staged agent rollouts (/console/rollouts, staff only): the list, whose progress bars follow the
// live channel's counts; one rollout's page, which the server renders again when the rollout or
// one of its update commands changes; its operator buttons; the start form.
//
// Why two ways: a `rollout` event carries the rollout's status and its devices counted by state
// (rollouts/queries.sql, `notify`), enough to redraw a row of the list without asking anything,
// so an open list costs no request per wave step. A rollout's own page shows waves and devices,
// which no notification can carry for a large fleet (8,000 bytes), so it re-reads itself (one
// request, at most one a second). It also follows its devices' commands (`command` events), so
// a finished update shows at once, before the advance job next takes its outcome.

import { swapFromServer } from "./commands";
import { clearErrors, send, showError } from "./forms";
import * as fmt from "./format";
import { HttpError } from "./http";
import { connect, type LiveEvent } from "./live";

interface Counts {
  devices: number;
  planned: number;
  sent: number;
  succeeded: number;
  failed: number;
  skipped: number;
}

// The bar's segments, left to right, as console/rollouts.py (SEGMENTS) places them.
const SEGMENTS = ["succeeded", "failed", "sent", "skipped"] as const;

// The same words as console/rollouts.py (Progress.summary).
export function summary(c: Counts): string {
  const n = (v: number): string => fmt.number(v, 0);
  const parts = [`${n(c.succeeded)} of ${n(c.devices)} updated`];
  for (const [v, what] of [[c.failed, "failed"], [c.sent, "in progress"], [c.skipped, "skipped"]] as const) {
    if (v) parts.push(`${n(v)} ${what}`);
  }
  return parts.join(", ");
}

function draw(box: Element, c: Counts): void {
  const round = (v: number): number => Math.round(v * 1000) / 1000;
  let x = 0;
  for (const state of SEGMENTS) {
    const width = c.devices ? round((c[state] * 100) / c.devices) : 0;
    const rect = box.querySelector(`rect[data-state="${state}"]`);
    rect?.setAttribute("x", String(x));
    rect?.setAttribute("width", String(width));
    x = round(x + width);
  }
  const text = box.querySelector("[data-field=progress]");
  if (text) text.textContent = summary(c);
}

// Run `work` now, or once more after the run in flight and at most once a second: a wave of
// a thousand devices finishing costs a page one re-read a second, not one per device.
function coalesced(work: () => Promise<void>, gapMs = 1000): () => void {
  let running = false;
  let again = false;
  const run = async (): Promise<void> => {
    if (running) {
      again = true;
      return;
    }
    running = true;
    try {
      do {
        again = false;
        const started = Date.now();
        await work();
        if (again) await new Promise((resolve) => window.setTimeout(resolve, gapMs - (Date.now() - started)));
      } while (again);
    } finally {
      running = false;
    }
  };
  return () => void run();
}

function isCounts(e: LiveEvent): e is LiveEvent & Counts {
  return typeof e.devices === "number" && typeof e.succeeded === "number";
}

export function initRollouts(): void {
  const refresh = coalesced(async () => {
    await swapFromServer(["rollout-list"]);
    document.body.dataset.listRefreshed = String(Number(document.body.dataset.listRefreshed || "0") + 1);
  });
  connect(new URLSearchParams({ watch: "rollout" }), {
    onEvents(events) {
      let reread = false;
      for (const e of events) {
        if (e.kind !== "rollout") continue;
        const row = document.querySelector<HTMLElement>(`tr.rollout[data-rollout="${CSS.escape(String(e.rollout_id))}"]`);
        const box = row?.querySelector(".progress-box");
        // a new rollout, or a status change (badge, wording): the server renders the list again
        if (!row || !box || row.dataset.status !== e.status || !isCounts(e)) reread = true;
        else draw(box, e);
      }
      if (reread) refresh();
    },
    onResync() {
      refresh();
    },
  });
  initRolloutForm();
}

function initRolloutForm(): void {
  const form = document.getElementById("rollout-form") as HTMLFormElement | null;
  if (!form) return;
  const general = document.getElementById("rollout-error");
  const picks = document.getElementById("rollout-businesses")!;
  const value = (name: string): string => (form.elements.namedItem(name) as HTMLInputElement).value.trim();
  const chosen = (): boolean => (form.elements.namedItem("scope") as RadioNodeList).value === "chosen";
  const show = (): void => {
    picks.hidden = !chosen();
  };
  form.addEventListener("change", show);
  show();
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    clearErrors(form, general);
    const ids = [...form.querySelectorAll<HTMLInputElement>("input[name=business_ids]:checked")].map((i) => i.value);
    if (chosen() && ids.length === 0) {
      // an empty list would mean every business to the API: never send that by mistake
      showError(form, general, new HttpError(422, { field: "business_ids", message: "Choose at least one business." }));
      return;
    }
    const source = value("source");
    const body: Record<string, unknown> = {
      target_version: value("target_version"),
      ...(source ? { source } : {}),
      ...(chosen() ? { business_ids: ids } : {}),
    };
    for (const name of ["canary_percent", "wave_percent", "max_failure_percent", "command_timeout_seconds"]) {
      body[name] = value(name) === "" ? null : Number(value(name)); // the API names a bad one
    }
    try {
      const created = await send<{ id: string }>("/api/agents/rollouts", "POST", body);
      location.assign(`/console/rollouts/${created.id}`);
    } catch (err) {
      showError(form, general, err);
    }
  });
}

export function initRollout(): void {
  const section = (): HTMLElement | null => document.getElementById("rollout");
  const first = section();
  if (!first) return;
  const rolloutId = first.dataset.rollout!;
  const note = (): void => {
    document.body.dataset.rolloutStatus = section()?.dataset.status ?? "";
    document.body.dataset.refreshed = String(Number(document.body.dataset.refreshed || "0") + 1);
  };
  const refresh = coalesced(async () => {
    await swapFromServer(["rollout"]);
    note();
  });
  note();
  const commandIds = (): Set<string> =>
    new Set([...document.querySelectorAll<HTMLElement>("#rollout tr[data-command]")].map((r) => r.dataset.command!));

  const act = async (action: string, reason?: string): Promise<void> => {
    await send(`/api/agents/rollouts/${rolloutId}/${action}`, "POST", reason ? { reason } : {});
    refresh();
  };

  // Abort asks first (and for a reason, kept in the audit log); the others act at once.
  const dialog = document.getElementById("rollout-abort") as HTMLDialogElement;
  const abortForm = document.getElementById("rollout-abort-form") as HTMLFormElement;
  const abortError = document.getElementById("rollout-abort-error")!;
  const reason = abortForm.elements.namedItem("reason") as HTMLTextAreaElement;
  abortForm.addEventListener("submit", async (e) => {
    if ((e as SubmitEvent).submitter?.getAttribute("value") !== "confirm") return;
    e.preventDefault();
    const go = document.getElementById("rollout-abort-go") as HTMLButtonElement;
    go.disabled = true;
    try {
      await act("abort", reason.value.trim());
      dialog.close();
    } catch (err) {
      abortError.hidden = false;
      abortError.textContent = err instanceof Error ? err.message : String(err);
    } finally {
      go.disabled = false;
    }
  });

  document.addEventListener("click", async (e) => {
    const button = (e.target as HTMLElement).closest<HTMLButtonElement>("#rollout button[data-act]");
    if (!button) return;
    const action = button.dataset.act!;
    if (action === "abort") {
      reason.value = "";
      abortError.hidden = true;
      dialog.showModal();
      return;
    }
    button.disabled = true;
    try {
      await act(action);
    } catch (err) {
      const error = document.getElementById("rollout-action-error");
      if (error) {
        error.hidden = false;
        error.textContent = err instanceof Error ? err.message : String(err);
      }
      button.disabled = false;
    }
  });

  connect(new URLSearchParams({ watch: "rollout,command" }), {
    onEvents(events) {
      const mine = commandIds();
      if (events.some((e) => (e.kind === "rollout" && e.rollout_id === rolloutId) ||
                             (e.kind === "command" && mine.has(String(e.id))))) refresh();
    },
    onResync() {
      refresh();
    },
  });
}
