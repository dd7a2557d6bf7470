// The rule editor (/console/alerts/rules/new, /console/alerts/rules/<id>) and the rules list with
// maintenance windows (/console/alerts/rules). Everything is written through the alerts API.

import { clearErrors, deviceSelects, send, showError } from "./forms";

type Body = Record<string, unknown>;

function value(form: HTMLFormElement, name: string): string {
  const el = form.elements.namedItem(name) as HTMLInputElement | HTMLSelectElement | null;
  return el ? el.value.trim() : "";
}

function checked(form: HTMLFormElement, name: string): boolean {
  return (form.elements.namedItem(name) as HTMLInputElement | null)?.checked ?? false;
}

function numberOrNull(text: string): number | string | null {
  if (text === "") return null;
  const n = Number(text);
  return Number.isFinite(n) ? n : text; // the API names the field when it is not a number
}

// The rule as the API takes it (the same body for the backtest).
export function ruleBody(form: HTMLFormElement, creating: boolean): Body {
  const kind = value(form, "kind");
  const conditions: Body = { kind, duration_minutes: numberOrNull(value(form, "duration_minutes")) ?? 0 };
  if (kind === "metric") {
    Object.assign(conditions, {
      metric: value(form, "metric"), aggregation: value(form, "aggregation"), operator: value(form, "operator"),
      threshold: numberOrNull(value(form, "threshold")), hysteresis: numberOrNull(value(form, "hysteresis")),
    });
  } else if (kind === "service_down" && value(form, "service_name")) {
    conditions.service_name = value(form, "service_name");
  }
  const channels = [];
  if (checked(form, "channel_email")) channels.push("email");
  if (checked(form, "channel_webhook")) channels.push("webhook");
  const body: Body = {
    alert_name: value(form, "alert_name"), severity: value(form, "severity"), conditions,
    notification_enabled: checked(form, "notification_enabled"), notification_channels: channels,
    notification_recipients: value(form, "notification_recipients").split(/[,\s]+/).filter(Boolean),
    webhook_url: value(form, "webhook_url") || null, create_ticket: checked(form, "create_ticket"),
    is_active: checked(form, "is_active"),
  };
  if (creating) {
    body.business_id = value(form, "business_id");
    if (value(form, "agent_device_id")) body.agent_device_id = value(form, "agent_device_id");
  }
  return body;
}

export function initRuleForm(): void {
  const form = document.getElementById("rule-form") as HTMLFormElement | null;
  if (!form) return;
  const general = document.getElementById("rule-error");
  const ruleId = form.dataset.rule;
  const kind = form.elements.namedItem("kind") as HTMLSelectElement;
  const showKind = (): void => {
    for (const fs of form.querySelectorAll<HTMLFieldSetElement>("fieldset.kind")) {
      fs.hidden = fs.dataset.kind !== kind.value;
      fs.disabled = fs.hidden;
    }
  };
  kind.addEventListener("change", showKind);
  showKind();
  deviceSelects(form);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    clearErrors(form, general);
    try {
      if (ruleId) await send(`/api/alerts/rules/${ruleId}`, "PATCH", ruleBody(form, false));
      else await send("/api/alerts/rules", "POST", ruleBody(form, true));
      location.assign("/console/alerts/rules");
    } catch (err) {
      showError(form, general, err);
    }
  });
}

function localToIso(text: string): string {
  return text ? new Date(text).toISOString() : "";
}

export function initRules(): void {
  const general = document.getElementById("rules-error");
  const fail = (err: unknown): void => {
    if (!general) return;
    general.hidden = false;
    general.textContent = err instanceof Error ? err.message : String(err);
  };
  const confirmDelete = document.getElementById("rule-delete") as HTMLDialogElement | null;
  document.addEventListener("click", async (e) => {
    const button = (e.target as HTMLElement).closest<HTMLButtonElement>("button[data-act]");
    if (!button) return;
    const row = button.closest<HTMLElement>("tr");
    try {
      if (row?.dataset.rule) {
        const id = row.dataset.rule;
        if (button.dataset.act === "delete") {
          if (!confirmDelete) return;
          document.getElementById("rule-delete-what")!.textContent = row.querySelector("td")?.textContent ?? "";
          confirmDelete.showModal();
          confirmDelete.addEventListener("close", async () => {
            if (confirmDelete.returnValue !== "confirm") return;
            try {
              await send(`/api/alerts/rules/${id}`, "DELETE");
              location.reload();
            } catch (err) {
              fail(err);
            }
          }, { once: true });
          return;
        }
        await send(`/api/alerts/rules/${id}/${button.dataset.act}`, "POST");
        location.reload();
      } else if (row?.dataset.window) {
        await send(`/api/alerts/maintenance/${row.dataset.window}`, "PATCH", { ends_at: new Date().toISOString() });
        location.reload();
      }
    } catch (err) {
      fail(err);
    }
  });
  const windowForm = document.getElementById("window-form") as HTMLFormElement | null;
  if (!windowForm) return;
  deviceSelects(windowForm);
  windowForm.addEventListener("submit", async (e) => {
    e.preventDefault();
    clearErrors(windowForm, general);
    const body: Body = {
      business_id: value(windowForm, "business_id"), starts_at: localToIso(value(windowForm, "starts_at")),
      ends_at: localToIso(value(windowForm, "ends_at")), reason: value(windowForm, "reason") || null,
    };
    if (value(windowForm, "agent_device_id")) body.agent_device_id = value(windowForm, "agent_device_id");
    try {
      await send("/api/alerts/maintenance", "POST", body);
      location.reload();
    } catch (err) {
      showError(windowForm, general, err);
    }
  });
}
