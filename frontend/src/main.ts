// The console's one script (an ES module, so no inline code anywhere: the CSP forbids it).
// Each page says which it is in <body data-page>; shared behaviour is set up here.

import { initAdmin } from "./admin";
import { initAlert, initAlerts } from "./alerts";
import { initBacktest } from "./backtest";
import { initCommand, initCommandForm, initCommands } from "./commands";
import { initDevice } from "./device";
import { initFleet } from "./fleet";
import * as fmt from "./format";
import "./registry";
import { initRollout, initRollouts } from "./rollouts";
import { initRuleForm, initRules } from "./rules";

function shortcuts(): void {
  const dialog = document.getElementById("shortcuts") as HTMLDialogElement | null;
  let pendingG = false;
  document.addEventListener("keydown", (e) => {
    const t = e.target as HTMLElement;
    if (t instanceof HTMLInputElement || t instanceof HTMLSelectElement || t instanceof HTMLTextAreaElement) return;
    if (e.metaKey || e.ctrlKey || e.altKey) return;
    if (e.key === "?" && dialog && !dialog.open) {
      e.preventDefault();
      dialog.showModal();
    } else if (e.key === "g") {
      pendingG = true;
      window.setTimeout(() => (pendingG = false), 1000);
    } else if (pendingG && e.key === "f") {
      location.assign("/console/");
    }
  });
}

function start(): void {
  fmt.refreshTimes();
  shortcuts();
  const page = document.body.dataset.page;
  if (page === "fleet") initFleet();
  else if (page === "device") {
    initDevice();
    initCommandForm();
  } else if (page === "commands") {
    initCommands();
    initCommandForm();
  }
  else if (page === "command") initCommand();
  else if (page === "rollouts") initRollouts();
  else if (page === "rollout") initRollout();
  else if (page === "admin") initAdmin();
  else if (page === "alerts") initAlerts();
  else if (page === "alert") initAlert();
  else if (page === "rules") initRules();
  else if (page === "rule") {
    initRuleForm();
    initBacktest();
  }
  if (page !== "fleet" && page !== "login") window.setInterval(() => fmt.refreshTimes(), 30_000);
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
else start();
