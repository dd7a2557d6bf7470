// The alert inbox (/console/alerts) and one alert's page: filters, acknowledge / resolve with
// notes (through the API, with the CSRF token), and new or changed alerts live: the server
// renders the rows again (one request, escaped there) and they are swapped in.

import * as fmt from "./format";
import { HttpError, json, request } from "./http";
import { connect } from "./live";

const FRAGMENT = "x-console-fragment";

function actionDialog(onDone: () => Promise<void>): (id: string, act: string, what: string) => void {
  const dialog = document.getElementById("alert-action") as HTMLDialogElement | null;
  const form = document.getElementById("alert-action-form") as HTMLFormElement | null;
  if (!dialog || !form) return () => undefined;
  const title = document.getElementById("alert-action-title")!;
  const whatEl = document.getElementById("alert-action-what")!;
  const go = document.getElementById("alert-action-go") as HTMLButtonElement;
  const error = document.getElementById("alert-action-error")!;
  let target: { id: string; act: string } | null = null;
  form.addEventListener("submit", async (e) => {
    const submitter = (e as SubmitEvent).submitter as HTMLButtonElement | null;
    if (!target || submitter?.value !== "confirm") return;
    e.preventDefault();
    const notes = (form.elements.namedItem("notes") as HTMLTextAreaElement).value.trim();
    go.disabled = true;
    try {
      await json(`/api/alerts/${target.id}/${target.act}`, {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify(notes ? { notes } : {}),
      });
      dialog.close();
      await onDone();
    } catch (err) {
      error.hidden = false;
      error.textContent = err instanceof HttpError ? err.message : String(err);
    } finally {
      go.disabled = false;
    }
  });
  return (id, act, what) => {
    target = { id, act };
    const label = act === "acknowledge" ? "Acknowledge" : "Resolve";
    title.textContent = `${label} this alert`;
    whatEl.textContent = what;
    go.textContent = label;
    error.hidden = true;
    (form.elements.namedItem("notes") as HTMLTextAreaElement).value = "";
    dialog.showModal();
  };
}

export function initAlerts(): void {
  const results = document.getElementById("alert-results");
  const filters = document.getElementById("alert-filters") as HTMLFormElement | null;
  if (!results || !filters) return;
  document.documentElement.classList.add("js");
  filters.addEventListener("change", () => filters.requestSubmit());

  const refresh = async (): Promise<void> => {
    const before = new Set([...results.querySelectorAll<HTMLElement>("tr.episode")].map((r) => r.dataset.alert));
    const response = await request(`/console/alerts?${results.dataset.query ?? ""}`, { headers: { [FRAGMENT]: "alerts" } });
    const doc = new DOMParser().parseFromString(await response.text(), "text/html");
    fmt.refreshTimes(doc.body);
    results.replaceChildren(...doc.body.childNodes);
    for (const row of results.querySelectorAll<HTMLElement>("tr.episode")) {
      if (!before.has(row.dataset.alert)) row.classList.add("flash", "new");
    }
    document.body.dataset.inboxRefreshed = String(Number(document.body.dataset.inboxRefreshed || "0") + 1);
  };
  const open = actionDialog(refresh);
  results.addEventListener("click", (e) => {
    const button = (e.target as HTMLElement).closest<HTMLButtonElement>("button[data-act]");
    const row = button?.closest<HTMLElement>("tr.episode");
    if (!button || !row) return;
    const name = row.querySelector("td:nth-child(2) a")?.textContent ?? "";
    const device = row.querySelector("td:nth-child(3) a")?.textContent ?? "";
    open(row.dataset.alert!, button.dataset.act!, `${name} on ${device}`);
  });
  connect(new URLSearchParams({ watch: "alert" }), {
    onEvents(events) {
      if (events.some((e) => e.kind === "alert")) void refresh();
    },
    onResync() {
      void refresh();
    },
  });
}

export function initAlert(): void {
  const section = document.getElementById("alert");
  if (!section) return;
  const open = actionDialog(async () => location.reload());
  section.addEventListener("click", (e) => {
    const button = (e.target as HTMLElement).closest<HTMLButtonElement>("button[data-act]");
    if (button) open(section.dataset.alert!, button.dataset.act!, section.querySelector("h1")?.textContent ?? "");
  });
}
