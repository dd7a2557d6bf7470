// The live channel: Server-Sent Events from /console/live. The browser reconnects by itself;
// every (re)connection after the first, and every "resync" the server sends, makes the page
// re-read what it shows (catch-up), because changes made while disconnected were not sent.

import { request } from "./http";

export interface LiveEvent {
  kind: string;
  agent?: string;
  [key: string]: unknown;
}

export interface LiveHandlers {
  onEvents(events: LiveEvent[]): void;
  onResync(reason: string): void;
}

export interface LiveRecord {
  receivedAt: number;
  event: LiveEvent;
}

// For tests and the benchmark: what arrived and when (bounded).
export const received: LiveRecord[] = [];

function setStatus(text: string | null): void {
  const el = document.getElementById("live-status");
  if (!el) return;
  el.hidden = text === null;
  el.textContent = text ?? "";
}

export function connect(params: URLSearchParams, handlers: LiveHandlers): () => void {
  let source: EventSource | null = null;
  let hellos = 0;
  let closed = false;
  const renderedAt = Date.parse(document.body.dataset.renderedAt || "") || Date.now();

  const open = (): void => {
    source = new EventSource(`/console/live?${params.toString()}`);
    source.addEventListener("hello", () => {
      hellos += 1;
      setStatus(null);
      document.body.dataset.live = "connected";
      // The first connection follows the page's own render; only a stale page (restored from
      // the back/forward cache, or slow to start) re-reads. Later ones always do.
      if (hellos > 1) handlers.onResync("reconnected");
      else if (Date.now() - renderedAt > 5000) handlers.onResync("page was stale");
    });
    source.addEventListener("changes", (message) => {
      const events = JSON.parse((message as MessageEvent<string>).data) as LiveEvent[];
      const now = Date.now();
      for (const event of events) {
        received.push({ receivedAt: now, event });
        if (received.length > 2000) received.shift();
      }
      const resync = events.find((e) => e.kind === "resync");
      if (resync) handlers.onResync(String(resync.reason ?? "server asked"));
      else handlers.onEvents(events);
    });
    source.addEventListener("expired", () => {
      source?.close();
      void checkSession();
    });
    source.onerror = () => {
      document.body.dataset.live = "reconnecting";
      if (source && source.readyState === EventSource.CLOSED && !closed) {
        // Refused (e.g. the session ended): find out why, then retry.
        void checkSession().then(() => window.setTimeout(open, 3000));
      } else {
        setStatus("Live updates interrupted; reconnecting…");
      }
    };
  };

  const checkSession = async (): Promise<void> => {
    await request("/console/data/session"); // a 401 takes the viewer to sign-in and back
  };

  const close = (): void => {
    closed = true;
    source?.close();
  };
  window.addEventListener("pagehide", close, { once: true }); // leaving is not a lost connection
  open();
  return close;
}
