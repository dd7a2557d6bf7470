// Forms that write through the API: the answer's field errors ({field: "conditions.threshold"})
// are shown beside the control that has data-error-for with that name (an indexed name such as
// notification_recipients[2] falls back to its list), anything else above the buttons.

import { HttpError, json, request } from "./http";

export function clearErrors(form: HTMLElement, general: HTMLElement | null): void {
  for (const el of form.querySelectorAll<HTMLElement>("[data-error-for]")) el.textContent = "";
  if (general) general.hidden = true;
}

export function showError(form: HTMLElement, general: HTMLElement | null, err: unknown): void {
  const message = err instanceof Error ? err.message : String(err);
  const field = err instanceof HttpError ? err.body.field : undefined;
  const name = field?.replace(/^\$\./, "");
  const slot = name
    ? form.querySelector<HTMLElement>(`[data-error-for="${CSS.escape(name)}"]`) ??
      form.querySelector<HTMLElement>(`[data-error-for="${CSS.escape(name.replace(/\[\d+\]$/, ""))}"]`)
    : null;
  if (slot) {
    slot.textContent = message;
    slot.closest("label")?.querySelector<HTMLElement>("input, select, textarea")?.focus();
  } else if (general) {
    general.hidden = false;
    general.textContent = message;
  }
}

export async function send<T>(url: string, method: string, body?: unknown): Promise<T> {
  const response = await request(url, {
    method, headers: { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  // a DELETE answers 204 without a body
  return (response.status === 204 ? undefined : await response.json()) as T;
}

interface AgentItem { id: string; device_name: string }

// A device <select> filled from GET /api/agents for the business chosen in another select
// (data-devices-of="<its name>"); the first option (every device) stays.
export function deviceSelects(form: HTMLFormElement): void {
  for (const select of form.querySelectorAll<HTMLSelectElement>("select[data-devices-of]")) {
    const business = form.elements.namedItem(select.dataset.devicesOf!) as HTMLSelectElement | null;
    if (!business) continue;
    const fill = async (): Promise<void> => {
      const first = select.options[0];
      select.replaceChildren(first);
      if (!business.value) return;
      const found = await json<{ agents: AgentItem[] }>(`/api/agents?business_id=${encodeURIComponent(business.value)}&limit=500`);
      for (const a of found.agents) {
        const option = new Option(a.device_name, a.id, false, a.id === select.dataset.selected);
        select.append(option);
      }
      select.dataset.loaded = "true";
    };
    business.addEventListener("change", () => void fill());
    void fill();
  }
}
