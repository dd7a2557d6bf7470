// The command console: the create form on the device page, the approval queue and recent commands
// (/console/commands), one command's page with live status and output. Output is only ever
// server-rendered text (Jinja escapes it) swapped in whole: never HTML built from the output.

import { clearErrors, send, showError } from "./forms";
import * as fmt from "./format";
import { request } from "./http";
import { connect } from "./live";

// Re-read this page and swap in the elements with these ids (rendered and escaped by the server).
export async function swapFromServer(ids: string[]): Promise<void> {
  const response = await request(location.pathname + location.search);
  const doc = new DOMParser().parseFromString(await response.text(), "text/html");
  for (const id of ids) {
    const fresh = doc.getElementById(id);
    const old = document.getElementById(id);
    if (fresh && old) {
      fmt.refreshTimes(fresh);
      old.replaceWith(fresh);
    }
  }
}

function field(form: HTMLFormElement, name: string): string {
  const el = form.elements.namedItem(name) as HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement | null;
  return el ? el.value : "";
}

export function initCommandForm(): void {
  const form = document.getElementById("command-form") as HTMLFormElement | null;
  if (!form) return;
  const general = document.getElementById("command-error");
  const type = form.elements.namedItem("command_type") as HTMLSelectElement;
  const note = document.getElementById("command-approval")!;
  const sensitive = (note.dataset.sensitive || "").split(",");
  const show = (): void => {
    for (const fs of form.querySelectorAll<HTMLFieldSetElement>("fieldset.ctype")) {
      fs.hidden = fs.dataset.type !== type.value;
      fs.disabled = fs.hidden;
    }
    note.textContent = sensitive.includes(type.value)
      ? "This type runs only after an admin or technician other than you approves it."
      : "This type is sent to the agent at once.";
  };
  type.addEventListener("change", show);
  show();
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    clearErrors(form, general);
    const kind = type.value;
    let params: Record<string, unknown> = {};
    if (kind === "restart_service") params = { service_name: field(form, "service_name") };
    else if (kind === "run_script") {
      params = { interpreter: field(form, "interpreter"), script: field(form, "script"),
        arguments: field(form, "arguments").split("\n").filter((a) => a !== "") };
    } else if (kind === "update_agent") params = { target_version: field(form, "target_version").trim() };
    try {
      const created = await send<{ id: string; agent_id: string }>(`/api/agents/${form.dataset.agent}/commands`, "POST", {
        command_type: kind, params, timeout_seconds: Number(field(form, "timeout_seconds")) || 300,
      });
      location.assign(`/console/commands/${created.agent_id}/${created.id}`);
    } catch (err) {
      showError(form, general, err);
    }
  });
}

export function initCommands(): void {
  connect(new URLSearchParams({ watch: "command" }), {
    onEvents(events) {
      if (events.some((e) => e.kind === "command")) void swapFromServer(["command-lists"]);
    },
    onResync() {
      void swapFromServer(["command-lists"]);
    },
  });
}

export function initCommand(): void {
  const section = (): HTMLElement | null => document.getElementById("command");
  const first = section();
  if (!first) return;
  const commandId = first.dataset.command!;
  const agentId = first.dataset.agent!;
  const refresh = async (): Promise<void> => {
    await swapFromServer(["command"]);
    document.body.dataset.commandStatus = section()?.dataset.status ?? "";
  };
  document.body.dataset.commandStatus = first.dataset.status ?? "";
  document.addEventListener("click", async (e) => {
    const button = (e.target as HTMLElement).closest<HTMLButtonElement>("#command button[data-act]");
    if (!button) return;
    const error = document.getElementById("command-action-error");
    button.disabled = true;
    try {
      await send(`/api/agents/${agentId}/commands/${commandId}/${button.dataset.act}`, "POST", {});
      await refresh();
    } catch (err) {
      if (error) {
        error.hidden = false;
        error.textContent = err instanceof Error ? err.message : String(err);
      }
      button.disabled = false;
    }
  });
  connect(new URLSearchParams({ agents: agentId }), {
    onEvents(events) {
      if (events.some((e) => e.kind === "command" && e.id === commandId)) void refresh();
    },
    onResync() {
      void refresh();
    },
  });
}
